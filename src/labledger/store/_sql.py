"""The SQLAlchemy Core implementation of the log, shared by both backends."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, text
from sqlalchemy import exc as sa_exc

from labledger.errors import (
    BlobNotFound,
    CorruptionDetected,
    InvalidEvent,
    LabledgerError,
    SchemaNotInitialized,
    StoreUnavailable,
)
from labledger.store import _migrate, _nonces
from labledger.store._append import LogState, Outcome, Request, plan
from labledger.store._dialect import WRITE_OPTION, AppendWaiter, Dialect, dialect_for
from labledger.store._validate import normalize_part
from labledger.store._verify import verify_log
from labledger.store.base import (
    ANY,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
    SupportsNewEvent,
    VerifyReport,
)
from labledger.store.hooks import Gate, NonceStats

T = TypeVar("T")

COLUMNS = (
    "position, stream, stream_version, event_id, type, schema_version, recorded_at, "
    "correlation_id, causation_id, run_id, actor, data, metadata"
)
_HEAD = text("SELECT position, chain FROM ll_events ORDER BY position DESC LIMIT 1")
_VERSIONS = text("SELECT stream, version FROM ll_streams WHERE stream IN :streams").bindparams(
    bindparam("streams", expanding=True)
)
_VERSION = text("SELECT version FROM ll_streams WHERE stream = :s")
_BY_IDS = text(f"SELECT {COLUMNS} FROM ll_events WHERE event_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_INSERT = text(
    "INSERT INTO ll_events (position, event_id, stream, stream_version, type, schema_version, "
    "recorded_at, correlation_id, causation_id, run_id, actor, data, metadata, checksum, chain) "
    "VALUES (:position, :event_id, :stream, :stream_version, :type, :schema_version, "
    ":recorded_at, :correlation_id, :causation_id, :run_id, :actor, :data, :metadata, "
    ":checksum, :chain)"
)
_UPSERT_STREAM = text(
    "INSERT INTO ll_streams (stream, version, last_position) VALUES (:stream, :version, :pos) "
    "ON CONFLICT (stream) DO UPDATE SET version = excluded.version, "
    "last_position = excluded.last_position"
)
_READ_ALL = text(f"SELECT {COLUMNS} FROM ll_events WHERE position >= :p ORDER BY position LIMIT :n")
_READ_STREAM = text(
    f"SELECT {COLUMNS} FROM ll_events WHERE stream = :s AND stream_version >= :v "
    "ORDER BY stream_version LIMIT :n"
)
ID_CHUNK = 2000  # keeps IN lists well under every backend's parameter limit


def to_recorded(row: Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream=row[1],
        stream_version=row[2],
        id=row[3],
        type=row[4],
        schema_version=row[5],
        recorded_at_us=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        run_id=row[9],
        actor=row[10],
        data=bytes(row[11]),
        metadata=bytes(row[12]),
    )


class SqlEventStore(EventStore):
    """The log on SQLite or PostgreSQL. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        gate: Gate | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_nonces: int = _nonces.DEFAULT_MAX_NONCES,
    ) -> None:
        self.dialect: Dialect = dialect_for(url)
        self.url = url
        self.read_only = read_only
        self.gate = gate
        self.clock = clock
        self.max_nonces = max_nonces
        if not self.dialect.exists():
            raise SchemaNotInitialized(url, None, _migrate.HEAD_REVISION)
        self.engine = self.dialect.create_engine(read_only=read_only)
        self._check_schema()

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate driver errors into labledger's, in one place."""
        try:
            yield
        except LabledgerError:
            raise
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            mapped = self.dialect.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc
        except Exception as exc:
            mapped = self.dialect.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._errors(), self.engine.connect() as conn, conn.begin():
            return fn(conn)

    def _check_schema(self) -> None:
        with self._errors(), self.engine.connect() as conn:
            found = _migrate.current_revision(conn)
        if found != _migrate.HEAD_REVISION:
            self.engine.dispose()
            raise SchemaNotInitialized(self.url, found, _migrate.HEAD_REVISION)

    def close(self) -> None:
        self.engine.dispose()

    def waiter(self) -> AppendWaiter:
        return self.dialect.waiter(self.engine)

    # -- appending ----------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent | SupportsNewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        return self.append_many([StreamAppend(stream, list(events), expected_version)])[0]

    def append_many(self, parts: Sequence[StreamAppend]) -> list[AppendResult]:
        request = [normalize_part(p, self.gate) for p in parts]
        if not request:
            raise InvalidEvent("nothing to append")
        outcome = self.commit_requests([request])[0]
        if isinstance(outcome, LabledgerError):
            raise outcome
        return outcome

    def commit_requests(self, requests: Sequence[Request]) -> list[Outcome]:
        """Commit independent requests in one durable transaction; one outcome each.

        The building block of both plain appends and group commit: a request's
        conflict or bad event becomes its own outcome and never fails the others.
        """
        if self.read_only:
            raise StoreUnavailable(f"{self.url} is open read-only; nothing was written")
        with self._errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                self.dialect.lock_for_append(conn)
                state = self._load_state(conn, requests)
                planned = plan(requests, state, self.gate)
                if planned.nonces:
                    _nonces.record(conn, planned.nonces, state.recorded_at_us, self.max_nonces)
                if planned.rows:
                    conn.execute(_INSERT, planned.rows)
                    self.dialect.notify_appended(conn, planned.rows[-1]["position"])
                    conn.execute(
                        _UPSERT_STREAM,
                        [
                            {"stream": s, "version": v, "pos": p}
                            for s, (v, p) in planned.versions.items()
                        ],
                    )
            # leaving conn.begin() committed durably (synchronous=FULL / synchronous_commit=on)
        return planned.outcomes

    def _load_state(self, conn: Connection, requests: Sequence[Request]) -> LogState:
        head_row = conn.execute(_HEAD).first()
        streams = sorted({part.stream for request in requests for part in request})
        versions = {row[0]: row[1] for row in conn.execute(_VERSIONS, {"streams": streams})}
        ids = [e.id for request in requests for part in request for e in part.events]
        existing: dict[str, RecordedEvent] = {}
        for i in range(0, len(ids), ID_CHUNK):
            for row in conn.execute(_BY_IDS, {"ids": ids[i : i + ID_CHUNK]}):
                existing[row[3]] = to_recorded(row)
        state = LogState(
            head=head_row[0] if head_row else 0,
            chain=bytes(head_row[1]) if head_row else bytes(32),
            versions=versions,
            existing=existing,
            recorded_at_us=self.clock() // 1000,
            lookup=lambda stream: self._stream_version(conn, stream),
        )
        nonces = [
            c.nonce for r in requests for p in r for c in p.claims if c is not None and c.nonce
        ]
        if nonces:
            state.nonces_seen, state.nonce_horizon_us = _nonces.seen(conn, nonces)
        return state

    # -- reading --------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        n = -1 if limit is None else limit
        if n == -1:
            n = 2**62
        return self._read(
            lambda c: [
                to_recorded(r)
                for r in c.execute(_READ_STREAM, {"s": stream, "v": from_version, "n": n})
            ]
        )

    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        remaining = 2**62 if limit is None else limit
        position = max(from_position, 0)
        while remaining > 0:
            size = min(batch_size, remaining)
            page = self._read_page(position, size)
            yield from page
            if len(page) < size:
                return
            remaining -= len(page)
            position = page[-1].position + 1

    def _read_page(self, position: int, size: int) -> list[RecordedEvent]:
        def page(conn: Connection) -> list[RecordedEvent]:
            return [to_recorded(r) for r in conn.execute(_READ_ALL, {"p": position, "n": size})]

        return self._read(page)

    def head(self) -> int:
        return self._read(
            lambda c: int(
                c.execute(text("SELECT COALESCE(MAX(position), 0) FROM ll_events")).scalar_one()
            )
        )

    def stream_version(self, stream: str) -> int:
        return self._read(lambda c: self._stream_version(c, stream))

    @staticmethod
    def _stream_version(conn: Connection, stream: str) -> int:
        row = conn.execute(_VERSION, {"s": stream}).first()
        return -1 if row is None else int(row[0])

    def streams(self, prefix: str = "") -> list[StreamInfo]:
        # substr() equality, not LIKE: "a_b" is a literal prefix, never a pattern.
        sql = text(
            "SELECT stream, version, last_position FROM ll_streams "
            "WHERE substr(stream, 1, :n) = :p ORDER BY last_position"
        )
        rows = self._read(lambda c: c.execute(sql, {"n": len(prefix), "p": prefix}).all())
        return [StreamInfo(stream=r[0], version=r[1], last_position=r[2]) for r in rows]

    # -- blobs ------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidEvent("a blob must be bytes")
        digest = hashlib.sha256(data).hexdigest()
        sql = text(
            "INSERT INTO ll_blobs (sha256, size, data) VALUES (:h, :n, :d) "
            "ON CONFLICT (sha256) DO NOTHING"
        )
        with self._errors(), self.engine.connect() as conn, conn.begin():
            conn.execute(sql, {"h": digest, "n": len(data), "d": bytes(data)})
        return digest

    def get_blob(self, sha256: str) -> bytes:
        row = self._read(
            lambda c: c.execute(
                text("SELECT data FROM ll_blobs WHERE sha256 = :h"), {"h": sha256.lower()}
            ).first()
        )
        if row is None:
            raise BlobNotFound(f"no blob {sha256} in {self.url}")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != sha256.lower():
            raise CorruptionDetected(f"blob {sha256} no longer matches its hash; restore it")
        return data

    def nonce_stats(self) -> NonceStats:
        """Size, expiries, evictions and horizon of the nonce ledger."""
        return self._read(_nonces.stats)

    # -- integrity -----------------------------------------------------------------

    def verify(self) -> VerifyReport:
        return self._read(verify_log)
