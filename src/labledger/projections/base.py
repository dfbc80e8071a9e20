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
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVarTuple, overload

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import TypedReturnsRows

from labledger.events import Event
from labledger.events.typed import Typed
from labledger.projections._shape import TableShape

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
        self._prepared: dict[str, Prepared] = {}

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

    def prepare(self, key: str, build: Callable[[TableSet], sa.Executable]) -> Prepared:
        """The statement ``build`` makes of these tables, built once (``key`` names it)."""
        found = self._prepared.get(key)
        if found is None:
            statement = build(self)
            found = self._prepared[key] = Prepared(statement, self.reads(statement))
        return found

    def reads(self, *clauses: object) -> frozenset[str]:
        """The tables of this set that ``clauses`` read; all of them if one is SQL text."""
        logical = {table.name: name for name, table in self.by_name.items()}
        reads = set()
        for clause in clauses:
            if not isinstance(clause, visitors.ExternallyTraversible):
                return frozenset(self.by_name)
            for element in visitors.iterate(clause):  # every clause, subqueries included
                if isinstance(element, sa.TextClause):
                    return frozenset(self.by_name)
                if isinstance(element, sa.Table) and element.name in logical:
                    reads.add(logical[element.name])
        return frozenset(reads)


class Prepared:
    """A statement a projection runs per event, built once per table set, and the
    tables it reads.

    SQLAlchemy takes tens of µs to build a SELECT, and :meth:`Tx.query` has to
    flush pending writes before running one. A prepared statement is built
    once (values go in as bound parameters), and a query with it flushes only
    the tables it reads, worked out once from the statement, instead of every
    table of the projection (issue #19). A lookup by equal columns needs none
    of this: :meth:`Tx.find` serves it, from memory during a rebuild.
    """

    __slots__ = ("reads", "statement")

    def __init__(self, statement: sa.Executable, reads: frozenset[str]) -> None:
        self.statement, self.reads = statement, reads


class RowView:
    """A row read through :class:`Tx`: attribute access like ``sa.Row``, and ``_mapping``.

    A snapshot: later writes in the batch do not change a view already handed out.
    The values are the instance's own ``__dict__``, so ``row.column`` is a plain
    attribute read (a ``__getattr__`` lookup costs an exception per access).
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__ = dict(values)

    @property
    def _mapping(self) -> dict[str, Any]:
        return self.__dict__

    def __getattr__(self, name: str) -> Any:  # only reached for a column the row lacks
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"RowView({self.__dict__!r})"


RowLike = RowView | sa.Row[Any]
"""What ``Tx.get`` returns: a cached row, or a database row for lookups off the key."""


class _Cached:
    """One row of the identity map: its values (None: known absent) and where it stands."""

    __slots__ = ("dirty", "stored", "values")

    def __init__(self, values: dict[str, Any] | None, *, stored: bool) -> None:
        self.values = values
        self.stored = stored  # a row with this key is in the database (as of the last flush)
        self.dirty = False


class _Open:
    """One table as a :class:`Tx` holds it: its shape, its mapped rows, and (fresh
    tables only) the hashes of every key written to it. One dict probe per call
    finds all three."""

    __slots__ = ("complete", "dirty", "finders", "indexes", "name", "rows", "shape", "written")

    def __init__(self, name: str, shape: TableShape, written: set[int] | None) -> None:
        self.name, self.shape = name, shape
        self.rows: dict[tuple[Any, ...], _Cached] = {}
        self.dirty: list[_Cached] = []  # rows written since the last flush, in order
        self.written = written
        # The map holds every row of the table: it was empty, and nothing was dropped since.
        self.complete = written is not None
        # Tx.find's in-memory indexes: columns -> their values -> the rows holding them.
        self.indexes: dict[tuple[str, ...], dict[tuple[Any, ...], list[_Cached]]] = {}
        self.finders: dict[tuple[str, ...], sa.Select[Any]] = {}  # Tx.find's SELECTs

    def build_index(self, columns: tuple[str, ...]) -> dict[tuple[Any, ...], list[_Cached]]:
        """A new index on ``columns`` over every mapped row (the map holds them all)."""
        index: dict[tuple[Any, ...], list[_Cached]] = {}
        for entry in self.rows.values():
            if (values := entry.values) is not None:
                index.setdefault(tuple([values[c] for c in columns]), []).append(entry)
        self.indexes[columns] = index
        return index

    def index(self, entry: _Cached) -> None:
        """Add a row that just came to exist to every index."""
        values = entry.values
        assert values is not None
        for columns, index in self.indexes.items():
            index.setdefault(tuple([values[c] for c in columns]), []).append(entry)

    def reindex(self, entry: _Cached, changes: Mapping[str, Any]) -> None:
        """Move a row whose indexed columns ``changes`` is about to set (call before setting)."""
        values = entry.values
        assert values is not None
        for columns, index in self.indexes.items():
            if changes.keys().isdisjoint(columns):
                continue
            index[tuple([values[c] for c in columns])].remove(entry)
            moved = tuple([changes.get(c, values[c]) for c in columns])
            index.setdefault(moved, []).append(entry)


MAX_CACHED_ROWS = 100_000
"""Past this many rows held, :meth:`Tx.carry` starts the next batch with an empty map."""

MAX_KNOWN_KEYS = 2_000_000
"""Past this many keys tracked in fresh tables, :meth:`Tx.carry` goes back to asking SQL."""


class Tx:
    """A projection's unit of work: an identity map, flushed in bulk once per batch.

    ``get``/``insert``/``upsert``/``update`` by primary key work on rows held in
    memory: a key is read from the database once, and what the batch wrote
    goes out at :meth:`flush` as multi-row statements, per table one for the new
    rows and one for the changed ones (see ``TableShape.write_many``), in the
    batch's transaction, before its checkpoint. A :class:`Prepared` query
    flushes only the tables it reads.
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

    The by-key calls are the per-event path of every rebuild (a few per
    event, hundreds of thousands per pass), so they are written flat: one dict
    probe for the table, one for the row, no helper calls on a hit.
    """

    def __init__(self, conn: Connection, tables: TableSet, *, fresh: bool = False) -> None:
        self._conn = conn
        self.tables = tables
        self._open: dict[str, _Open] = {}
        self._pending: list[_Open] = []  # tables with rows to flush, in order
        self._held = 0
        # fresh tables: table name -> hashes of every key ever written to it
        self._written: dict[str, set[int]] | None = None
        if fresh:
            self._written = {name: set() for name in tables.by_name if self._empty(name)}

    def _empty(self, name: str) -> bool:
        one_row = sa.select(sa.literal(1)).select_from(self.tables[name]).limit(1)
        return self._conn.execute(one_row).first() is None

    def _table(self, name: str) -> _Open:
        found = self._open.get(name)
        if found is None:
            written = None if self._written is None else self._written.get(name)
            found = self._open[name] = _Open(name, self.tables.shape(name), written)
        return found

    @property
    def conn(self) -> Connection:
        """The batch's connection, with every pending write flushed and the map dropped."""
        self.flush()
        self._forget()
        self._stop_fresh()  # a raw statement may insert rows the map never saw
        return self._conn

    def delete_where(self, name: str, *where: sa.ColumnElement[bool]) -> int:
        """DELETE the rows of ``name`` matching ``where``; how many there were.

        Flushes the tables the statement reads and drops only ``name``'s mapped rows:
        it changes no other table (projection tables have no triggers or cascades).
        """
        self.flush(self.tables.reads(*where) | {name})
        self._forget(name)
        return int(self._conn.execute(sa.delete(self.tables[name]).where(*where)).rowcount)

    def update_where(self, name: str, *where: sa.ColumnElement[bool], **values: Any) -> int:
        """UPDATE non-key ``values`` of the rows of ``name`` matching ``where``; how many."""
        shape = self._table(name).shape
        if not values.keys() <= shape.settable:
            raise ValueError(f"update_where sets non-key columns only: {name!r} {sorted(values)}")
        self.flush(self.tables.reads(*where) | {name})
        self._forget(name)  # as in delete_where
        statement = sa.update(shape.table).where(*where).values(**values)
        return int(self._conn.execute(statement).rowcount)

    @overload
    def query(self, statement: TypedReturnsRows[*_Ts]) -> sa.CursorResult[*_Ts]: ...

    @overload
    def query(
        self, statement: sa.Executable | Prepared, params: Mapping[str, Any] | None = None
    ) -> sa.CursorResult[*tuple[Any, ...]]: ...

    def query(
        self, statement: sa.Executable | Prepared, params: Mapping[str, Any] | None = None
    ) -> sa.CursorResult[*tuple[Any, ...]]:
        """Run a read-only statement (a SELECT) on the flushed tables; the map stays.

        A :class:`Prepared` statement flushes only the tables it reads.
        """
        if isinstance(statement, Prepared):
            self.flush(statement.reads)
            return self._conn.execute(statement.statement, params)
        self.flush()
        return self._conn.execute(statement, params)

    def carry(self, conn: Connection) -> Tx:
        """Go on in the next batch's transaction, keeping the flushed rows (up to a bound)."""
        if self._pending:
            raise RuntimeError("carry() before flush(): the batch's writes would be lost")
        self._conn = conn
        if self._held > MAX_CACHED_ROWS:
            self._forget()
        if self._written is not None and sum(map(len, self._written.values())) > MAX_KNOWN_KEYS:
            self._stop_fresh()
        return self

    def table(self, name: str) -> sa.Table:
        return self.tables[name]

    def find(self, name: str, **equal: Any) -> list[RowLike]:
        """The rows of ``name`` whose columns equal ``equal``, in no particular order.

        When the map holds the whole table (a fresh table, nothing dropped since),
        they come from an index on ``equal``'s columns, built on first use and kept
        by every write, so a rebuild asks SQL nothing; otherwise from one SELECT on
        the flushed table. Issue #19: a lookup off the key was a query per event.
        """
        table = self._open.get(name) or self._table(name)
        columns = tuple(sorted(equal))
        if table.complete:
            index = table.indexes.get(columns)
            if index is None:
                index = table.build_index(columns)
            found = index.get(tuple([equal[c] for c in columns]), ())
            return [RowView(entry.values) for entry in found if entry.values is not None]
        statement = table.finders.get(columns)
        if statement is None:
            sa_table = table.shape.table
            where = [sa_table.c[c] == sa.bindparam(f"f_{c}") for c in columns]
            statement = table.finders[columns] = sa.select(sa_table).where(*where)
        self.flush(frozenset((name,)))
        return list(self._conn.execute(statement, {f"f_{c}": v for c, v in equal.items()}))

    def get(self, name: str, **key: Any) -> RowLike | None:
        table = self._open.get(name) or self._table(name)
        pk = table.shape.key_of(key)
        if pk is None:
            sa_table = table.shape.table
            where = [sa_table.c[k] == v for k, v in key.items()]
            return self.query(sa.select(sa_table).where(*where)).first()
        values = (table.rows.get(pk) or self._load(table, pk)).values
        return None if values is None else RowView(values)

    def insert(self, name: str, **values: Any) -> None:
        table = self._open.get(name) or self._table(name)
        shape = table.shape
        pk = shape.key_of(values, partial=True)
        entry = None if pk is None else table.rows.get(pk)
        row = shape.full_row(values)
        if pk is None or row is None or (entry is not None and entry.values is not None):
            # Not mappable, or a duplicate key: let the database say what it thinks.
            self.conn.execute(sa.insert(shape.table).values(**values))
            return
        if entry is None:  # unknown: written as an insert; a stored duplicate fails at flush
            entry = self._remember(table, pk, _Cached(None, stored=False))
        entry.values = row
        if table.indexes:
            table.index(entry)
        if table.written is not None:
            table.written.add(hash(pk))
        if not entry.dirty:
            self._touch(table, entry)

    def upsert(self, name: str, key: Mapping[str, Any], **values: Any) -> None:
        """Update the row with ``key``, or insert it."""
        table = self._open.get(name) or self._table(name)
        shape = table.shape
        pk = shape.key_of(key)
        if pk is None or not values.keys() <= shape.settable:
            self._upsert_now(name, key, values)
            return
        entry = table.rows.get(pk) or self._load(table, pk)
        current = entry.values
        if current is None:
            row = shape.full_row({**key, **values})
            if row is None:
                self._upsert_now(name, key, values)
                return
            entry.values = row
            if table.indexes:
                table.index(entry)
            if table.written is not None:
                table.written.add(hash(pk))
        else:
            if shape.coerce:
                values = shape.coerce_owned(values)
            if table.indexes:
                table.reindex(entry, values)
            current.update(values)
        if not entry.dirty:
            self._touch(table, entry)

    def update(self, name: str, key: Mapping[str, Any], **values: Any) -> int:
        """Update the row(s) with ``key``; how many there were."""
        table = self._open.get(name) or self._table(name)
        shape = table.shape
        pk = shape.key_of(key)
        if pk is None or not values.keys() <= shape.settable:
            sa_table = shape.table
            where = [sa_table.c[k] == v for k, v in key.items()]
            statement = sa.update(sa_table).where(*where).values(**values)
            return int(self.conn.execute(statement).rowcount)
        entry = table.rows.get(pk) or self._load(table, pk)
        current = entry.values
        if current is None:
            return 0
        if shape.coerce:
            values = shape.coerce_owned(values)
        if table.indexes:
            table.reindex(entry, values)
        current.update(values)
        if not entry.dirty:
            self._touch(table, entry)
        return 1

    def flush(self, only: frozenset[str] | None = None) -> None:
        """Write every changed row (of the tables in ``only``): per table its new rows,
        then its changed ones, each in bulk."""
        pending = self._pending
        if not pending:
            return
        if only is None:
            self._pending = []
        else:
            self._pending = [t for t in pending if t.name not in only]
            pending = [t for t in pending if t.name in only]
        for table in pending:
            new: list[dict[str, Any]] = []
            changed: list[dict[str, Any]] = []
            for entry in table.dirty:
                entry.dirty = False
                if entry.values is not None:
                    (changed if entry.stored else new).append(entry.values)
                    entry.stored = True
            table.dirty = []
            if new:
                table.shape.write_many(self._conn, "insert", new)
            if changed:
                table.shape.write_many(self._conn, "update", changed)

    # -- the identity map ------------------------------------------------------

    def _touch(self, table: _Open, entry: _Cached) -> None:
        entry.dirty = True
        if not table.dirty:
            self._pending.append(table)
        table.dirty.append(entry)

    def _remember(self, table: _Open, pk: tuple[Any, ...], entry: _Cached) -> _Cached:
        table.rows[pk] = entry
        self._held += 1
        return entry

    def _forget(self, name: str | None = None) -> None:
        """Drop the mapped rows (of table ``name`` only)."""
        for table in self._open.values():
            if name is None or table.name == name:
                self._held -= len(table.rows)
                table.rows = {}
                table.complete, table.indexes = False, {}

    def _stop_fresh(self) -> None:
        self._written = None
        for table in self._open.values():
            table.written = None
            table.complete, table.indexes = False, {}

    def _load(self, table: _Open, pk: tuple[Any, ...]) -> _Cached:
        """A key the map does not hold: absent without asking (fresh), else read once."""
        written = table.written
        if written is not None and hash(pk) not in written:
            return self._remember(table, pk, _Cached(None, stored=False))
        shape = table.shape
        found = self._conn.execute(shape.by_key, shape.key_params(pk)).first()
        values = None if found is None else dict(found._mapping)
        return self._remember(table, pk, _Cached(values, stored=found is not None))

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
        """Fold one event (of a handled type) into the tables.

        The event may be a read twin of its class (``events.decode``): dispatch
        with ``match`` or ``isinstance``, not on ``type(event)``.
        """
