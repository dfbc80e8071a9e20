"""The SQLAlchemy Core implementation of the log, shared by both backends.

An append goes: validate (``planner.normalize_part``), queue for group commit
(``group_commit``), then :meth:`SqlEventStore.commit_requests` opens one
append transaction (``dialects``: lock first), loads the log's state, plans
(``planner.plan``, pure) and writes the plan.

The fast path does not look event ids up before inserting: new ids are the
common case, and the unique index on ``event_id`` is the authority anyway.
When the insert hits it, the transaction rolls back and is planned again
with the ids looked up (an idempotent retry then gets its original
positions). A request that fails (expected version, replayed nonce) is
re-planned with ids too, so the retry of an already-appended batch is still
recognised.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection, bindparam, text

from labledger.errors import (
    BlobNotFound,
    CorruptionDetected,
    InvalidEvent,
    LabledgerError,
    SchemaNotInitialized,
    StoreUnavailable,
)
from labledger.store import integrity, nonces, schema, subscribe
from labledger.store.base import (
    ANY,
    AnchorStatus,
    AppendResult,
    DiskUsage,
    EventStore,
    ExpectedVersion,
    Gate,
    NewEvent,
    NonceStats,
    Problem,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
    SupportsNewEvent,
    VerifyReport,
)
from labledger.store.dialects.base import (
    WRITE_OPTION,
    AppendWaiter,
    Dialect,
    RawTxn,
    default_url,
    dialect_for,
)
from labledger.store.group_commit import GroupCommitter
from labledger.store.integrity import AnchorMismatch
from labledger.store.planner import Outcome, Plan, Request, normalize_part, plan

T = TypeVar("T")


class _DuplicateId(Exception):
    """The optimistic insert met an existing event id; plan again with ids looked up."""


class SqlEventStore(EventStore):
    """The log on SQLite or PostgreSQL. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        gate: Gate | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_nonces: int = nonces.DEFAULT_MAX_NONCES,
        anchor: Path | bool | None = True,
    ) -> None:
        self.dialect: Dialect = dialect_for(url)
        self.url = url
        self.read_only = read_only
        self.gate = gate
        self.clock = clock
        self.max_nonces = max_nonces
        if not self.dialect.exists():
            raise SchemaNotInitialized(url, None, schema.HEAD_REVISION)
        self.engine = self.dialect.create_engine(read_only=read_only)
        self._check_schema()
        self.group = GroupCommitter(self.commit_requests)
        # Group commit has one leader at a time: it keeps one pooled connection for
        # its transactions instead of a checkout and a reset-on-return per flush
        # (~20 us each). Whoever finds it taken (commit_requests is public) uses the pool.
        self._append_lock = threading.Lock()
        self._append_raw: Any = None
        default = self.dialect.anchor_path()
        self.anchor = integrity.open_anchor(anchor, default, read_only=read_only)
        self.anchor_problem = self._check_anchor()

    # -- transactions -----------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate driver errors into labledger's, in one place."""
        try:
            yield
        except LabledgerError:
            raise
        except Exception as exc:
            mapped = self.dialect.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        with self._errors(), self.engine.connect() as conn:
            if snapshot:
                conn = conn.execution_options(**self.dialect.snapshot_options())
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                self.dialect.serialize_side_write(conn)
                yield conn

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.read() as conn:
            return fn(conn)

    def schema_revision(self) -> str | None:
        with self._errors(), self.engine.connect() as conn:
            return schema.current_revision(conn)

    def _check_schema(self) -> None:
        found = self.schema_revision()
        if found != schema.HEAD_REVISION:
            self.engine.dispose()
            raise SchemaNotInitialized(self.url, found, schema.HEAD_REVISION)

    def close(self) -> None:
        # The change watcher's thread holds a connection of this engine: end it first.
        subscribe.stop_watching(self)
        with self._append_lock:
            self._release_append_raw()
        self.engine.dispose()
        if self.anchor is not None:
            self.anchor.close()

    # -- head anchor --------------------------------------------------------

    @property
    def keeps_anchor(self) -> bool:
        return self.anchor is not None

    def _chain_at(self, position: int) -> bytes | None:
        sql = text("SELECT chain FROM ll_events WHERE position = :p")
        row = self._read(lambda c: c.execute(sql, {"p": position}).first())
        return None if row is None else bytes(row[0])

    def _check_anchor(self) -> str | None:
        if self.anchor is None:
            return None
        try:
            state = self.anchor.read()
        except AnchorMismatch as exc:
            return str(exc)
        if state is None:
            return None
        return integrity.check(state, self.head(), self._chain_at(state.position))

    def anchor_status(self) -> AnchorStatus | None:
        if self.anchor is None:
            return None
        state = self.anchor.read()
        return AnchorStatus(
            path=str(self.anchor.path),
            position=state.position if state else None,
            chain=state.chain if state else None,
            problem=self.anchor_problem,
        )

    def accept_anchor(self) -> int:
        if self.anchor is None:
            raise StoreUnavailable(f"{self.url} keeps no head anchor")
        head = self.head()
        self.anchor.reset(head, self._chain_at(head) or bytes(32))
        self.anchor_problem = None
        return head

    def waiter(self) -> AppendWaiter:
        return self.dialect.waiter(self.engine)

    def copy_into(self, path: Path) -> tuple[str, dict[str, Any]]:
        with self._errors():
            return self.dialect.name, self.dialect.backup(self.engine, path)

    def disk(self) -> DiskUsage:
        with self._errors():
            return self.dialect.disk(self.engine)

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
        outcome = self.group.submit(request)
        if isinstance(outcome, LabledgerError):
            raise outcome
        return outcome

    def commit_requests(self, requests: Sequence[Request]) -> list[Outcome]:
        if self.read_only:
            raise StoreUnavailable(f"{self.url} is open read-only; nothing was written")
        if self.anchor_problem is not None:
            raise AnchorMismatch(f"appends are refused: {self.anchor_problem}")
        with self._errors():
            try:
                planned = self._commit(requests, check_ids=False)
            except _DuplicateId:
                planned = self._commit(requests, check_ids=True)
        if planned.rows and self.anchor is not None:
            last = planned.rows[-1]
            self.anchor.advance(last[schema.POSITION], last[schema.CHAIN])
        return planned.outcomes

    def _release_append_raw(self) -> None:
        raw, self._append_raw = self._append_raw, None
        if raw is not None:
            raw.close()  # back to the pool, whose reset (or invalidation) deals with it

    @contextmanager
    def _append_connection(self) -> Iterator[Any]:
        """The kept connection (None: it is in use; ``append_txn`` checks one out)."""
        if not self._append_lock.acquire(blocking=False):
            yield None
            return
        try:
            if self._append_raw is None:
                self._append_raw = self.engine.raw_connection()
            try:
                yield self._append_raw
            except BaseException:
                self._release_append_raw()  # a failed transaction may have broken it
                raise
        finally:
            self._append_lock.release()

    def _commit(self, requests: Sequence[Request], *, check_ids: bool) -> Plan:
        now_us = self.clock() // 1000
        try:
            with (
                self._append_connection() as raw,
                self.dialect.append_txn(self.engine, raw) as txn,
            ):
                planned = self._plan(txn, requests, now_us, check_ids=check_ids)
                txn.write(planned, now_us, self.max_nonces)
        except Exception as exc:
            if not check_ids and self.dialect.is_duplicate_id(exc):
                raise _DuplicateId from exc
            raise
        return planned

    def _plan(
        self, txn: RawTxn, requests: Sequence[Request], now_us: int, *, check_ids: bool
    ) -> Plan:
        state = txn.log_state(requests, now_us)
        if check_ids:
            state.existing = txn.existing(requests)
        planned = plan(requests, state, self.gate)
        if not check_ids and any(isinstance(o, LabledgerError) for o in planned.outcomes):
            # A conflict or a "replayed" nonce may be the retry of a batch that is
            # already in: recognise it by its ids.
            state.existing = txn.existing(requests)
            if state.existing:
                planned = plan(requests, state, self.gate)
        return planned

    # -- reading --------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        n = 2**62 if limit is None or limit == -1 else limit
        return self._rows(schema.READ_STREAM, (stream, from_version, n))

    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        remaining = 2**62 if limit is None else limit
        position = max(from_position, 0)
        while remaining > 0:
            size = min(batch_size, remaining)
            page = self._rows(schema.READ_ALL, (position, size))
            yield from page
            if len(page) < size:
                return
            remaining -= len(page)
            position = page[-1].position + 1

    def _decoded(self, sql: str, params: tuple[Any, ...]) -> list[RecordedEvent]:
        with self._errors():
            rows = self.dialect.read_rows(self.engine, sql, params)
        return [schema.to_recorded(r) for r in rows]

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[RecordedEvent]:
        try:
            return self._decoded(sql, params)
        except CorruptionDetected as exc:
            if exc.position is not None:
                raise
            raise self._locate(sql, params, exc) from exc

    def _locate(self, sql: str, params: tuple[Any, ...], exc: CorruptionDetected) -> Exception:
        """The page held a row the driver could not decode (e.g. text that is not UTF-8):
        read it again one row at a time to name the first bad position."""
        try:
            positions = self.dialect.read_rows(
                self.engine, sql.replace(schema.READ_COLUMNS, "position", 1), params
            )
            for (position,) in positions:
                try:
                    self._decoded(schema.READ_ALL, (position, 1))
                except CorruptionDetected as bad:
                    return CorruptionDetected(f"position {position}: {bad}", position)
        except Exception:  # a store this damaged may not answer even that: say what we have
            return exc
        return exc

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        sql = text("SELECT event_id FROM ll_events WHERE event_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )

        def lookup(conn: Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(ids), 2000):
                found.update(r[0] for r in conn.execute(sql, {"ids": list(ids[i : i + 2000])}))
            return found

        return self._read(lookup)

    def head(self) -> int:
        sql = text("SELECT COALESCE(MAX(position), 0) FROM ll_events")
        return self._read(lambda c: int(c.execute(sql).scalar_one()))

    def stream_version(self, stream: str) -> int:
        sql = text("SELECT version FROM ll_streams WHERE stream = :s")
        row = self._read(lambda c: c.execute(sql, {"s": stream}).first())
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
        with self.write() as conn:
            conn.execute(sql, {"h": digest, "n": len(data), "d": bytes(data)})
        return digest

    def get_blob(self, sha256: str) -> bytes:
        sql = text("SELECT data FROM ll_blobs WHERE sha256 = :h")
        row = self._read(lambda c: c.execute(sql, {"h": sha256.lower()}).first())
        if row is None:
            raise BlobNotFound(f"no blob {sha256} in {self.url}")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != sha256.lower():
            raise CorruptionDetected(f"blob {sha256} no longer matches its hash; restore it")
        return data

    def nonce_stats(self) -> NonceStats:
        return self._read(nonces.stats)

    # -- integrity -----------------------------------------------------------------

    def verify(self) -> VerifyReport:
        with self.read(snapshot=True) as conn:
            report = integrity.verify_log(conn)
        problem = self._check_anchor()
        if report.ok and problem is not None:
            return msgspec.structs.replace(
                report,
                ok=False,
                problem=Problem.ANCHOR,
                message=problem,
                first_bad_position=None,
            )
        return report


def open_store(
    url: str | None = None,
    *,
    read_only: bool = False,
    gate: Gate | None = None,
    clock: Callable[[], int] | None = None,
    max_nonces: int | None = None,
) -> EventStore:
    """Open an initialised store (raw: no typed validation unless a ``gate`` is given).

    Raises:
        SchemaNotInitialized: no schema, or not at this code's revision; the
            message names the ``labledger init`` command to run.
        StoreUnavailable: the database cannot be reached.
    """
    options: dict[str, Any] = {}
    if clock is not None:
        options["clock"] = clock  # nanoseconds since the epoch, like time.time_ns
    if max_nonces is not None:
        options["max_nonces"] = max_nonces
    return SqlEventStore(url or default_url(), read_only=read_only, gate=gate, **options)
