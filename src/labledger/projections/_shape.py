"""What :class:`~labledger.projections.base.Tx` knows of a table, worked out once.

SQLAlchemy's column collections are slow to ask per event, and a bulk write
through SQLAlchemy's parameter handling costs more than handing the driver
one multi-row statement: a table's key, columns, defaults, coercions and the
SQL of its bulk writes are worked out here once per table and kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

_PLAIN_TYPES = (sa.String, sa.Integer, sa.Float, sa.Boolean, sa.LargeBinary)


ROWS_PER_STATEMENT = 500
PARAMS_PER_STATEMENT = 30_000
"""Below SQLite's 32,766 bound parameters per statement (PostgreSQL's limit is 65,535)."""


class TableShape:
    """A table's key, its columns and the values that need coercing, as plain sets."""

    __slots__ = (
        "_key_binds",
        "_multi",
        "_order",
        "_per_statement",
        "_update_binds",
        "by_key",
        "coerce",
        "columns",
        "defaults",
        "insert",
        "key",
        "key_set",
        "plain",
        "settable",
        "single",
        "sql_only",
        "table",
        "update",
    )

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self.key: tuple[str, ...] = tuple(table.primary_key.columns.keys())
        self.key_set = frozenset(self.key)
        # The key column of a one-column key (most tables): its tuple is built directly.
        self.single: str | None = self.key[0] if len(self.key) == 1 else None
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
        self.coerce_owned(self.defaults)
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
        self._multi: dict[tuple[str, str], tuple[str, str, str] | None] = {}
        self._order: tuple[str, ...] = tuple(table.c.keys())
        self._per_statement = max(
            1, min(ROWS_PER_STATEMENT, PARAMS_PER_STATEMENT // len(self._order))
        )
        self._key_binds = tuple(f"k_{k}" for k in self.key)
        self._update_binds = {
            c: (f"k_{c}" if c in self.key_set else f"v_{c}") for c in self.columns
        }

    def write_many(self, conn: Connection, kind: str, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` (whole rows, by column name): new ones (``kind`` "insert") or
        changed ones ("update"), many rows per statement.

        A changed row goes out as an ``INSERT … ON CONFLICT (key) DO UPDATE`` of
        every column: the row is in the table (the map read it or flushed it), so
        that is its UPDATE, and many rows fit one statement. One multi-row
        statement costs both drivers less than an executemany of one row at a
        time (psycopg's sends a statement per row). Issue #19.
        """
        bulk = self._bulk(conn, kind) if self.plain else None
        if bulk is None:  # values that need SQLAlchemy's bind processing
            statement = self.insert if kind == "insert" else self.update
            conn.execute(
                statement, rows if kind == "insert" else list(map(self.update_params, rows))
            )
            return
        head, one, tail = bulk
        columns = self._order
        if not one:  # one array per column (see _bulk)
            conn.exec_driver_sql(head + tail, tuple([[r[c] for r in rows] for c in columns]))
            return
        per = self._per_statement
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            sql = head + ", ".join([one] * len(chunk)) + tail
            conn.exec_driver_sql(sql, tuple([row[c] for row in chunk for c in columns]))

    def _bulk(self, conn: Connection, kind: str) -> tuple[str, str, str] | None:
        """The SQL of a multi-row write as (head, one row's placeholders, tail), worked
        out once per driver; None where the placeholders are not plain positional ones.

        With a ``pyformat`` driver (psycopg) the rows go as one array per column
        through ``unnest`` (``one`` is empty): psycopg parses the placeholders of
        every statement with more than 50 parameters again (it caches only
        smaller ones), and that parse cost more than the executemany it
        replaces; with arrays the statement has one parameter per column.
        """
        dialect = conn.dialect
        key = (dialect.name, kind)
        if key in self._multi:
            return self._multi[key]
        quote = dialect.identifier_preparer.quote
        columns = [self.table.c[c] for c in self._order]
        names = [quote(c.name) for c in columns]
        table = quote(self.table.name)
        tail = ""
        if kind == "update":
            keys = ", ".join(quote(self.table.c[c].name) for c in self.key)
            sets = ", ".join(
                f"{n} = excluded.{n}"
                for c, n in zip(self._order, names, strict=True)
                if c in self.settable
            )
            tail = f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
        head = f"INSERT INTO {table} ({', '.join(names)}) "
        found: tuple[str, str, str] | None = None
        if dialect.paramstyle == "qmark":
            found = (head + "VALUES ", "(" + ", ".join(["?"] * len(names)) + ")", tail)
        elif dialect.paramstyle == "pyformat" and "%" not in head + tail:
            arrays = ", ".join(f"%b::{c.type.compile(dialect=dialect)}[]" for c in columns)
            found = (f"{head}SELECT * FROM unnest({arrays})", "", tail)
        self._multi[key] = found
        return found

    def key_params(self, pk: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self._key_binds, pk, strict=True))

    def update_params(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Bind values of :attr:`update` (bind names must not be column names)."""
        binds = self._update_binds
        return {binds[k]: v for k, v in row.items()}

    def key_of(self, key: Mapping[str, Any], *, partial: bool = False) -> tuple[Any, ...] | None:
        """The primary-key tuple when ``key`` names exactly (or, partial: at least) the key."""
        if partial:
            if not key.keys() >= self.key_set:
                return None
        elif len(key) != len(self.key):
            return None
        try:
            if self.single is not None:
                return (key[self.single],)
            return tuple([key[name] for name in self.key])
        except KeyError:
            return None

    def coerced(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values as the database will hand them back (an int in a float column is a float)."""
        return self.coerce_owned(dict(values))

    def coerce_owned(self, values: dict[str, Any]) -> dict[str, Any]:
        """:meth:`coerced` in place, for a dict the caller owns (e.g. its ``**values``)."""
        coerce = self.coerce
        if len(values) > len(coerce):  # a wide row: look at the few columns that coerce
            for name, kind in coerce.items():
                if type(values.get(name)) is int:
                    values[name] = kind(values[name])
        else:
            for name, value in values.items():
                if type(value) is int and name in coerce:
                    values[name] = coerce[name](value)
        return values

    def full_row(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """Every column of a new row, defaults filled in; None where only SQL can say.

        ``values`` is the caller's own dict: it is coerced in place.
        """
        names = values.keys()
        if not names <= self.columns or not self.sql_only <= names:
            return None
        row = self.defaults.copy()  # coerced once, at set-up
        row.update(self.coerce_owned(values))
        return row
