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
from typing import Any, ClassVar, TypeVarTuple, overload

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.sql.selectable import TypedReturnsRows

from labledger.events import Event
from labledger.events.typed import Typed

_Ts = TypeVarTuple("_Ts")


def physical_name(projection: str, table: str, version: int, generation: int) -> str:
    return f"p_{projection}_{table}_v{version}g{generation}"


class TableSet:
    """The tables of one projection generation, by logical name."""

    def __init__(self, projection: str, version: int, generation: int) -> None:
        self.projection, self.version, self.generation = projection, version, generation
        self.metadata = sa.MetaData()
        self.by_name: dict[str, sa.Table] = {}
        self._shapes: dict[str, TableShape] = {}

    def add(self, name: str, *columns: sa.Column[Any] | sa.Constraint) -> sa.Table:
        physical = physical_name(self.projection, name, self.version, self.generation)
        table = sa.Table(physical, self.metadata, *columns)
        if not table.primary_key.columns:
            raise TypeError(f"projection table {name!r} needs a primary key (for the state hash)")
        self.by_name[name] = table
        return table

    def __getitem__(self, name: str) -> sa.Table:
        return self.by_name[name]

    def shape(self, name: str) -> TableShape:
        """What :class:`Tx` needs to know of a table, worked out once (SQLAlchemy's
        column collections are slow to ask per event)."""
        found = self._shapes.get(name)
        if found is None:
            found = self._shapes[name] = TableShape(self.by_name[name])
        return found


_PLAIN_TYPES = (sa.String, sa.Integer, sa.Float, sa.Boolean, sa.LargeBinary)


class TableShape:
    """A table's key, its columns and the values that need coercing, as plain sets."""

    __slots__ = (
        "_driver_sql",
        "by_key",
        "coerce",
        "columns",
        "defaults",
        "insert",
        "key",
        "key_set",
        "plain",
        "settable",
        "sql_only",
        "table",
        "update",
    )

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self.key: tuple[str, ...] = tuple(table.primary_key.columns.keys())
        self.key_set = frozenset(self.key)
        self.columns = frozenset(table.c.keys())
        self.settable = self.columns - self.key_set
        self.coerce: dict[str, type] = {}
        for column in table.columns:
            if isinstance(column.type, sa.Float):
                self.coerce[column.key] = float
            elif isinstance(column.type, sa.Boolean):
                self.coerce[column.key] = bool
        # A new row's defaults, and the columns only SQL can fill (server or callable default).
        self.defaults: dict[str, Any] = {}
        sql_only: set[str] = set()
        for column in table.columns:
            default = column.default
            if column.server_default is not None or (default is not None and not default.is_scalar):
                sql_only.add(column.key)
            else:
                arg = None if default is None else getattr(default, "arg", None)
                self.defaults[column.key] = arg
        self.sql_only = frozenset(sql_only)
        # Statements built once; SQLAlchemy caches their compiled form.
        key_columns = list(table.primary_key.columns)
        self.by_key = sa.select(table).where(
            *[c == sa.bindparam(f"k_{c.key}") for c in key_columns]
        )
        self.insert = sa.insert(table)
        self.update = (
            sa.update(table)
            .where(*[c == sa.bindparam(f"k_{c.key}") for c in key_columns])
            .values({c.key: sa.bindparam(f"v_{c.key}") for c in table.columns if not c.primary_key})
        )

        # Columns whose values go to the driver as they are (no bind processing):
        # their bulk writes can skip SQLAlchemy's per-row parameter handling.
        self.plain = all(isinstance(c.type, _PLAIN_TYPES) for c in table.columns)
        self._driver_sql: dict[tuple[str, str], tuple[str, list[str] | None]] = {}

    def write_many(self, conn: Connection, kind: str, params: list[dict[str, Any]]) -> None:
        """One executemany of :attr:`insert` or :attr:`update` (``kind``) for ``params``."""
        statement = self.insert if kind == "insert" else self.update
        if not self.plain:
            conn.execute(statement, params)
            return
        sql, order = self._compiled(conn, kind, statement)
        if order is None:  # a named paramstyle (psycopg): the dicts as they are
            conn.exec_driver_sql(sql, params)
        else:
            conn.exec_driver_sql(sql, [tuple([p[n] for n in order]) for p in params])

    def _compiled(
        self, conn: Connection, kind: str, statement: sa.Executable
    ) -> tuple[str, list[str] | None]:
        key = (conn.dialect.name, kind)
        found = self._driver_sql.get(key)
        if found is None:
            compiled = statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            order = None if compiled.positiontup is None else list(compiled.positiontup)
            found = self._driver_sql[key] = (compiled.string, order)
        return found

    def key_params(self, pk: tuple[Any, ...]) -> dict[str, Any]:
        return {f"k_{name}": value for name, value in zip(self.key, pk, strict=True)}

    def update_params(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Bind values of :attr:`update` (bind names must not be column names)."""
        return {(f"k_{k}" if k in self.key_set else f"v_{k}"): v for k, v in row.items()}

    def key_of(self, key: Mapping[str, Any], *, partial: bool = False) -> tuple[Any, ...] | None:
        """The primary-key tuple when ``key`` names exactly (or, partial: at least) the key."""
        names = key.keys()
        if partial:
            if not names >= self.key_set:
                return None
        elif len(key) != len(self.key) or not names >= self.key_set:
            return None
        return tuple(map(key.__getitem__, self.key))

    def coerced(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as the database will hand them back (an int in a float column is a float)."""
        return self.coerce_owned(dict(values))

    def coerce_owned(self, values: dict[str, Any]) -> dict[str, Any]:
        """:meth:`coerced` in place, for a dict the caller owns (e.g. its ``**values``)."""
        coerce = self.coerce
        if coerce:
            for name, value in values.items():
                if type(value) is int and name in coerce:
                    values[name] = coerce[name](value)
        return values

    def full_row(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """Every column of a new row, defaults filled in; None where only SQL can say."""
        names = values.keys()
        if not names <= self.columns or not self.sql_only <= names:
            return None
        row = {k: v for k, v in self.defaults.items() if k not in names}
        row.update(values)
        return self.coerce_owned(row)


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


MAX_CACHED_ROWS = 100_000
"""Past this many rows held, :meth:`Tx.carry` starts the next batch with an empty map."""

MAX_KNOWN_KEYS = 2_000_000
"""Past this many keys tracked in fresh tables, :meth:`Tx.carry` goes back to asking SQL."""


class Tx:
    """A projection's unit of work: an identity map, flushed in bulk once per batch.

    ``get``/``insert``/``upsert``/``update`` by primary key work on rows held in
    memory: a key is read from the database once, and what the batch wrote
    goes out at :meth:`flush` as one ``INSERT`` and one ``UPDATE``
    (executemany) per table, in the batch's transaction, before its checkpoint.
    :meth:`query` runs a read-only statement after flushing and keeps the map.
    Anything else (a delete, a statement that writes) goes through
    :attr:`conn`, which flushes first and forgets the cached rows, since such
    a statement may change them behind the map's back.

    The engine carries one Tx from batch to batch of a pass (:meth:`carry`):
    only it writes these tables while it holds the checkpoint, so rows it
    flushed and committed are still what the database holds.

    ``fresh``: the caller expects the tables empty (a shadow generation, or a
    first build at position 0). Each is asked once (``SELECT 1 … LIMIT 1``:
    the expectation is checked, not trusted — a runner that broke the
    rows-with-checkpoint rule, or one that committed meanwhile, left rows).
    In a table found empty, a key the map does not hold needs no SELECT
    when no row with it was ever written: each such table keeps
    the hashes of the keys written to it (a key whose hash is there but whose
    row is not mapped is read; a collision only costs that read). A DELETE or
    an UPDATE of non-key columns (:meth:`delete_where`, :meth:`update_where`)
    only removes or changes rows, so the hashes stay a superset and the
    answer stays right; a raw statement through :attr:`conn` could insert,
    so it ends this for every table. Issue #19: on an empty shadow, the first
    read of every new key was one query, a round trip on PostgreSQL.
    """

    def __init__(self, conn: Connection, tables: TableSet, *, fresh: bool = False) -> None:
        self._conn = conn
        self.tables = tables
        self._rows: dict[str, dict[tuple[Any, ...], _Cached]] = {}
        self._dirty: list[tuple[str, _Cached]] = []
        self._held = 0
        # fresh tables: table name -> hashes of every key ever written to it
        self._written: dict[str, set[int]] | None = None
        self._shape = tables.shape
        if fresh:
            self._written = {name: set() for name in tables.by_name if self._empty(name)}

    def _empty(self, name: str) -> bool:
        one_row = sa.select(sa.literal(1)).select_from(self.tables[name]).limit(1)
        return self._conn.execute(one_row).first() is None

    @property
    def conn(self) -> Connection:
        """The batch's connection, with every pending write flushed and the map dropped."""
        self.flush()
        self._forget()
        self._written = None  # a raw statement may insert rows the map never saw
        return self._conn

    def delete_where(self, name: str, *where: sa.ColumnElement[bool]) -> int:
        """DELETE the rows of ``name`` matching ``where``; how many there were."""
        self.flush()
        self._forget()
        return int(self._conn.execute(sa.delete(self.tables[name]).where(*where)).rowcount)

    def update_where(self, name: str, *where: sa.ColumnElement[bool], **values: Any) -> int:
        """UPDATE non-key ``values`` of the rows of ``name`` matching ``where``; how many."""
        shape = self._shape(name)
        if not values.keys() <= shape.settable:
            raise ValueError(f"update_where sets non-key columns only: {name!r} {sorted(values)}")
        self.flush()
        self._forget()
        statement = sa.update(shape.table).where(*where).values(**values)
        return int(self._conn.execute(statement).rowcount)

    @overload
    def query(self, statement: TypedReturnsRows[*_Ts]) -> sa.CursorResult[*_Ts]: ...

    @overload
    def query(self, statement: sa.Executable) -> sa.CursorResult[*tuple[Any, ...]]: ...

    def query(self, statement: sa.Executable) -> sa.CursorResult[*tuple[Any, ...]]:
        """Run a read-only statement (a SELECT) on the flushed tables; the map stays."""
        self.flush()
        return self._conn.execute(statement)

    def carry(self, conn: Connection) -> Tx:
        """Go on in the next batch's transaction, keeping the flushed rows (up to a bound)."""
        if self._dirty:
            raise RuntimeError("carry() before flush(): the batch's writes would be lost")
        self._conn = conn
        if self._held > MAX_CACHED_ROWS:
            self._forget()
        if self._written is not None and sum(map(len, self._written.values())) > MAX_KNOWN_KEYS:
            self._written = None
        return self

    def table(self, name: str) -> sa.Table:
        return self.tables[name]

    def get(self, name: str, **key: Any) -> RowLike | None:
        shape = self._shape(name)
        pk = shape.key_of(key)
        if pk is None:
            table = shape.table
            where = [table.c[k] == v for k, v in key.items()]
            return self.query(sa.select(table).where(*where)).first()
        values = self._load(shape, name, pk).values
        return None if values is None else RowView(values)

    def insert(self, name: str, **values: Any) -> None:
        shape = self._shape(name)
        pk = shape.key_of(values, partial=True)
        entry = None if pk is None else self._rows.get(name, {}).get(pk)
        row = shape.full_row(values)
        if pk is None or row is None or (entry is not None and entry.values is not None):
            # Not mappable, or a duplicate key: let the database say what it thinks.
            self.conn.execute(sa.insert(shape.table).values(**values))
            return
        if entry is None:  # unknown: written as an insert; a stored duplicate fails at flush
            entry = self._remember(name, pk, _Cached(None, stored=False))
        entry.values = row
        self._new_key(name, pk)
        self._touch(name, entry)

    def upsert(self, name: str, key: Mapping[str, Any], **values: Any) -> None:
        """Update the row with ``key``, or insert it."""
        shape = self._shape(name)
        pk = shape.key_of(key)
        if pk is None or not values.keys() <= shape.settable:
            self._upsert_now(name, key, values)
            return
        entry = self._load(shape, name, pk)
        if entry.values is None:
            row = shape.full_row({**key, **values})
            if row is None:
                self._upsert_now(name, key, values)
                return
            entry.values = row
            self._new_key(name, pk)
        else:
            entry.values.update(shape.coerce_owned(values))
        self._touch(name, entry)

    def update(self, name: str, key: Mapping[str, Any], **values: Any) -> int:
        """Update the row(s) with ``key``; how many there were."""
        shape = self._shape(name)
        pk = shape.key_of(key)
        if pk is None or not values.keys() <= shape.settable:
            table = shape.table
            where = [table.c[k] == v for k, v in key.items()]
            return int(self.conn.execute(sa.update(table).where(*where).values(**values)).rowcount)
        entry = self._load(shape, name, pk)
        if entry.values is None:
            return 0
        entry.values.update(shape.coerce_owned(values))
        self._touch(name, entry)
        return 1

    def flush(self) -> None:
        """Write every changed row: per table one bulk INSERT and one bulk UPDATE."""
        if not self._dirty:
            return
        by_table: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for name, entry in self._dirty:
            if entry.values is None:
                continue
            new, changed = by_table.setdefault(name, ([], []))
            (changed if entry.stored else new).append(entry.values)
            entry.stored, entry.dirty = True, False
        self._dirty = []
        for name, (new, changed) in by_table.items():
            shape = self._shape(name)
            if new:
                shape.write_many(self._conn, "insert", new)
            if changed:
                shape.write_many(self._conn, "update", [shape.update_params(r) for r in changed])

    # -- the identity map ------------------------------------------------------

    def _touch(self, name: str, entry: _Cached) -> None:
        if not entry.dirty:
            entry.dirty = True
            self._dirty.append((name, entry))

    def _new_key(self, name: str, pk: tuple[Any, ...]) -> None:
        written = None if self._written is None else self._written.get(name)
        if written is not None:
            written.add(hash(pk))

    def _remember(self, name: str, pk: tuple[Any, ...], entry: _Cached) -> _Cached:
        rows = self._rows.get(name)
        if rows is None:
            rows = self._rows[name] = {}
        rows[pk] = entry
        self._held += 1
        return entry

    def _forget(self) -> None:
        self._rows.clear()
        self._held = 0

    def _load(self, shape: TableShape, name: str, pk: tuple[Any, ...]) -> _Cached:
        rows = self._rows.get(name)
        entry = None if rows is None else rows.get(pk)
        if entry is None:
            written = None if self._written is None else self._written.get(name)
            if written is not None and hash(pk) not in written:
                return self._remember(name, pk, _Cached(None, stored=False))
            found = self._conn.execute(shape.by_key, shape.key_params(pk)).first()
            values = None if found is None else dict(found._mapping)
            entry = self._remember(name, pk, _Cached(values, stored=found is not None))
        return entry

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
