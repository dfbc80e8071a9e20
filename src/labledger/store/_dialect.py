"""What differs between backends, behind one small interface.

Nowhere else branches on the dialect name: pragmas, how writers are
serialized, how driver errors map onto labledger's, and how migrators
exclude each other live in ``_sqlite.py`` and ``_postgres.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from labledger.errors import LabledgerError

WRITE_OPTION = "labledger_write"
"""Execution option marking a connection whose transactions will append."""


class Dialect(abc.ABC):
    name: str

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    def create_engine(self, *, read_only: bool = False) -> Engine:
        """An engine whose connections carry the durability settings."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether there is a database to open (without creating one)."""

    @abc.abstractmethod
    def lock_for_append(self, conn: Connection) -> None:
        """Serialize appenders so positions are assigned in commit order.

        Called first thing in every write transaction.
        """

    @abc.abstractmethod
    @contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        """Hold off other migrators for the duration of an upgrade."""

    @abc.abstractmethod
    def translate(self, exc: BaseException) -> LabledgerError | None:
        """A labledger error for a driver/SQLAlchemy exception, or None if not ours to map."""


def dialect_for(url: str) -> Dialect:
    """The dialect for a database URL (``sqlite:///…`` or ``postgresql://…``)."""
    from labledger.errors import UsageError

    if url.startswith("sqlite:"):
        from labledger.store._sqlite import SqliteDialect

        return SqliteDialect(url)
    if url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        from labledger.store._postgres import PostgresDialect

        return PostgresDialect(url)
    raise UsageError(
        f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
    )
