"""cProfile of the read side (issue #19): rebuild_all over a lab-shaped log, or replay_projection.

    python benchmarks/profile_rebuild.py rebuild [--events 50000] [--pg-url URL] [--top 30]
    python benchmarks/profile_rebuild.py projection [--events 10000] [--pg-url URL]
    python benchmarks/profile_rebuild.py rebuild --db URL      # an existing log, not rebuilt

Builds the log untimed in a scratch store (a SQLite file, or a scratch
PostgreSQL database with ``--pg-url``), then profiles one ``rebuild_many``
over every shipped projection (``rebuild``) or one catch-up of perf_bench's
per-stream count projection (``projection``). Prints the top functions by
internal time and by cumulative time, with their share of the total, and the
SQL statements executed per projection (counted with an engine event), so a
per-event query shows up as a count near the number of events.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import labledger
from labledger import NewEvent
from labledger.ledger import open_ledger
from labledger.projections.engine import ProjectionEngine
from labledger.projections.registry import all_projections

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_payload import EVENT_TYPE, PacketFactory
from perf_rebuild import build, lab_template
from perf_subjects import CHECKPOINT_EVERY, StreamCounts
from store_bench import scratch_database


@contextmanager
def scratch(pg_url: str | None) -> Iterator[str]:
    if pg_url:
        with scratch_database(pg_url) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="labledger-profile-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'log.db'}"


def build_packets(url: str, n: int) -> None:
    """perf_bench's replay log: n packets in 100 streams, batches of 1,000."""
    store = open_ledger(url)
    try:
        factory = PacketFactory(seed=23, v1_every=10)
        for i in range(0, n, 1000):
            packets = factory.packets(min(1000, n - i))
            events = [
                NewEvent(type=EVENT_TYPE, schema_version=p.version, data=p.data, id=p.id)
                for p in packets
            ]
            store.append(f"rig-{(i // 1000) % 100:02d}", events, labledger.ANY)
    finally:
        store.close()


def count_statements(store: Any) -> Counter[str]:
    """Every SQL statement the store's engine runs, by its first 90 characters."""
    counts: Counter[str] = Counter()
    engine = store.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        counts[" ".join(statement.split())[:90]] += 1

    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("case", choices=("rebuild", "projection"))
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--db", default=None, help="profile this store's log as it is")
    args = parser.parse_args()
    n = args.events or (50_000 if args.case == "rebuild" else 10_000)
    with scratch(args.pg_url) if args.db is None else nullcontext(args.db) as url:
        if args.db is None:
            labledger.init_store(url)
            if args.case == "rebuild":
                build(url, lab_template(), n, print)
            else:
                build_packets(url, n)
        store = open_ledger(url)
        if args.db is not None:
            n = min(n, store.head()) if args.case == "projection" else store.head()
        try:
            counts = count_statements(store)
            if args.case == "rebuild":
                engine = ProjectionEngine(store, all_projections())
                work: Any = engine.rebuild_many
            else:
                engine = ProjectionEngine(store, [StreamCounts()], batch_size=CHECKPOINT_EVERY)
                work = lambda: engine.catch_up(StreamCounts.name, until=n)  # noqa: E731
            profiler = cProfile.Profile()
            profiler.enable()
            work()
            profiler.disable()
        finally:
            store.close()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"{args.case}: {n:,} events, {total:.2f} s profiled ({n / total:,.0f} events/s)")
    for key, title in (("tottime", "internal"), ("cumulative", "cumulative")):
        print(f"\ntop {args.top} by {title} time (share of {total:.2f} s):")
        stats.sort_stats(key)
        for func in stats.fcn_list[: args.top]:  # type: ignore[attr-defined]
            _cc, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
            t = tt if key == "tottime" else ct
            where = f"{Path(func[0]).name}:{func[1]}({func[2]})"
            print(f"  {100 * t / total:5.1f}%  {t:7.3f} s  {nc:>9,} calls  {where}")
    print(f"\nSQL statements: {sum(counts.values()):,}; the most frequent:")
    for statement, k in counts.most_common(15):
        print(f"  {k:>8,}  {statement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
