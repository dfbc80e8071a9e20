"""Where append → subscriber latency goes, stage by stage (issue #19, session 7).

    python benchmarks/latency_split.py [URL] [--rate 300] [--events 900] [--rounds 2]

perf_bench's subscriber_latency case (``perf_latency.measure``: one paced appender
thread, one ``subscribe`` follower, each payload stamped just before its append
call) on labledger alone, with four more clocks per event:

- ``append call``: the stamp to the return of ``store.append``;
- ``stamp → page read starts``: the watcher's wake-up and the follower's hop to
  a worker thread, after the commit's NOTIFY (or SQLite's ``data_version`` poll);
- ``page read``: ``store.read_all`` of the page holding the event;
- ``page → delivered``: back to the event loop and out of the iterator.

Percentiles are over every event of all rounds. URL defaults to a scratch
PostgreSQL database; ``sqlite`` uses a temporary file.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import perf_latency
from perf_payload import EVENT_TYPE, sent_ns
from perf_subjects import LabledgerSubject
from store_bench import DEFAULT_PG_URL, scratch_database

from labledger.store import subscribe

PAGES: dict[int, tuple[int, int]] = {}  # stamp: (page read start, end) in perf_counter ns
RETURNED: dict[int, int] = {}  # stamp: when its append call returned
DELIVERED: dict[int, int] = {}  # stamp: when the follower handed it over


def _instrument() -> None:
    real_page = subscribe._page

    def page(store: object, position: int, size: int) -> list[object]:
        start = time.perf_counter_ns()
        events = real_page(store, position, size)  # type: ignore[arg-type]
        end = time.perf_counter_ns()
        for e in events:
            if e.type == EVENT_TYPE:
                PAGES[sent_ns(e.data)] = (start, end)
        return events  # type: ignore[return-value]

    subscribe._page = page  # type: ignore[assignment]

    class Collector(perf_latency.Collector):
        def saw(self, data: bytes) -> None:
            DELIVERED[sent_ns(data)] = time.perf_counter_ns()
            super().saw(data)

    perf_latency.Collector = Collector  # type: ignore[misc]


@contextmanager
def store_url(url: str) -> Iterator[str]:
    if url == "sqlite":
        with tempfile.TemporaryDirectory(prefix="labledger-latency-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'lab.db'}"
        return
    with scratch_database(url) as scratch:
        yield scratch


def percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"p50 {ms[len(ms) // 2]:6.2f}   p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url", nargs="?", default=DEFAULT_PG_URL)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--events", type=int, default=900)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    _instrument()
    with store_url(args.url) as url:
        subject = LabledgerSubject(url)
        real_commit = subject.commit

        def commit(stream: str, batch: list[object], version: int) -> None:
            real_commit(stream, batch, version)
            RETURNED[sent_ns(batch[0].data)] = time.perf_counter_ns()  # type: ignore[attr-defined]

        subject.commit = commit  # type: ignore[method-assign, assignment]
        backend = "sqlite" if url.startswith("sqlite") else "postgresql"
        for r in range(args.rounds):
            got = perf_latency.measure(subject, backend, args.events, args.rate, f"split{r}")
            print(f"round {r + 1}: {got}")
        subject.close()
    stages: dict[str, list[float]] = {
        "stamp → delivered (the case's latency)": [],
        "append call": [],
        "stamp → page read starts": [],
        "page read": [],
        "page → delivered": [],
    }
    for stamp, delivered in DELIVERED.items():
        start, end = PAGES[stamp]
        values = (delivered - stamp, RETURNED[stamp] - stamp, start - stamp, end - start)
        for name, ns in zip(stages, (*values, delivered - end), strict=True):
            stages[name].append(ns / 1e6)
    print(f"{backend}, {args.rate:.0f} appends/s offered, {len(DELIVERED)} events, ms:")
    for name, ms in stages.items():
        print(f"  {name:40s} {percentiles(ms)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
