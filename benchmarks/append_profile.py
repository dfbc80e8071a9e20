"""CPU and wall time per appended event, labledger beside its raw twin (issue #19).

    python benchmarks/append_profile.py [--pg-url URL | --sqlite-only] [--rounds 5]
        [--profile CASE] [--cases single,batch_1000,writers_32]

The append cases of perf_bench (same subjects, same packets, seed 11), without
the replay and rebuild cases, so that a before/after pair can be run in a
few minutes on a shared machine. Process CPU time (``time.process_time``,
all threads) is reported beside wall-clock rates: with other jobs on the
machine, CPU per event moves much less than events/s. ``--profile CASE``
prints the top of a cProfile of that case's labledger side instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perf_bench import concurrent_writers, single_writer
from perf_payload import PacketFactory
from perf_subjects import LabledgerSubject, RawPostgresSubject, RawSqliteSubject, Subject
from store_bench import DEFAULT_PG_URL, scratch_database

CASES: dict[str, tuple[int, int]] = {  # name: (batch size, events per round)
    "single": (1, 300),
    "batch_100": (100, 5000),
    "batch_1000": (1000, 20_000),
}
WRITERS, PER_WRITER = 32, 10


def run_case(
    case: str, subject: Subject, factory: PacketFactory, tag: str
) -> tuple[float, int, float]:
    """(events/s, events, process CPU seconds of the timed part only)."""
    if case == "writers_32":
        jobs = [factory.packets(PER_WRITER) for _ in range(WRITERS)]
        cpu = time.process_time()
        got = concurrent_writers(subject, tag, jobs)  # thread start-up is in both clocks
        return got, WRITERS * PER_WRITER, time.process_time() - cpu
    batch, n = CASES[case]
    subject.ready(tag)
    events = subject.native(factory.packets(n), tag)
    cpu, start = time.process_time(), time.perf_counter()
    subject.append(tag, events, batch)
    return n / (time.perf_counter() - start), n, time.process_time() - cpu


@contextmanager
def subjects(backend: str, pg_url: str) -> Iterator[list[Subject]]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="labledger-append-") as tmp:
            made: list[Subject] = [
                LabledgerSubject(f"sqlite:///{Path(tmp) / 'lab.db'}"),
                RawSqliteSubject(Path(tmp) / "raw.db"),
            ]
            try:
                yield made
            finally:
                for s in made:
                    s.close()
        return
    with scratch_database(pg_url) as url:
        made = [LabledgerSubject(url), RawPostgresSubject(url)]
        try:
            yield made
        finally:
            for s in made:
                s.close()


def bench(backend: str, pg_url: str, cases: list[str], rounds: int) -> None:
    with subjects(backend, pg_url) as subs:
        warm = PacketFactory(seed=3).packets(300)
        for s in subs:
            single_writer(s, "warm-up", warm, 50)
        factory = PacketFactory(seed=11)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        flushes: Counter[int] = Counter()
        for r in range(rounds):
            for case in cases:
                order = subs if r % 2 == 0 else subs[::-1]
                for s in order:
                    before = Counter(s.store.group.flush_sizes) if s.name == "labledger" else None
                    rate, n, cpu = run_case(case, s, factory, f"{case}/r{r}/{s.name}")
                    results.setdefault((case, s.name), []).append((rate, cpu / n * 1e6))
                    if before is not None and case == "writers_32":
                        flushes += Counter(s.store.group.flush_sizes) - before
        print(f"{backend}: medians of {rounds} rounds (subjects alternate)")
        print(
            f"  {'case':<11} {'lab ev/s':>10} {'raw ev/s':>10} {'×raw':>6} "
            f"{'lab CPU µs/ev':>14} {'raw CPU µs/ev':>14}"
        )
        for case in cases:
            lab, raw = results[(case, "labledger")], results[(case, "raw")]
            lr, rr = statistics.median(x[0] for x in lab), statistics.median(x[0] for x in raw)
            lc, rc = statistics.median(x[1] for x in lab), statistics.median(x[1] for x in raw)
            print(f"  {case:<11} {lr:>10,.0f} {rr:>10,.0f} {lr / rr:>6.2f} {lc:>14.1f} {rc:>14.1f}")
        if "writers_32" in cases and "single" in cases:
            lab32 = statistics.median(x[0] for x in results[("writers_32", "labledger")])
            raw1 = statistics.median(x[0] for x in results[("single", "raw")])
            print(f"  writers_32 labledger / single raw writer: {lab32 / raw1:.2f}×")
            shown = ", ".join(f"{k}×{v}" for k, v in sorted(flushes.items()))
            print(f"  writers_32 requests per flush × flushes: {shown}")


def profile(backend: str, pg_url: str, case: str) -> None:
    with subjects(backend, pg_url) as subs:
        lab = subs[0]
        factory = PacketFactory(seed=11)
        run_case(case, lab, factory, "warm")
        prof = cProfile.Profile()
        prof.enable()
        for r in range(3):
            run_case(case, lab, factory, f"p{r}")
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--pg-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default="single,batch_1000,writers_32")
    parser.add_argument("--profile", default=None, help="cProfile this case (labledger side)")
    args = parser.parse_args()
    backends = (
        ["sqlite"]
        if args.sqlite_only
        else ["postgresql"]
        if args.pg_only
        else [
            "sqlite",
            "postgresql",
        ]
    )
    for backend in backends:
        if args.profile:
            profile(backend, args.pg_url, args.profile)
        else:
            bench(backend, args.pg_url, args.cases.split(","), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
