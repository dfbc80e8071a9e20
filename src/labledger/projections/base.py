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


class RowView:
    """A row read through :class:`Tx`: attribute access like ``sa.Row``, and ``_mapping``.

    A snapshot: later writes in the batch do not change a view already handed out.
    """

    __slots__ = ("_mapping",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._mapping: dict[str, Any] = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"RowView({self._mapping!r})"


RowLike = RowView | sa.Row[Any]
"""What ``Tx.get`` returns: a cached row, or a database row for lookups off the key."""


class _Cached:
    """One row of the identity map: its values (None: known absent) and where it stands."""

    __slots__ = ("dirty", "stored", "values")

    def __init__(self, values: dict[str, Any] | None, *, stored: bool) -> None:
        self.values = values
        self.stored = stored  # a row with this key is in the database (as of the last flush)
        self.dirty = False


class Tx:
    """A projection's unit of work for one batch: an identity map, flushed in bulk.

    ``get``/``insert``/``upsert``/``update`` by primary key work on rows held in
    memory: a key is read from the database once per batch, and what the batch
    wrote goes out at :meth:`flush` as one ``INSERT`` and one ``UPDATE``
    (executemany) per table, in the batch's transaction, before its checkpoint.
    Anything else (a query, a delete, a lookup by another key) goes through
    :attr:`conn`, which flushes first and forgets the cached rows, since such
    a statement may change them behind the map's back.
    """

    def __init__(self, conn: Connection, tables: TableSet) -> None:
        self._conn = conn
        self.tables = tables
        self._rows: dict[str, dict[tuple[Any, ...], _Cached]] = {}

    @property
    def conn(self) -> Connection:
        """The batch's connection, with every pending write flushed and the map dropped."""
        self.flush()
        self._rows.clear()
        return self._conn

    def table(self, name: str) -> sa.Table:
        return self.tables[name]

    def get(self, name: str, **key: Any) -> RowLike | None:
        pk = self._pk_of(name, key)
        if pk is None:
            table = self.tables[name]
            where = [table.c[k] == v for k, v in key.items()]
            return self.conn.execute(sa.select(table).where(*where)).first()
        values = self._load(name, pk).values
        return None if values is None else RowView(values)

    def insert(self, name: str, **values: Any) -> None:
        pk = self._pk_of(name, values, partial=True)
        entry = None if pk is None else self._rows.get(name, {}).get(pk)
        row = self._full_row(name, values)
        if pk is None or row is None or (entry is not None and entry.values is not None):
            # Not mappable, or a duplicate key: let the database say what it thinks.
            self.conn.execute(sa.insert(self.tables[name]).values(**values))
            return
        if entry is None:  # unknown: written as an insert; a stored duplicate fails at flush
            entry = self._rows.setdefault(name, {})[pk] = _Cached(None, stored=False)
        entry.values, entry.dirty = row, True

    def upsert(self, name: str, key: Mapping[str, Any], **values: Any) -> None:
        """Update the row with ``key``, or insert it."""
        pk = self._pk_of(name, key)
        if pk is None or not self._settable(name, values):
            self._upsert_now(name, key, values)
            return
        entry = self._load(name, pk)
        if entry.values is None:
            row = self._full_row(name, {**key, **values})
            if row is None:
                self._upsert_now(name, key, values)
                return
            entry.values = row
        else:
            entry.values.update(self._coerced(name, values))
        entry.dirty = True

    def update(self, name: str, key: Mapping[str, Any], **values: Any) -> int:
        """Update the row(s) with ``key``; how many there were."""
        pk = self._pk_of(name, key)
        if pk is None or not self._settable(name, values):
            table = self.tables[name]
            where = [table.c[k] == v for k, v in key.items()]
            return int(self.conn.execute(sa.update(table).where(*where).values(**values)).rowcount)
        entry = self._load(name, pk)
        if entry.values is None:
            return 0
        entry.values.update(self._coerced(name, values))
        entry.dirty = True
        return 1

    def flush(self) -> None:
        """Write every changed row: per table one bulk INSERT and one bulk UPDATE."""
        for name, rows in self._rows.items():
            dirty = [e for e in rows.values() if e.dirty and e.values is not None]
            if not dirty:
                continue
            table = self.tables[name]
            new = [e.values for e in dirty if not e.stored and e.values is not None]
            if new:
                self._conn.execute(sa.insert(table), new)
            changed = [e.values for e in dirty if e.stored and e.values is not None]
            if changed:
                self._conn.execute(*_bulk_update(table, changed))
            for e in dirty:
                e.stored, e.dirty = True, False

    # -- the identity map ------------------------------------------------------

    def _pk_of(
        self, name: str, key: Mapping[str, Any], *, partial: bool = False
    ) -> tuple[Any, ...] | None:
        """The primary-key tuple when ``key`` names exactly (or, partial: at least) the key."""
        columns = self.tables[name].primary_key.columns.keys()
        if (key.keys() >= set(columns)) if partial else (key.keys() == set(columns)):
            return tuple(key[c] for c in columns)
        return None

    def _load(self, name: str, pk: tuple[Any, ...]) -> _Cached:
        rows = self._rows.setdefault(name, {})
        entry = rows.get(pk)
        if entry is None:
            table = self.tables[name]
            where = [c == v for c, v in zip(table.primary_key.columns, pk, strict=True)]
            found = self._conn.execute(sa.select(table).where(*where)).first()
            entry = _Cached(
                None if found is None else dict(found._mapping), stored=found is not None
            )
            rows[pk] = entry
        return entry

    def _settable(self, name: str, values: Mapping[str, Any]) -> bool:
        """Whether ``values`` only set known, non-key columns (else: straight to SQL)."""
        table = self.tables[name]
        return values.keys() <= set(table.c.keys()) and not values.keys() & set(
            table.primary_key.columns.keys()
        )

    def _full_row(self, name: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """Every column of a new row, defaults filled in; None where only SQL can say."""
        table = self.tables[name]
        if not values.keys() <= set(table.c.keys()):
            return None
        row: dict[str, Any] = {}
        for column in table.columns:
            if column.key in values:
                continue
            default = column.default
            if column.server_default is not None or (default is not None and not default.is_scalar):
                return None
            row[column.key] = None if default is None else getattr(default, "arg", None)
        row.update(self._coerced(name, values))
        return row

    def _coerced(self, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as the database will hand them back (an int in a float column is a float)."""
        table = self.tables[name]
        out = dict(values)
        for key, value in values.items():
            kind = table.c[key].type
            if isinstance(kind, sa.Float) and type(value) is int:
                out[key] = float(value)
            elif isinstance(kind, sa.Boolean) and type(value) is int:
                out[key] = bool(value)
        return out

    def _upsert_now(self, name: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        conn = self.conn
        table = self.tables[name]
        where = [table.c[k] == v for k, v in key.items()]
        if values:
            if conn.execute(sa.update(table).where(*where).values(**values)).rowcount:
                return
        elif conn.execute(sa.select(sa.literal(1)).select_from(table).where(*where)).first():
            return
        conn.execute(sa.insert(table).values(**key, **values))


def _bulk_update(table: sa.Table, rows: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """One UPDATE … WHERE pk = :k_pk for many rows (bind names must not be column names)."""
    keys = table.primary_key.columns.keys()
    rest = [c.key for c in table.columns if c.key not in keys]
    statement = (
        sa.update(table)
        .where(*[table.c[k] == sa.bindparam(f"k_{k}") for k in keys])
        .values({c: sa.bindparam(f"v_{c}") for c in rest})
    )
    params = [
        {**{f"k_{k}": row[k] for k in keys}, **{f"v_{c}": row[c] for c in rest}} for row in rows
    ]
    return statement, params


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
