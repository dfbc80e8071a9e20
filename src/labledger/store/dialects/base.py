"""What differs between backends, behind one small interface.

Nowhere else branches on the dialect name: pragmas, how writers are
serialized, how driver errors map onto labledger's, and how migrators
exclude each other live in ``_sqlite.py`` and ``_postgres.py``.

The append hot path's view of a database transaction, on the driver connection.

Appends bypass SQLAlchemy's statement layer: each of its calls costs tens of
microseconds, several times per append, which is most of what labledger
added over a raw insert. SQL is written once with ``?`` placeholders;
PostgreSQL's transaction rewrites them to ``%s`` and sends a batch of reads
as one pipelined round trip.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from labledger.errors import LabledgerError

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
    def lock_for_append(self, conn: Connection) -> None:
        """Serialize appenders so positions are assigned in commit order.

        Called first thing in every write transaction made through SQLAlchemy.
        """

    @abc.abstractmethod
    @contextmanager
    def append_txn(self, engine: Engine) -> Iterator[RawTxn]:
        """A durable write transaction on a driver connection, serialized like
        ``lock_for_append``; commits on success, rolls back on any exception."""

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

    def notify_appended_raw(self, txn: RawTxn, head: int) -> None:  # noqa: B027
        """Tell subscribers, at commit, that the log grew (no-op where they poll)."""

    @abc.abstractmethod
    def waiter(self, engine: Engine) -> AppendWaiter:
        """A blocking wake-up source for subscribers following live appends."""

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> LabledgerError | None:
        """A labledger error for a driver/SQLAlchemy exception, or None if not ours to map."""


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


class RawTxn(abc.ABC):
    """One write transaction, already holding the append lock when its first read runs."""

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
