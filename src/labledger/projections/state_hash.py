"""A deterministic digest of a projection's tables.

Tables in logical-name order, rows in primary-key order, each row encoded
canonically with its column names; the generation and version in physical
table names do not enter the digest, so a rebuild and live catch-up that
reach the same state give the same hash.
"""

from __future__ import annotations

import hashlib
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


def state_hash(conn: Connection, tables: TableSet) -> str:
    digest = hashlib.sha256()
    for name in sorted(tables.by_name):
        table = tables.by_name[name]
        columns = [str(c.name) for c in table.columns]
        digest.update(_encode({"table": name, "columns": columns}))
        order = list(table.primary_key.columns)
        for row in conn.execute(sa.select(table).order_by(*order)):
            digest.update(_encode([_value(v) for v in row]))
    return digest.hexdigest()
