"""perf_bench's two read-side cases on their own, with CPU time beside wall time (issue #19).

    python benchmarks/read_side.py replay [--pg-url URL] [--log 20000] [--events 10000] [--rounds 7]
    python benchmarks/read_side.py replay-split [--pg-url URL] [--log 20000] [--events 10000]
    python benchmarks/read_side.py lab-log URL [--events 30000]
    python benchmarks/read_side.py rebuild URL [--rounds 3]

``replay``: perf_bench's replay_projection (the same subjects, log and fold:
``perf_subjects``), the subjects in turn, their order rotated every round;
prints per subject the median wall and CPU rate, and labledger / raw and
labledger / peer pair by pair within each round (median, min, max). Under
load, the CPU ratios say more than the wall ones: this machine is shared.

``replay-split`` takes labledger's side of it apart, in CPU µs per event: the
store's scan alone, scan + decode, a catch-up of a projection whose apply does
nothing (the engine: batches, checkpoints, the fold loop), and the count
projection itself; the raw twin's whole fold beside them.

``lab-log`` appends perf_bench's lab-shaped log (``perf_rebuild``, seed 29)
to an empty store; ``rebuild`` times ``rebuild_many`` of every shipped
projection over it against the raw scan + decode ceiling, in turn, per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import labledger
from labledger.events.typed import Typed, decode_record
from labledger.ledger import open_ledger
from labledger.projections.base import Tx
from labledger.projections.engine import ProjectionEngine
from labledger.projections.registry import all_projections

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_payload import PacketFactory
from perf_rebuild import build, lab_template, raw_postgres_rate, raw_sqlite_rate
from perf_subjects import (
    CHECKPOINT_EVERY,
    LabledgerSubject,
    PeerSubject,
    RawPostgresSubject,
    RawSqliteSubject,
    StreamCounts,
    Subject,
    peer_env_postgres,
    peer_env_sqlite,
)
from store_bench import scratch_database


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def subjects(stack: ExitStack, pg_url: str | None) -> list[Subject]:
    if pg_url:
        url = stack.enter_context(scratch_database(pg_url))
        return [LabledgerSubject(url), RawPostgresSubject(url), PeerSubject(peer_env_postgres(url))]
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labledger-read-")))
    return [
        LabledgerSubject(f"sqlite:///{tmp / 'lab.db'}"),
        RawSqliteSubject(tmp / "raw.db"),
        PeerSubject(peer_env_sqlite(tmp / "es.db")),
    ]


def replay(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        subs = subjects(stack, args.pg_url)
        for s in subs:
            stack.callback(s.close)
        factory = PacketFactory(seed=23, v1_every=10)  # perf_bench.build_log's log
        for i in range(0, args.log, 1000):
            packets = factory.packets(min(1000, args.log - i))
            stream = f"rig-{(i // 1000) % 100:02d}"
            for s in subs:
                s.ready(stream)
                s.append(stream, s.native(packets, stream), 1000)
        wall: dict[str, list[float]] = {s.name: [] for s in subs}
        cpu: dict[str, list[float]] = {s.name: [] for s in subs}
        for r in range(args.rounds):
            k = r % len(subs)
            for s in subs[k:] + subs[:k]:
                w, c = timed(partial(s.replay_projection, args.events, f"r{r}"))
                wall[s.name].append(args.events / w)
                cpu[s.name].append(args.events / c)
    backend = "postgresql" if args.pg_url else "sqlite"
    print(f"replay_projection {backend}: {args.events:,} of {args.log:,} events, n={args.rounds}")
    for name in wall:
        print(
            f"  {name:<14} wall {statistics.median(wall[name]):>9,.0f}/s"
            f"  CPU {statistics.median(cpu[name]):>9,.0f}/s"
        )
    for other in ("raw", "eventsourcing"):
        for kind, rates in (("wall", wall), ("CPU", cpu)):
            ratios = [a / b for a, b in zip(rates["labledger"], rates[other], strict=True)]
            print(
                f"  labledger/{other} {kind}: {statistics.median(ratios):.2f}"
                f" [{min(ratios):.2f}, {max(ratios):.2f}]"
            )


class _Nothing(StreamCounts):
    """The count projection's types and tables, with an apply that does nothing."""

    name = "bench_nothing"

    def apply(self, tx: Tx, item: Typed[Any]) -> None:
        pass


def replay_split(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        lab, raw, _peer = subs = subjects(stack, args.pg_url)
        for s in subs:
            stack.callback(s.close)
        factory = PacketFactory(seed=23, v1_every=10)
        for i in range(0, args.log, 1000):
            packets = factory.packets(min(1000, args.log - i))
            stream = f"rig-{(i // 1000) % 100:02d}"
            for s in (lab, raw):
                s.append(stream, s.native(packets, stream), 1000)
        assert isinstance(lab, LabledgerSubject)
        store, n = lab.store, args.events

        def scan(decode: bool) -> None:
            for record in store.read_all(1, batch_size=1000, limit=n):
                if decode:
                    decode_record(record)

        def nothing(tag: str) -> None:
            cls = type(f"Nothing_{tag}", (_Nothing,), {"name": f"bench_nothing_{tag}"})
            ProjectionEngine(store, [cls()], batch_size=CHECKPOINT_EVERY).catch_up(
                cls.name, until=n
            )

        cases: dict[str, Callable[[str], object]] = {
            "scan": lambda tag: scan(False),
            "scan + decode_record": lambda tag: scan(True),
            "catch-up, apply does nothing": nothing,
            "catch-up, count projection": partial(lab.replay_projection, n),
            "raw twin's whole fold": partial(raw.replay_projection, n),
        }
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(args.rounds):
            for name, work in cases.items():
                cpu[name].append(timed(partial(work, f"s{r}"))[1] * 1e6 / n)
    backend = "postgresql" if args.pg_url else "sqlite"
    print(f"replay_projection {backend}, labledger's side: CPU µs per event, n={args.rounds}")
    for name, values in cpu.items():
        print(f"  {name:<30} {statistics.median(values):6.2f}")


def lab_log(args: argparse.Namespace) -> None:
    labledger.init_store(args.url)
    build(args.url, lab_template(), args.events, print)


def rebuild(args: argparse.Namespace) -> None:
    store = open_ledger(args.url)
    head = store.head()
    ceiling: Callable[[], float]
    if args.url.startswith("sqlite:///"):
        ceiling = lambda: raw_sqlite_rate(args.url.removeprefix("sqlite:///"))  # noqa: E731
    else:
        ceiling = lambda: raw_postgres_rate(args.url)  # noqa: E731
    rows: list[tuple[float, float, float]] = []
    try:
        for _ in range(args.rounds):
            raw = ceiling()
            engine = ProjectionEngine(store, all_projections())
            w, c = timed(engine.rebuild_many)
            rows.append((head / w, head / c, raw))
    finally:
        store.close()
    print(f"rebuild_all {args.url}: {head:,} events, n={args.rounds}")
    for label, i in (("labledger wall", 0), ("labledger CPU", 1), ("raw ceiling", 2)):
        print(f"  {label:<15} {statistics.median(r[i] for r in rows):>9,.0f}/s")
    for label, i in (("wall", 0), ("CPU", 1)):
        ratios = [r[i] / r[2] for r in rows]
        print(
            f"  labledger/raw {label}: {statistics.median(ratios):.3f}"
            f" [{min(ratios):.3f}, {max(ratios):.3f}]"
        )


def main(argv: Iterator[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="case", required=True)
    p = sub.add_parser("replay")
    p.add_argument("--pg-url", default=None, help="PostgreSQL server (default: SQLite files)")
    p.add_argument("--log", type=int, default=20_000)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=7)
    p = sub.add_parser("replay-split")
    p.add_argument("--pg-url", default=None, help="PostgreSQL server (default: SQLite files)")
    p.add_argument("--log", type=int, default=20_000)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p = sub.add_parser("lab-log")
    p.add_argument("url")
    p.add_argument("--events", type=int, default=30_000)
    p = sub.add_parser("rebuild")
    p.add_argument("url")
    p.add_argument("--rounds", type=int, default=3)
    args: Any = parser.parse_args(None if argv is None else list(argv))
    {"replay": replay, "replay-split": replay_split, "lab-log": lab_log, "rebuild": rebuild}[
        args.case
    ](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
