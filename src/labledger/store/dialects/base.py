"""What differs between backends, behind one small interface.

Nowhere else branches on the dialect name: pragmas, how writers are
serialized, how driver errors map onto labledger's, and how migrators
exclude each other live in ``sqlite.py`` and ``postgres.py``.

:class:`RawTxn` is the append hot path's view of a database transaction, on the driver connection.

Appends bypass SQLAlchemy's statement layer: each of its calls costs tens of
microseconds, several times per append, which is most of what labledger
added over a raw insert. SQL is written once with ``?`` placeholders;
PostgreSQL's transaction rewrites them to ``%s`` and sends a batch of reads
as one pipelined round trip.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from labledger.errors import LabledgerError
from labledger.store import nonces, schema
from labledger.store.base import DiskUsage, RecordedEvent
from labledger.store.planner import LogState, Plan, Request

DEFAULT_URL = "sqlite:///labledger.db"

WRITE_OPTION = "labledger_write"
"""Execution option marking a connection whose transactions will append."""


class AppendWaiter(abc.ABC):
    """Blocks until the log may have grown (spurious wake-ups are fine; missed ones are not)."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if something changed (or may have)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Dialect(abc.ABC):
    name: str

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    def create_engine(self, *, read_only: bool = False) -> Engine:
        """An engine whose connections carry the durability settings."""

    def anchor_path(self) -> Path | None:
        """Where this database's head anchor lives by default (None: no default)."""
        return None

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether there is a database to open (without creating one)."""

    def create_database(self) -> bool:
        """Create the database if the server has none by that name; True if it did.

        Where opening a database creates it (SQLite), there is nothing to do.
        """
        return False

    @abc.abstractmethod
    def begin(self, driver_connection: Any) -> RawTxn:
        """The append transaction's view of a pooled driver connection (nothing sent yet)."""

    @abc.abstractmethod
    def lock_for_append(self, txn: RawTxn) -> None:
        """Serialize appenders so positions are assigned in commit order.

        Called first thing in every append transaction, by :meth:`append_txn`.
        """

    @contextmanager
    def append_txn(self, engine: Engine, raw: Any = None) -> Iterator[RawTxn]:
        """A durable write transaction on a driver connection, holding the append
        lock before anything is read; commits on success, rolls back on any exception.

        ``raw``: a pooled connection the caller keeps (and returns to the pool);
        otherwise one is checked out for this transaction only.
        """
        own = raw is None
        if own:
            raw = engine.raw_connection()
        try:
            txn = self.begin(raw.driver_connection)
            try:
                self.lock_for_append(txn)
                yield txn
                txn.commit()
            except BaseException:
                txn.rollback()
                raise
        finally:
            if own:
                raw.close()

    @abc.abstractmethod
    def read_rows(self, engine: Engine, sql: str, params: Params) -> list[tuple[Any, ...]]:
        """One read-only query on a driver connection (the replay hot path)."""

    @abc.abstractmethod
    def is_duplicate_id(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the unique violation of an event id."""

    @abc.abstractmethod
    @contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        """Hold off other migrators for the duration of an upgrade."""

    def snapshot_options(self) -> dict[str, Any]:
        """Execution options for a multi-statement read that must see one snapshot."""
        return {}

    @abc.abstractmethod
    def serialize_side_write(self, conn: Connection) -> None:
        """Queue this write transaction (read models, checkpoints) behind the others."""

    @abc.abstractmethod
    def backup(self, engine: Engine, tmp: Path) -> dict[str, Any]:
        """Copy the live database consistently into ``tmp``; the copy's facts
        (``backup.facts``: head, hash, counts, revision) as the copy holds them."""

    @abc.abstractmethod
    def restore(self, src: Path, manifest: dict[str, Any], *, force: bool) -> None:
        """Replace this database by the backup ``src`` (refused if it holds events,
        unless ``force``); verification is the caller's."""

    @abc.abstractmethod
    def disk(self, engine: Engine) -> DiskUsage:
        """Where the database lives and how much room is left (for ``doctor``)."""

    @abc.abstractmethod
    def waiter(self, engine: Engine) -> AppendWaiter:
        """A blocking wake-up source for subscribers following live appends."""

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> LabledgerError | None:
        """A labledger error for a driver/SQLAlchemy exception, or None if not ours to map."""


def default_url() -> str:
    """``LABLEDGER_DB`` if set, else ``./labledger.db``."""
    return os.environ.get("LABLEDGER_DB") or DEFAULT_URL


def dialect_for(url: str) -> Dialect:
    """The dialect for a database URL (``sqlite:///…`` or ``postgresql://…``)."""
    from labledger.errors import UsageError

    if url.startswith("sqlite:"):
        from labledger.store.dialects.sqlite import SqliteDialect

        return SqliteDialect(url)
    if url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        from labledger.store.dialects.postgres import PostgresDialect

        return PostgresDialect(url)
    raise UsageError(
        f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


Params = Sequence[Any]
ID_CHUNK = 2000
HEAD_AND_VERSION = (
    "SELECT h.position, h.chain, s.version FROM (SELECT 1 AS one) AS o "
    f"LEFT JOIN ({schema.HEAD}) AS h ON 1 = 1 "
    "LEFT JOIN ll_streams AS s ON s.stream = ?"
)
"""The head and one stream's version in one row (NULLs: empty log, new stream)."""


class RawTxn(abc.ABC):
    """One append transaction, holding the append lock, on the driver connection.

    The abstract half is what differs per driver; the concrete half is the
    append itself: load what the planner needs, look ids up, write a plan.
    """

    @abc.abstractmethod
    def fetch(self, queries: Sequence[tuple[str, Params]]) -> list[list[tuple[Any, ...]]]:
        """Run read queries (in one round trip where the driver can) and return their rows."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the row count."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement for many rows (one round trip where the driver can)."""

    @abc.abstractmethod
    def any_of(self, column: str) -> str:
        """A predicate ``column`` is one of a list bound as one parameter (see ``list_param``)."""

    @abc.abstractmethod
    def list_param(self, values: Sequence[Any]) -> Any:
        """The parameter value for an ``any_of`` predicate."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit durably (SQLite: WAL + synchronous=FULL; PostgreSQL: synchronous_commit)."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Roll back whatever this transaction did (a no-op when nothing was begun)."""

    def notify_appended(self, head: int) -> None:  # noqa: B027
        """Tell subscribers, at commit, that the log grew (no-op where they poll)."""

    # -- the append ---------------------------------------------------------------

    def log_state(self, requests: Sequence[Request], now_us: int) -> LogState:
        """The head, the streams' versions and the nonces ``requests`` touch, in one fetch."""
        streams = sorted({part.stream for request in requests for part in request})
        wanted = [
            c.nonce for r in requests for p in r for c in p.claims if c is not None and c.nonce
        ]
        if len(streams) == 1:
            # Most appends touch one stream: its version rides on the head's query
            # (one statement, always one row, even on an empty log).
            queries: list[tuple[str, Params]] = [(HEAD_AND_VERSION, (streams[0],))]
        else:
            versions = f"SELECT stream, version FROM ll_streams WHERE {self.any_of('stream')}"
            queries = [(schema.HEAD, ()), (versions, (self.list_param(streams),))]
        if wanted:
            queries += [nonces.seen_query(self, wanted), (nonces.HORIZON, ())]
        results = self.fetch(queries)
        # A stream without a row is at -1: say so, or LogState.version would look it up again.
        found = dict.fromkeys(streams, -1)
        if len(streams) == 1:
            ((position, chain, version),) = results.pop(0)
            head_rows = [] if position is None else [(position, chain)]
            if version is not None:
                found[streams[0]] = version
        else:
            head_rows = results.pop(0)
            found.update((r[0], r[1]) for r in results.pop(0))
        state = LogState(
            head=head_rows[0][0] if head_rows else 0,
            chain=bytes(head_rows[0][1]) if head_rows else bytes(32),
            versions=found,
            existing={},
            recorded_at_us=now_us,
            lookup=self._stream_version,
        )
        if wanted:
            state.nonces_seen = {r[0] for r in results[0]}
            state.nonce_horizon_us = int(results[1][0][0])
        return state

    def existing(self, requests: Sequence[Request]) -> dict[str, RecordedEvent]:
        """The stored events among the ids of ``requests``."""
        ids = [e.id for request in requests for part in request for e in part.events]
        found: dict[str, RecordedEvent] = {}
        sql = f"SELECT {schema.READ_COLUMNS} FROM ll_events WHERE {self.any_of('event_id')}"
        for i in range(0, len(ids), ID_CHUNK):
            (rows,) = self.fetch([(sql, (self.list_param(ids[i : i + ID_CHUNK]),))])
            for row in rows:
                found[row[schema.EVENT_ID]] = schema.to_recorded(row)
        return found

    def write(self, planned: Plan, now_us: int, max_nonces: int) -> None:
        """Insert a plan's rows, stream versions and nonces."""
        if planned.nonces:
            nonces.record(self, planned.nonces, now_us, max_nonces)
        if planned.rows:
            self.executemany(schema.INSERT, planned.rows)
            self.executemany(
                schema.UPSERT_STREAM, [(s, v, p) for s, (v, p) in planned.versions.items()]
            )
            self.notify_appended(planned.rows[-1][schema.POSITION])

    def _stream_version(self, stream: str) -> int:
        (rows,) = self.fetch([(schema.STREAM_VERSION, (stream,))])
        return int(rows[0][0]) if rows else -1
