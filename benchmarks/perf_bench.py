"""labledger beside its raw-engine twin and beside the eventsourcing library, in one run.

    python benchmarks/perf_bench.py [--quick] [--sqlite-only] [--pg-url URL] [--out DIR]

Cases (issue #5): durable single appends (1 writer and 32 concurrent
writers), batches of 100 and 1,000, typed replay of 1M events (50k with
--quick) in fresh processes with their peak RSS growth, replay into a
projection, append → subscriber latency at 1,000 appends/s, and (issue #19)
rebuild_all: every shipped projection over a lab-shaped log of 1M events
(20k with --quick) beside a raw scan + decode of it; the 32-writer case
also prints its group-commit flush sizes. Subjects
alternate their order every round; the table shows medians. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from perf_latency import measure
from perf_payload import PacketFactory
from perf_rebuild import Template, lab_template, raw_postgres_rate, raw_sqlite_rate, rebuild_rate
from perf_rebuild import build as build_lab_log
from perf_subjects import (
    HAVE_PEER,
    LabledgerSubject,
    PeerSubject,
    RawPostgresSubject,
    RawSqliteSubject,
    Subject,
    peer_env_postgres,
    peer_env_sqlite,
)
from store_bench import DEFAULT_PG_URL, scratch_database, server_version

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
SUBJECTS = ("labledger", "raw", "eventsourcing")


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    single: int  # events per round, one writer
    writers: int
    per_writer: int  # events per writer per round
    batches: dict[int, int]  # batch size: events per round
    replay: int  # log size for the typed replay (children)
    replay_rounds: int
    projection: int  # events folded into the projection per round
    latency_rounds: int
    latency_events: int
    latency_rate: float
    rebuild: int  # lab-shaped events rebuilt by every projection (one round)


PROFILES = {
    "full": Profile(
        "full",
        rounds=3,
        single=300,
        writers=32,
        per_writer=10,
        batches={100: 5000, 1000: 20_000},
        replay=1_000_000,
        replay_rounds=3,
        projection=10_000,
        latency_rounds=3,
        latency_events=1500,
        latency_rate=1000.0,
        rebuild=1_000_000,
    ),
    "quick": Profile(
        "quick",
        rounds=3,
        single=40,
        writers=32,
        per_writer=2,
        batches={100: 500, 1000: 2000},
        replay=50_000,
        replay_rounds=1,
        projection=1000,
        latency_rounds=1,
        latency_events=200,
        latency_rate=1000.0,
        rebuild=20_000,
    ),
}


@dataclass
class Record:
    """One case on one backend: medians of the rounds, per subject."""

    name: str
    backend: str
    unit: str = "events/s"
    values: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, who: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(who, []).append(value)

    def median(self, who: str) -> float | None:
        vals = self.values.get(who)
        return statistics.median(vals) if vals else None

    def ratio(self, other: str) -> float | None:
        """labledger / other for rates; other / labledger for ms and MB (>1: labledger ahead)."""
        lab, them = self.median("labledger"), self.median(other)
        if not lab or not them:
            return None
        return round(them / lab if self.unit in ("ms", "MB") else lab / them, 3)

    def as_json(self) -> dict[str, Any]:
        rate_key = {"ms": "p99_ms", "MB": "peak_rss_growth_mb"}.get(self.unit, "events_per_s")
        out: dict[str, Any] = {"name": self.name, "backend": self.backend}
        out[rate_key] = _round(self.median("labledger"))
        out |= {"ratio_to_raw": self.ratio("raw"), "ratio_to_peer": self.ratio("eventsourcing")}
        out |= {f"{who}_{rate_key}": _round(self.median(who)) for who in SUBJECTS}
        out["samples"] = {who: [_round(v) for v in vals] for who, vals in self.values.items()}
        return out | self.extra


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def in_turn(subjects: Sequence[Subject], round_no: int) -> list[Subject]:
    """Every subject, the order rotated each round (nobody always first or last)."""
    k = round_no % len(subjects)
    return list(subjects[k:]) + list(subjects[:k])


def rate(n: int, work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return n / (time.perf_counter() - start)


# -- append cases ------------------------------------------------------------------------


def single_writer(subject: Subject, stream: str, packets: Any, batch: int) -> float:
    subject.ready(stream)
    events = subject.native(packets, stream)
    return rate(len(events), lambda: subject.append(stream, events, batch))


def concurrent_writers(subject: Subject, tag: str, jobs: list[Any]) -> float:
    """``len(jobs)`` threads, each appending its packets one per transaction to its stream."""
    streams = [f"{tag}/w{i}" for i in range(len(jobs))]
    for s in streams:
        subject.ready(s)
    natives = [subject.native(p, s) for p, s in zip(jobs, streams, strict=True)]
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def work(stream: str, events: list[Any]) -> None:
        commit, release = subject.writer()
        try:
            barrier.wait()
            for v, e in enumerate(events):
                commit(stream, [e], v - 1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            release()

    threads = [threading.Thread(target=work, args=a) for a in zip(streams, natives, strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(map(len, natives)) / (time.perf_counter() - start)


def run_appends(backend: str, subjects: Sequence[Subject], p: Profile) -> list[Record]:
    factory = PacketFactory(seed=11)
    cases = [("append_single", 1, p.single)] + [
        (f"append_batch_{b}", b, n) for b, n in p.batches.items()
    ]
    records = {name: Record(name, backend) for name, _, _ in cases}
    records["append_32_writers"] = conc = Record("append_32_writers", backend)
    for r in range(p.rounds):
        progress(f"  {backend}: append round {r + 1}/{p.rounds}")
        for name, batch, n in cases:
            packets = factory.packets(n)
            for s in in_turn(subjects, r):
                records[name].add(s.name, single_writer(s, f"{name}/r{r}", packets, batch))
        jobs = [factory.packets(p.per_writer) for _ in range(p.writers)]
        for s in in_turn(subjects, r):
            before = _flush_sizes(s)
            conc.add(s.name, concurrent_writers(s, f"conc/r{r}/{s.name}", jobs))
            if isinstance(s, LabledgerSubject):
                sizes = conc.extra.setdefault("flush_sizes", {})
                for size, count in (_flush_sizes(s) - before).items():
                    sizes[size] = sizes.get(size, 0) + count
    single_raw, conc_lab = records["append_single"].median("raw"), conc.median("labledger")
    if single_raw and conc_lab:  # the target: 32 writers against one raw committer
        conc.extra["ratio_to_raw_single_writer"] = round(conc_lab / single_raw, 2)
    order = ["append_single", "append_32_writers", *(f"append_batch_{b}" for b in p.batches)]
    return [records[k] for k in order]


def _flush_sizes(s: Subject) -> Counter[int]:
    """Requests per group-commit flush so far (labledger only; empty for the others)."""
    return Counter(s.store.group.flush_sizes) if isinstance(s, LabledgerSubject) else Counter()


def run_latency(backend: str, subjects: Sequence[Subject], p: Profile) -> Record:
    rec = Record("subscriber_latency", backend, unit="ms")
    p50 = Record("subscriber_latency_p50", backend, unit="ms")
    for r in range(p.latency_rounds):
        progress(f"  {backend}: latency round {r + 1}/{p.latency_rounds}")
        for s in in_turn(subjects, r):
            lat = measure(s, backend, p.latency_events, p.latency_rate, f"r{r}-{s.name}")
            if lat is not None:
                rec.add(s.name, lat.p99_ms)
                p50.add(s.name, lat.p50_ms)
                rec.extra.setdefault("offered_per_s", {}).setdefault(s.name, []).append(
                    lat.offered_per_s
                )
    rec.extra["p50_ms"] = {who: _round(p50.median(who)) for who in SUBJECTS}
    return rec


# -- replay cases --------------------------------------------------------------------------


def build_log(backend: str, subjects: Sequence[Subject], n: int) -> None:
    """Untimed: the same n packets (10 % v1) in 100 streams, batches of 1,000, on every side."""
    factory, chunk = PacketFactory(seed=23, v1_every=10), 1000
    started = time.perf_counter()
    for i in range(0, n, chunk):
        packets = factory.packets(min(chunk, n - i))
        stream = f"rig-{(i // chunk) % 100:02d}"
        for s in subjects:
            s.ready(stream)
            s.append(stream, s.native(packets, stream), chunk)
        if i and i % 100_000 == 0:
            progress(f"  {backend}: built {i:,}/{n:,} ({time.perf_counter() - started:.0f} s)")


def child_replay(spec: dict[str, Any]) -> dict[str, Any]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(HERE), *sys.path[1:]])}
    out = subprocess.run(
        [sys.executable, str(HERE / "perf_child.py"), json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_replays(
    backend: str, subjects: Sequence[Subject], targets: dict[str, str], p: Profile
) -> list[Record]:
    typed, memory = Record("replay_typed", backend), Record("replay_memory", backend, unit="MB")
    proj = Record("replay_projection", backend)
    for r in range(p.replay_rounds):
        progress(f"  {backend}: replay round {r + 1}/{p.replay_rounds} ({p.replay:,} events)")
        for s in in_turn(subjects, r):
            spec = {
                "subject": s.name,
                "backend": backend,
                "target": targets[s.name],
                "limit": p.replay,
            }
            got = child_replay(spec)
            typed.add(s.name, got["events"] / got["seconds"])
            memory.add(s.name, got["growth_mb"])
        tag = f"r{r}"
        for s in in_turn(subjects, r):
            proj.add(s.name, rate(p.projection, partial(s.replay_projection, p.projection, tag)))
    typed.extra["events"] = p.replay
    proj.extra["events"] = p.projection
    return [typed, proj, memory]


# -- backends ------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    append: list[Subject]
    replay: list[Subject]
    targets: dict[str, str]  # what perf_child needs to reopen each replay subject
    rebuild_url: str  # an empty store for the lab-shaped rebuild_all log
    rebuild_ceiling: Callable[[], float]  # raw scan + decode of that log, events/s


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labledger-perf-")))
        subjects = {}
        for kind in ("append", "replay"):
            lab = LabledgerSubject(f"sqlite:///{tmp / f'{kind}-labledger.db'}")
            raw = RawSqliteSubject(tmp / f"{kind}-raw.db")
            subjects[kind] = [stack.enter_context(closing(s)) for s in (lab, raw)]
            if HAVE_PEER:
                peer = PeerSubject(peer_env_sqlite(tmp / f"{kind}-es.db"))
                subjects[kind].append(stack.enter_context(closing(peer)))
        targets = {
            "labledger": f"sqlite:///{tmp / 'replay-labledger.db'}",
            "raw": str(tmp / "replay-raw.db"),
            "eventsourcing": str(tmp / "replay-es.db"),
        }
        lab_log = tmp / "rebuild-labledger.db"
        yield Backend(
            "sqlite",
            subjects["append"],
            subjects["replay"],
            targets,
            f"sqlite:///{lab_log}",
            partial(raw_sqlite_rate, str(lab_log)),
        )


@contextmanager
def postgres_backend(server_url: str) -> Iterator[Backend]:
    with ExitStack() as stack:
        subjects, urls = {}, {}
        for kind in ("append", "replay"):
            url = urls[kind] = stack.enter_context(scratch_database(server_url))
            made: list[Subject] = [LabledgerSubject(url), RawPostgresSubject(url)]
            if HAVE_PEER:
                made.append(PeerSubject(peer_env_postgres(url)))
            subjects[kind] = [stack.enter_context(closing(s)) for s in made]
        targets = dict.fromkeys(SUBJECTS, urls["replay"])
        lab_log = stack.enter_context(scratch_database(server_url))
        yield Backend(
            "postgresql",
            subjects["append"],
            subjects["replay"],
            targets,
            lab_log,
            partial(raw_postgres_rate, lab_log),
        )


def bench(backend: Backend, p: Profile) -> list[Record]:
    warm = PacketFactory(seed=3).packets(300)
    for s in backend.append:
        single_writer(s, "warm-up", warm, 50)
    records = run_appends(backend.name, backend.append, p)
    records.append(run_latency(backend.name, backend.append, p))
    build_log(backend.name, backend.replay, p.replay)
    records += run_replays(backend.name, backend.replay, backend.targets, p)
    return [*records, run_rebuild_all(backend, p)]


_TEMPLATE: list[Template] = []


def run_rebuild_all(backend: Backend, p: Profile) -> Record:
    """Every shipped projection over one lab-shaped log, against scanning + decoding it raw."""
    import labledger

    if not _TEMPLATE:
        progress("  running one `labledger lab` session for the lab-shaped log")
        _TEMPLATE.append(lab_template())
    progress(f"  {backend.name}: building a lab-shaped log of {p.rebuild:,} events")
    labledger.init_store(backend.rebuild_url)
    build_lab_log(backend.rebuild_url, _TEMPLATE[0], p.rebuild, progress)
    rec = Record("rebuild_all", backend.name)
    progress(f"  {backend.name}: rebuild_all")
    rec.add("raw", backend.rebuild_ceiling())
    rec.add("labledger", rebuild_rate(backend.rebuild_url))
    rec.extra["events"] = p.rebuild
    rec.extra["raw_is"] = "driver scan + catalog decode (the ceiling)"
    return rec


# -- reporting -------------------------------------------------------------------------------


def fmt(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    return f"{x:,.1f}" if unit != "events/s" else f"{x:,.0f}"


def table(records: Sequence[Record]) -> str:
    head = (
        f"{'case':<22} {'backend':<10} {'unit':<8} {'labledger':>11} {'raw':>11} "
        f"{'eventsrc':>11} {'×raw':>6} {'×peer':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        cells = [fmt(r.median(w), r.unit) for w in SUBJECTS]
        ratios = [
            f"{x:.2f}" if x is not None else "—" for x in (r.ratio("raw"), r.ratio("eventsourcing"))
        ]
        name = r.name + (" p99" if r.name == "subscriber_latency" else "")
        lines.append(
            f"{name:<22} {r.backend:<10} {r.unit:<8} {cells[0]:>11} {cells[1]:>11} "
            f"{cells[2]:>11} {ratios[0]:>6} {ratios[1]:>6}"
        )
        if r.name == "subscriber_latency":
            p50 = [fmt(r.extra["p50_ms"].get(w), "ms") for w in SUBJECTS]
            lines.append(
                f"{'subscriber_latency p50':<22} {r.backend:<10} {'ms':<8} "
                f"{p50[0]:>11} {p50[1]:>11} {p50[2]:>11}"
            )
    return "\n".join(lines)


def header(p: Profile, pg_version: str | None) -> str:
    parts = [
        f"profile {p.name}: medians of {p.rounds} rounds ({p.replay_rounds} for replays)",
        f"{os.cpu_count()} CPUs",
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if pg_version:
        parts.append(f"PostgreSQL {pg_version}")
    return "labledger perf benchmark: " + ", ".join(parts)


def write_outputs(records: Sequence[Record], out_dir: Path, p: Profile) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "perf_bench.json"
    path.write_text(json.dumps([r.as_json() for r in records], indent=2) + "\n")
    paths = [path]
    try:
        from perf_chart import draw
    except ImportError:  # matplotlib missing: pip install -e ".[bench]"
        progress("matplotlib is not installed: no chart")
        return paths
    paths.append(draw(records, out_dir / "perf_bench.png", p.name))
    return paths


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke profile, under a minute")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("LABLEDGER_BENCH_PG_URL") or DEFAULT_PG_URL,
        help=f"server for the scratch databases (default: $LABLEDGER_BENCH_PG_URL, "
        f"else {DEFAULT_PG_URL})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where JSON + PNG go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    if not HAVE_PEER:
        progress('eventsourcing is not installed (pip install -e ".[bench]"): no peer column')
    pg_version = None
    if not args.sqlite_only:
        try:
            pg_version = server_version(args.pg_url)
        except Exception as exc:
            progress(f"cannot reach PostgreSQL ({exc}); use --sqlite-only or --pg-url")
            return 2
    started = time.perf_counter()
    records: list[Record] = []
    with sqlite_backend() as backend:
        records += bench(backend, profile)
    if pg_version:
        with postgres_backend(args.pg_url) as backend:
            records += bench(backend, profile)
    print(header(profile, pg_version))
    print(table(records))
    for r in records:
        if "flush_sizes" in r.extra:
            sizes = ", ".join(f"{k}×{v}" for k, v in sorted(r.extra["flush_sizes"].items()))
            print(f"{r.name} {r.backend}: requests per flush × flushes: {sizes}")
    paths = write_outputs(records, args.out, profile)
    print(
        f"×raw, ×peer = labledger/other for events/s, other/labledger for ms "
        f"(>1: labledger ahead); {time.perf_counter() - started:.0f} s; wrote "
        + ", ".join(map(str, paths))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
