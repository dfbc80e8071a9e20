"""Where a durable single append's CPU goes, stage by stage, on SQLite (issue #19).

    python benchmarks/append_split.py [--events 600]

Appends ``--events`` telemetry packets (seed 11) one per transaction through
``open_ledger`` on a fresh SQLite file, with process CPU time
(``time.process_time``) summed inside each stage. Stages nest: ``commit_requests``
holds ``_plan`` (which holds ``fetch``), the writes, the COMMIT and the anchor;
what ``append_many`` has beyond ``commit_requests`` is validation and the group
committer. The second of two passes is printed (the first warms caches).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf_payload import PacketFactory
from perf_subjects import LabledgerSubject

from labledger.store import integrity
from labledger.store import sql as store_sql
from labledger.store.dialects import sqlite

SPENT: Counter[str] = Counter()


def timed(owner: type, name: str) -> None:
    real: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            SPENT[f"{owner.__name__}.{name}"] += time.process_time() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=600)
    n = parser.parse_args().events
    for name in ("fetch", "execute", "executemany", "commit"):
        timed(sqlite.SqliteTxn, name)
    timed(integrity.HeadAnchor, "advance")
    for name in ("append_many", "commit_requests", "_plan"):
        timed(store_sql.SqlEventStore, name)
    factory = PacketFactory(seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        subject = LabledgerSubject(f"sqlite:///{Path(tmp) / 'split.db'}")
        for r in range(2):
            SPENT.clear()
            stream = f"s{r}"
            events = subject.native(factory.packets(n), stream)
            start = time.process_time()
            subject.append(stream, events, 1)
            total = time.process_time() - start
        subject.close()
    print(f"CPU per single append: {total / n * 1e6:.0f} us ({n} appends)")
    for stage, seconds in SPENT.most_common():
        print(f"  {stage:34s} {seconds / n * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
