"""What a projection is: a name, a version, the types it handles, its tables, an apply step.

A projection is a pure function of the log: ``apply`` may read and write its
own tables and look at the typed event and its record (position, stream,
recorded_at), nothing else — no wall clock, no unseeded randomness. That is
what makes a rebuild from zero give the same state hash as live catch-up.

Projection-schema mechanism (instead of Alembic, which owns the log's own
tables): a projection declares its tables in :meth:`Projection.define`; the
engine creates them under physical names carrying the projection's version
and a *generation* (``p_<name>_<table>_v<version>g<generation>``). A version
bump or a rebuild fills a new generation and swaps it in by updating the
checkpoint row, so tables are rebuilt, never migrated.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import Connection

from labledger.events import Event
from labledger.events.typed import Typed


def physical_name(projection: str, table: str, version: int, generation: int) -> str:
    return f"p_{projection}_{table}_v{version}g{generation}"


class TableSet:
    """The tables of one projection generation, by logical name."""

    def __init__(self, projection: str, version: int, generation: int) -> None:
        self.projection, self.version, self.generation = projection, version, generation
        self.metadata = sa.MetaData()
        self.by_name: dict[str, sa.Table] = {}

    def add(self, name: str, *columns: sa.Column[Any] | sa.Constraint) -> sa.Table:
        physical = physical_name(self.projection, name, self.version, self.generation)
        table = sa.Table(physical, self.metadata, *columns)
        if not table.primary_key.columns:
            raise TypeError(f"projection table {name!r} needs a primary key (for the state hash)")
        self.by_name[name] = table
        return table

    def __getitem__(self, name: str) -> sa.Table:
        return self.by_name[name]


class Tx:
    """A projection's view of one batch transaction: its tables and small helpers."""

    def __init__(self, conn: Connection, tables: TableSet) -> None:
        self.conn = conn
        self.tables = tables

    def table(self, name: str) -> sa.Table:
        return self.tables[name]

    def get(self, name: str, **key: Any) -> sa.Row[Any] | None:
        table = self.tables[name]
        where = [table.c[k] == v for k, v in key.items()]
        return self.conn.execute(sa.select(table).where(*where)).first()

    def insert(self, name: str, **values: Any) -> None:
        self.conn.execute(sa.insert(self.tables[name]).values(**values))

    def upsert(self, name: str, key: Mapping[str, Any], **values: Any) -> None:
        """Update the row with ``key``, or insert it (portable: one writer holds the batch)."""
        table = self.tables[name]
        where = [table.c[k] == v for k, v in key.items()]
        if values:
            done = self.conn.execute(sa.update(table).where(*where).values(**values)).rowcount
            if done:
                return
        elif self.conn.execute(sa.select(sa.literal(1)).select_from(table).where(*where)).first():
            return
        self.conn.execute(sa.insert(table).values(**key, **values))

    def update(self, name: str, key: Mapping[str, Any], **values: Any) -> int:
        table = self.tables[name]
        where = [table.c[k] == v for k, v in key.items()]
        return int(self.conn.execute(sa.update(table).where(*where).values(**values)).rowcount)


class Projection(abc.ABC):
    """A read model built by replaying the log."""

    name: ClassVar[str]
    version: ClassVar[int]
    handles: ClassVar[tuple[type[Event], ...]]
    description: ClassVar[str] = ""

    @classmethod
    def type_names(cls) -> frozenset[str]:
        return frozenset(c.TYPE for c in cls.handles)

    @abc.abstractmethod
    def define(self, tables: TableSet) -> None:
        """Declare the tables (``tables.add(logical_name, *columns)``); each needs a primary key."""

    @abc.abstractmethod
    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        """Fold one event (of a handled type) into the tables."""
