"""A deterministic digest of a projection's tables.

Tables in logical-name order, rows in primary-key order, each row encoded
canonically with its column names; the generation and version in physical
table names do not enter the digest, so a rebuild and live catch-up that
reach the same state give the same hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import Connection

from labledger.projections.base import TableSet

_encode = msgspec.json.Encoder(order="sorted").encode


def _value(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def _rows_hash(
    conn: Connection, tables: TableSet, value: Callable[[Any], Any], run_id: str | None
) -> str:
    digest = hashlib.sha256()
    for name in sorted(tables.by_name):
        table = tables.by_name[name]
        columns = [str(c.name) for c in table.columns]
        digest.update(_encode({"table": name, "columns": columns}))
        query = sa.select(table).order_by(*table.primary_key.columns)
        if run_id is not None and "run_id" in table.c:
            query = query.where(table.c.run_id == run_id)
        for row in conn.execute(query):
            digest.update(_encode([value(v) for v in row]))
    return digest.hexdigest()


def state_hash(conn: Connection, tables: TableSet) -> str:
    return _rows_hash(conn, tables, _value, None)


def _run_value(value: Any) -> Any:
    return {"hex": bytes(value).hex()} if isinstance(value, bytes | memoryview) else value


def run_hash(conn: Connection, tables: TableSet, run_id: str) -> str:
    """The digest of one run's rows: every row whose ``run_id`` column is ``run_id``.

    Tables without that column count whole. ``labledger replay`` compares it
    between the live read model and one rebuilt from the log. A float NaN is
    hashed as msgspec encodes it (``null``) rather than as ``"NaN"``: that is
    the digest ``replay`` has always printed, and printed hashes must not move.
    """
    return _rows_hash(conn, tables, _run_value, run_id)
