"""Tracking cost (issue #17): logged points per second by flush size, on a fresh SQLite ledger.

Unit of work: one point = one ``run.log(step=…, loss=…, acc=…, lr=…)`` (three
metrics), made durable. Each flush is one batch append (a ``track.MetricsLogged``
and a heartbeat) and one durable commit (WAL, ``synchronous=FULL``).

    .venv/bin/python benchmarks/track_bench.py --points 20000 --flush-every 1 50 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from labledger.lab.tracking import TrackedRun
from labledger.ledger import open_ledger
from labledger.store import init_store


def measure(points: int, flush_every: int, where: Path) -> tuple[float, int]:
    url = f"sqlite:///{where / f'track-{flush_every}.db'}"
    init_store(url)
    with open_ledger(url) as store:
        run = TrackedRun(
            store, experiment="bench", params={"flush_every": flush_every}, flush_every=flush_every
        )
        run.start()
        head = store.head()
        began = time.perf_counter()
        for step in range(points):
            run.log(step=step, loss=1.0 / (step + 1), acc=step / points, lr=1e-3)
        run.flush()
        elapsed = time.perf_counter() - began
        return points / elapsed, store.head() - head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=20_000, help="points logged per setting")
    parser.add_argument(
        "--flush-every", type=int, nargs="+", default=[1, 50, 500], help="flush sizes measured"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.flush_every:
            points = min(args.points, 2_000) if n == 1 else args.points
            rate, events = measure(points, n, Path(tmp))
            print(f"flush_every={n:>4}: {points} points, {rate:,.0f} points/s, {events} events")


if __name__ == "__main__":
    main()
