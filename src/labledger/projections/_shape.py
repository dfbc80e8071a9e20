"""What :class:`~labledger.projections.base.Tx` knows of a table, worked out once.

SQLAlchemy's column collections are slow to ask per event, and a bulk write
through SQLAlchemy's parameter handling costs more than the driver's own
executemany: a table's key, columns, defaults, coercions and compiled
statements are taken apart here once per table and kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

_PLAIN_TYPES = (sa.String, sa.Integer, sa.Float, sa.Boolean, sa.LargeBinary)


class TableShape:
    """A table's key, its columns and the values that need coercing, as plain sets."""

    __slots__ = (
        "_driver_sql",
        "_key_binds",
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
        self._driver_sql: dict[tuple[str, str], tuple[str, list[str] | None]] = {}
        self._key_binds = tuple(f"k_{k}" for k in self.key)
        self._update_binds = {
            c: (f"k_{c}" if c in self.key_set else f"v_{c}") for c in self.columns
        }

    def write_many(self, conn: Connection, kind: str, rows: list[dict[str, Any]]) -> None:
        """One executemany of :attr:`insert` or :attr:`update` (``kind``) for ``rows``
        (whole rows, by column name)."""
        statement = self.insert if kind == "insert" else self.update
        if not self.plain:
            conn.execute(statement, self._named(kind, rows))
            return
        sql, columns = self._compiled(conn, kind, statement)
        if columns is None:  # a named paramstyle (psycopg): dicts by bind name
            conn.exec_driver_sql(sql, self._named(kind, rows))
        else:  # a positional one (sqlite3): tuples straight from the rows
            conn.exec_driver_sql(sql, [tuple([r[c] for c in columns]) for r in rows])

    def _named(self, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows if kind == "insert" else [self.update_params(r) for r in rows]

    def _compiled(
        self, conn: Connection, kind: str, statement: sa.Executable
    ) -> tuple[str, list[str] | None]:
        """The driver's SQL of ``statement`` and, for a positional paramstyle, the column
        each placeholder takes (an UPDATE's binds are ``k_``/``v_`` + the column)."""
        key = (conn.dialect.name, kind)
        found = self._driver_sql.get(key)
        if found is None:
            compiled = statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            columns = None
            if compiled.positiontup is not None:
                binds = list(compiled.positiontup)
                columns = binds if kind == "insert" else [b[2:] for b in binds]
            found = self._driver_sql[key] = (compiled.string, columns)
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
