"""Append → subscriber latency (perf_bench case 5).

An appender thread makes single-event durable appends paced at a fixed rate
(default 1,000/s); each payload carries ``time.perf_counter_ns()`` taken just
before the append call. A subscriber in another thread follows the log and
records, for every event it is handed, now − that timestamp.

- labledger: ``labledger.store.subscribe.subscribe`` (anyio; SQLite polls
  ``PRAGMA data_version`` every 5 ms, PostgreSQL LISTEN/NOTIFY).
- raw twin: the same mechanisms by hand: SQLite polls ``data_version`` every
  5 ms then SELECTs new rows; PostgreSQL inserts + ``NOTIFY`` in the append
  transaction, the follower LISTENs and SELECTs new rows.
- eventsourcing: ``app.recorder.subscribe(gt=…)`` (PostgreSQL LISTEN/NOTIFY);
  its SQLite recorder has no subscriptions, so that cell is empty.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from perf_payload import EVENT_TYPE, PacketFactory, sent_ns
from perf_subjects import (
    RAW_PG_CHANNEL,
    LabledgerSubject,
    PeerSubject,
    RawPostgresSubject,
    RawSqliteSubject,
    Subject,
)

from labledger.store.subscribe import subscribe

POLL_S = 0.005  # labledger's SQLite poll interval, used by the raw twin too


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    events: int
    offered_per_s: float  # the append rate actually achieved


def summarize(samples_ns: list[int], offered: float) -> Latency:
    ms = sorted(s / 1e6 for s in samples_ns)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return Latency(
        round(statistics.median(ms), 2), round(p99, 2), round(ms[-1], 2), len(ms), round(offered, 1)
    )


class Collector:
    """What the subscriber saw: one latency per event, and a signal when all arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.samples: list[int] = []
        self.done = threading.Event()
        self.ready = threading.Event()

    def saw(self, data: bytes) -> None:
        self.samples.append(time.perf_counter_ns() - sent_ns(data))
        if len(self.samples) >= self.expected:
            self.done.set()


def pace(n: int, rate: float, append_one: Callable[[int], None]) -> float:
    """Call ``append_one(i)`` n times at ``rate`` per second; the achieved rate."""
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        append_one(i)
    return n / (time.perf_counter() - start)


def measure(subject: Subject, backend: str, n: int, rate: float, tag: str) -> Latency | None:
    follow = FOLLOWERS[(subject.name, backend)]
    if follow is None:
        return None
    if isinstance(subject, RawPostgresSubject):
        subject.notify = True
    stream = f"latency/{tag}"
    subject.ready(stream)
    collector = Collector(n)
    thread = threading.Thread(target=follow, args=(subject, collector), daemon=True)
    thread.start()
    collector.ready.wait(10)
    factory = PacketFactory(seed=hash(tag) & 0xFFFF)

    def append_one(i: int) -> None:
        packet = factory.packet(t_ns=time.perf_counter_ns())
        subject.commit(stream, subject.native([packet], stream), i - 1)

    offered = pace(n, rate, append_one)
    collector.done.wait(30)
    subject.versions[stream] = n - 1
    if isinstance(subject, RawPostgresSubject):
        subject.notify = False
    return summarize(collector.samples, offered)


# -- followers ---------------------------------------------------------------------------


def follow_labledger(subject: Any, collector: Collector) -> None:
    assert isinstance(subject, LabledgerSubject)
    start = subject.store.head() + 1

    async def run() -> None:
        collector.ready.set()
        async for event in subscribe(subject.store, start, types={EVENT_TYPE}):
            collector.saw(event.data)
            if collector.done.is_set():
                return

    anyio.run(run)


def follow_raw_sqlite(subject: Any, collector: Collector) -> None:
    assert isinstance(subject, RawSqliteSubject)
    conn = sqlite3.connect(subject.path, isolation_level=None)
    last = conn.execute("SELECT COALESCE(MAX(position), 0) FROM raw_events").fetchone()[0]
    version = conn.execute("PRAGMA data_version").fetchone()[0]
    collector.ready.set()
    while not collector.done.is_set():
        now = conn.execute("PRAGMA data_version").fetchone()[0]
        if now == version:
            time.sleep(POLL_S)
            continue
        version = now
        rows = conn.execute(
            "SELECT position, data FROM raw_events WHERE position > ? ORDER BY position", (last,)
        ).fetchall()
        for position, data in rows:
            last = position
            collector.saw(data)
    conn.close()


def follow_raw_postgres(subject: Any, collector: Collector) -> None:
    listener = subject._connect()
    listener.autocommit = True
    listener.execute(f"LISTEN {RAW_PG_CHANNEL}")
    last = listener.execute("SELECT COALESCE(MAX(position), 0) FROM raw_events").fetchone()[0]
    collector.ready.set()
    while not collector.done.is_set():
        for _ in listener.notifies(timeout=1.0, stop_after=1):
            pass
        rows = listener.execute(
            "SELECT position, data FROM raw_events WHERE position > %s ORDER BY position",
            (last,),
        ).fetchall()
        for position, data in rows:
            last = position
            collector.saw(data)
    listener.close()


def follow_peer(subject: Any, collector: Collector) -> None:
    assert isinstance(subject, PeerSubject)
    app = subject.app
    with app.recorder.subscribe(gt=app.recorder.max_notification_id()) as notes:
        collector.ready.set()
        for note in notes:
            event = app.mapper.to_domain_event(note)
            if hasattr(event, "health"):
                collector.samples.append(
                    time.perf_counter_ns() - int(event.health["indicators"]["t_ns"])
                )
                if len(collector.samples) >= collector.expected:
                    collector.done.set()
                    return


FOLLOWERS: dict[tuple[str, str], Callable[[Any, Collector], None] | None] = {
    ("labledger", "sqlite"): follow_labledger,
    ("labledger", "postgresql"): follow_labledger,
    ("raw", "sqlite"): follow_raw_sqlite,
    ("raw", "postgresql"): follow_raw_postgres,
    ("eventsourcing", "sqlite"): None,
    ("eventsourcing", "postgresql"): follow_peer,
}
