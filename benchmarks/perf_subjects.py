"""The three sides of every perf_bench case: labledger, its raw-engine twin, eventsourcing.

Each subject appends packets (one durable transaction per batch), replays the
log into typed events and into a per-stream count projection. Writers for
the concurrent case come from :meth:`Subject.writer` (one per thread).
"""

from __future__ import annotations

import abc
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from perf_payload import EVENT_TYPE, Packet, decode_raw

import labledger
from labledger import ANY, NO_STREAM, NewEvent
from labledger.events import TelemetryPacket
from labledger.events.typed import Typed, decode_record
from labledger.ledger import open_ledger
from labledger.projections.base import Projection, TableSet, Tx
from labledger.projections.engine import ProjectionEngine

PAGE = 1000  # replay page size, the same on every side
CHECKPOINT_EVERY = 500  # projection batch: labledger's ProjectionEngine default

Commit = Callable[[str, Sequence[Any], int], None]
"""One durable transaction: (stream, native events, stream version before it; -1 = none)."""


class Subject(abc.ABC):
    name: str

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    @abc.abstractmethod
    def native(self, packets: Sequence[Packet], stream: str) -> list[Any]:
        """The packets in this subject's own form, built before the timer starts."""

    @abc.abstractmethod
    def commit(self, stream: str, batch: Sequence[Any], version: int) -> None: ...

    def ready(self, stream: str) -> None:  # noqa: B027
        """Untimed set-up of a new stream (the peer saves its aggregate's creation)."""

    def writer(self) -> tuple[Commit, Callable[[], None]]:
        """A commit function for one more concurrent thread, and how to release it."""
        return self.commit, lambda: None

    def append(self, stream: str, events: Sequence[Any], batch_size: int) -> None:
        version = self.versions.get(stream, -1)
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            self.commit(stream, batch, version)
            version += len(batch)
        self.versions[stream] = version

    @abc.abstractmethod
    def replay_typed(self, limit: int) -> int:
        """Read the first ``limit`` events in log order into typed events; the count."""

    @abc.abstractmethod
    def replay_projection(self, limit: int, tag: str) -> int:
        """Fold the first ``limit`` events into a fresh per-stream count projection."""

    @abc.abstractmethod
    def close(self) -> None: ...


# -- labledger -----------------------------------------------------------------------


class StreamCounts(Projection):
    """Events per stream: the smallest useful read model."""

    name = "bench_counts"
    version = 1
    handles = (TelemetryPacket,)

    def define(self, tables: TableSet) -> None:
        tables.add(
            "counts",
            sa.Column("stream", sa.Text, primary_key=True),
            sa.Column("events", sa.BigInteger, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Any]) -> None:
        stream = item.record.stream
        row = tx.get("counts", stream=stream)
        if row is None:
            tx.insert("counts", stream=stream, events=1)
        else:
            tx.update("counts", {"stream": stream}, events=row.events + 1)


class LabledgerSubject(Subject):
    """``labledger.ledger.open_ledger(url)``: typed validation of every appended event."""

    name = "labledger"

    def __init__(self, url: str) -> None:
        super().__init__()
        labledger.init_store(url)
        self.store = open_ledger(url)

    def native(self, packets: Sequence[Packet], stream: str) -> list[NewEvent]:
        return [
            NewEvent(type=EVENT_TYPE, schema_version=p.version, data=p.data, id=p.id)
            for p in packets
        ]

    def commit(self, stream: str, batch: Sequence[Any], version: int) -> None:
        self.store.append(stream, batch, NO_STREAM if version < 0 else version)

    def append_any(self, stream: str, batch: Sequence[Any]) -> None:
        self.store.append(stream, batch, ANY)

    def replay_typed(self, limit: int) -> int:
        n = 0
        for record in self.store.read_all(1, batch_size=PAGE, limit=limit):
            decode_record(record)
            n += 1
        return n

    def replay_projection(self, limit: int, tag: str) -> int:
        proj_cls = type(f"StreamCounts_{tag}", (StreamCounts,), {"name": f"bench_counts_{tag}"})
        engine = ProjectionEngine(self.store, [proj_cls()], batch_size=CHECKPOINT_EVERY)
        return engine.catch_up(proj_cls.name, until=limit).position

    def close(self) -> None:
        self.store.close()


# -- the raw twins -----------------------------------------------------------------------

RAW_COLUMNS = "id, stream, version, type, schema_version, data"
RAW_SCAN = "SELECT position, stream, schema_version, data FROM raw_events "
RAW_SQLITE_DDL = [
    """CREATE TABLE IF NOT EXISTS raw_events (
        position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,
        version INTEGER NOT NULL, type TEXT NOT NULL, schema_version INTEGER NOT NULL,
        data BLOB NOT NULL, UNIQUE (stream, version))""",
    """CREATE TABLE IF NOT EXISTS raw_counts (
        proj TEXT NOT NULL, stream TEXT NOT NULL, events INTEGER NOT NULL,
        PRIMARY KEY (proj, stream))""",
    "CREATE TABLE IF NOT EXISTS raw_checkpoints (proj TEXT PRIMARY KEY, position INTEGER)",
]
RAW_PG_DDL = [
    """CREATE TABLE IF NOT EXISTS raw_events (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
        stream TEXT NOT NULL, version BIGINT NOT NULL, type TEXT NOT NULL,
        schema_version INT NOT NULL, data BYTEA NOT NULL, UNIQUE (stream, version))""",
    """CREATE TABLE IF NOT EXISTS raw_counts (
        proj TEXT NOT NULL, stream TEXT NOT NULL, events BIGINT NOT NULL,
        PRIMARY KEY (proj, stream))""",
    "CREATE TABLE IF NOT EXISTS raw_checkpoints (proj TEXT PRIMARY KEY, position BIGINT)",
]
RAW_PG_CHANNEL = "raw_appended"
UPSERT_COUNT = (
    "INSERT INTO raw_counts (proj, stream, events) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (proj, stream) DO UPDATE SET events = excluded.events"
)
UPSERT_CHECKPOINT = (
    "INSERT INTO raw_checkpoints (proj, position) VALUES ({p}, {p}) "
    "ON CONFLICT (proj) DO UPDATE SET position = excluded.position"
)


def raw_rows(stream: str, batch: Sequence[Any], version: int) -> list[tuple[Any, ...]]:
    """Rows of the raw table; ``batch`` holds (id, schema_version, data) tuples."""
    return [(e[0], stream, version + 1 + k, EVENT_TYPE, e[1], e[2]) for k, e in enumerate(batch)]


class RawProjection:
    """Counts per stream in memory, flushed with the checkpoint every CHECKPOINT_EVERY events."""

    def __init__(self, tag: str, flush: Callable[[list[tuple[str, str, int]], int], None]) -> None:
        self.tag, self.flush = tag, flush
        self.counts: dict[str, int] = {}
        self.touched: set[str] = set()
        self.pending = 0

    def add(self, stream: str, position: int) -> None:
        self.counts[stream] = self.counts.get(stream, 0) + 1
        self.touched.add(stream)
        self.pending += 1
        if self.pending >= CHECKPOINT_EVERY:
            self.done(position)

    def done(self, position: int) -> None:
        if self.pending:
            self.flush([(self.tag, s, self.counts[s]) for s in self.touched], position)
        self.touched, self.pending = set(), 0


class RawSqliteSubject(Subject):
    """stdlib sqlite3, labledger's pragmas: WAL, synchronous=FULL, BEGIN IMMEDIATE."""

    name = "raw"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.conn = self._connect()
        for ddl in RAW_SQLITE_DDL:
            self.conn.execute(ddl)
        self.insert = f"INSERT INTO raw_events ({RAW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def native(self, packets: Sequence[Packet], stream: str) -> list[tuple[str, int, bytes]]:
        return [(p.id, p.version, p.data) for p in packets]

    def commit(self, stream: str, batch: Sequence[Any], version: int) -> None:
        self._commit(self.conn, stream, batch, version)

    def _commit(
        self, conn: sqlite3.Connection, stream: str, batch: Sequence[Any], version: int
    ) -> None:
        rows = raw_rows(stream, batch, version)
        conn.execute("BEGIN IMMEDIATE")
        if len(rows) == 1:
            conn.execute(self.insert, rows[0])
        else:
            conn.executemany(self.insert, rows)
        conn.execute("COMMIT")

    def writer(self) -> tuple[Commit, Callable[[], None]]:
        conn = self._connect()
        return (lambda s, b, v: self._commit(conn, s, b, v)), conn.close

    def _scan(self, limit: int) -> sqlite3.Cursor:
        return self.conn.execute(RAW_SCAN + "WHERE position <= ? ORDER BY position", (limit,))

    def replay_typed(self, limit: int) -> int:
        n = 0
        for row in self._scan(limit):
            decode_raw(row[2], row[3])
            n += 1
        return n

    def replay_projection(self, limit: int, tag: str) -> int:
        writer = self._connect()

        def flush(counts: list[tuple[str, str, int]], position: int) -> None:
            writer.execute("BEGIN IMMEDIATE")
            writer.executemany(UPSERT_COUNT.format(p="?"), counts)
            writer.execute(UPSERT_CHECKPOINT.format(p="?"), (tag, position))
            writer.execute("COMMIT")

        proj, position = RawProjection(tag, flush), 0
        for row in self._scan(limit):
            decode_raw(row[2], row[3])
            position = row[0]
            proj.add(row[1], position)
        proj.done(position)
        writer.close()
        return position

    def close(self) -> None:
        self.conn.close()


class RawPostgresSubject(Subject):
    """psycopg 3: insert + commit; executemany (100) or COPY (1,000+) per batch."""

    name = "raw"
    COPY_FROM = 1000
    notify = False  # the latency case adds a NOTIFY to each append transaction

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.conn = self._connect()
        for ddl in RAW_PG_DDL:
            self.conn.execute(ddl)
        self.conn.commit()
        self.insert = f"INSERT INTO raw_events ({RAW_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.url)
        conn.execute("SET synchronous_commit = on")
        conn.commit()
        return conn

    def native(self, packets: Sequence[Packet], stream: str) -> list[tuple[str, int, bytes]]:
        return [(p.id, p.version, p.data) for p in packets]

    def commit(self, stream: str, batch: Sequence[Any], version: int) -> None:
        self._commit(self.conn, stream, batch, version)

    def _commit(self, conn: Any, stream: str, batch: Sequence[Any], version: int) -> None:
        rows = raw_rows(stream, batch, version)
        with conn.cursor() as cur:
            if len(rows) == 1:
                cur.execute(self.insert, rows[0])
            elif len(rows) < self.COPY_FROM:
                cur.executemany(self.insert, rows)
            else:
                with cur.copy(f"COPY raw_events ({RAW_COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            if self.notify:
                cur.execute(f"NOTIFY {RAW_PG_CHANNEL}")
        conn.commit()

    def writer(self) -> tuple[Commit, Callable[[], None]]:
        conn = self._connect()
        return (lambda s, b, v: self._commit(conn, s, b, v)), conn.close

    def _scan(self, limit: int) -> Any:
        cur = self.conn.cursor(name="raw_scan")
        cur.itersize = PAGE
        cur.execute(RAW_SCAN + "WHERE position <= %s ORDER BY position", (limit,))
        return cur

    def replay_typed(self, limit: int) -> int:
        n = 0
        with self._scan(limit) as cur:
            for row in cur:
                decode_raw(row[2], row[3])
                n += 1
        self.conn.commit()
        return n

    def replay_projection(self, limit: int, tag: str) -> int:
        writer = self._connect()

        def flush(counts: list[tuple[str, str, int]], position: int) -> None:
            with writer.cursor() as cur:
                cur.executemany(UPSERT_COUNT.format(p="%s"), counts)
                cur.execute(UPSERT_CHECKPOINT.format(p="%s"), (tag, position))
            writer.commit()

        proj, position = RawProjection(tag, flush), 0
        with self._scan(limit) as cur:
            for row in cur:
                decode_raw(row[2], row[3])
                position = row[0]
                proj.add(row[1], position)
        self.conn.commit()
        proj.done(position)
        writer.close()
        return position

    def close(self) -> None:
        self.conn.close()


# -- the eventsourcing peer --------------------------------------------------------------

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import Tracking

    class Rig(Aggregate):
        """One stream of telemetry: an aggregate whose only event carries a packet."""

        @event("Created")
        def __init__(self, name: str) -> None:
            self.name = name

        @event("PacketRecorded")
        def record(
            self,
            source: str,
            priority: str,
            health: dict[str, Any],
            metrics: list[dict[str, Any]],
            events: list[dict[str, Any]],
        ) -> None:
            pass

    class TelemetryApp(Application[Any]):
        """A plain eventsourcing Application; persistence chosen by its environment."""

    HAVE_PEER = True
except ImportError:  # pip install -e ".[bench]"
    HAVE_PEER = False


def peer_env_sqlite(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


def peer_env_postgres(url: str) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": u.database or "postgres",
        "POSTGRES_HOST": u.host or "127.0.0.1",
        "POSTGRES_PORT": str(u.port or 5432),
        "POSTGRES_USER": u.username or "postgres",
        "POSTGRES_PASSWORD": u.password or "",
    }


class PeerSubject(Subject):
    """eventsourcing 9.5 with its defaults: ``Application.save(aggregate)`` per transaction;
    replay = ``app.recorder.select_notifications`` pages + ``app.mapper.to_domain_event``."""

    name = "eventsourcing"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__()
        self.app = TelemetryApp(env=env)
        self.rigs: dict[str, Any] = {}
        self.lock = threading.Lock()

    def native(self, packets: Sequence[Packet], stream: str) -> list[dict[str, Any]]:
        return [_v2_body(p) for p in packets]

    def ready(self, stream: str) -> None:
        if stream not in self.rigs:
            rig = Rig(name=stream)
            self.app.save(rig)
            self.rigs[stream] = rig

    def commit(self, stream: str, batch: Sequence[Any], version: int) -> None:
        rig = self.rigs[stream]
        for body in batch:
            rig.record(**body)
        self.app.save(rig)

    def replay_typed(self, limit: int) -> int:
        to_event, n = self.app.mapper.to_domain_event, 0
        for page in self._pages(limit):
            for note in page:
                to_event(note)
                n += 1
        return n

    def _pages(self, limit: int) -> Any:
        start, seen = 1, 0
        while seen < limit:
            page = self.app.recorder.select_notifications(start, min(PAGE, limit - seen))
            if not page:
                return
            yield page
            seen += len(page)
            start = page[-1].id + 1

    def replay_projection(self, limit: int, tag: str) -> int:
        view = self.app.factory.tracking_recorder()
        to_event = self.app.mapper.to_domain_event
        counts: dict[Any, int] = {}
        position = pending = 0
        for page in self._pages(limit):
            for note in page:
                domain_event = to_event(note)
                counts[domain_event.originator_id] = counts.get(domain_event.originator_id, 0) + 1
                position, pending = note.id, pending + 1
                if pending >= CHECKPOINT_EVERY:
                    view.insert_tracking(Tracking(f"counts_{tag}", position))
                    pending = 0
        if pending:
            view.insert_tracking(Tracking(f"counts_{tag}", position))
        return position

    def close(self) -> None:
        self.app.close()


def _v2_body(p: Packet) -> dict[str, Any]:
    body = dict(p.body)
    body.setdefault("priority", "NORMAL")
    return body
