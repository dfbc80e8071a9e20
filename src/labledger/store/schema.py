"""The event row in one column order: row ↔ record, the SQL on it, its JSON line.

A planned row is a read row with its checksum and chain link appended, so a
row staged by the planner reads back through :func:`to_recorded` unchanged,
and the integrity scan reads the same order. The tables themselves are
Alembic's (``migrations/``); ``HEAD_REVISION`` is the revision this code
reads and writes, checked when a store opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

from labledger.errors import CorruptionDetected
from labledger.store.base import RecordedEvent

Row = tuple[Any, ...]

READ_COLUMNS = (
    "position, stream, stream_version, event_id, type, schema_version, recorded_at, "
    "correlation_id, causation_id, run_id, actor, data, metadata"
)
ROW_COLUMNS = f"{READ_COLUMNS}, checksum, chain"
POSITION, EVENT_ID, DATA, METADATA, CHECKSUM, CHAIN = 0, 3, 11, 12, 13, 14

# The append and read paths' SQL, with ``?`` placeholders (see dialects.base.RawTxn).
HEAD = "SELECT position, chain FROM ll_events ORDER BY position DESC LIMIT 1"
INSERT = f"INSERT INTO ll_events ({ROW_COLUMNS}) VALUES ({', '.join('?' * 15)})"
UPSERT_STREAM = (
    "INSERT INTO ll_streams (stream, version, last_position) VALUES (?, ?, ?) "
    "ON CONFLICT (stream) DO UPDATE SET version = excluded.version, "
    "last_position = excluded.last_position"
)
STREAM_VERSION = "SELECT version FROM ll_streams WHERE stream = ?"
READ_ALL = f"SELECT {READ_COLUMNS} FROM ll_events WHERE position >= ? ORDER BY position LIMIT ?"
READ_STREAM = (
    f"SELECT {READ_COLUMNS} FROM ll_events WHERE stream = ? AND stream_version >= ? "
    "ORDER BY stream_version LIMIT ?"
)
SCAN = f"SELECT {ROW_COLUMNS} FROM ll_events ORDER BY position"

HEAD_REVISION = "0003"
VERSION_TABLE = "labledger_alembic_version"


MAX_RECORDED_US = 253_402_300_799_999_999
"""9999-12-31T23:59:59.999999Z: the last instant a ``datetime`` can show."""


def to_recorded(row: Sequence[Any]) -> RecordedEvent:
    """A row in READ_COLUMNS (or ROW_COLUMNS) order as a RecordedEvent.

    Raises:
        CorruptionDetected: a column holds what no append writes (SQLite keeps
            any type in any column, so a flipped byte can turn an integer into
            a blob, or a time into year 105619); names the row's position.
    """
    position, stream, version, event_id, kind, schema_version, recorded = row[:7]
    correlation, causation, run_id, actor, data, metadata = row[7:13]
    # One cheap check per column, on the hot path (``type() is``, not isinstance: half
    # the cost): a damaged row must fail here, with its position, not later in a
    # datetime or a bytes() far from the store.
    if not (
        type(position) is int
        and type(stream) is str
        and type(version) is int
        and type(event_id) is str
        and type(kind) is str
        and type(schema_version) is int
        and type(recorded) is int
        and 0 <= recorded <= MAX_RECORDED_US
        and (correlation is None or type(correlation) is str)
        and (causation is None or type(causation) is str)
        and (run_id is None or type(run_id) is str)
        and (actor is None or type(actor) is str)
    ):
        raise undecodable(row)
    if type(data) is not bytes:
        data = _binary(data, row)
    if type(metadata) is not bytes:
        metadata = _binary(metadata, row)
    return RecordedEvent(
        position=position,
        stream=stream,
        stream_version=version,
        id=event_id,
        type=kind,
        schema_version=schema_version,
        recorded_at_us=recorded,
        correlation_id=correlation,
        causation_id=causation,
        run_id=run_id,
        actor=actor,
        data=data,
        metadata=metadata,
    )


def _binary(value: Any, row: Sequence[Any]) -> bytes:
    """A payload column as bytes (drivers may give a memoryview); anything else is damage."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    raise undecodable(row)


def undecodable(row: Sequence[Any]) -> CorruptionDetected:
    """The error for a row that cannot be a record: which columns are wrong, and where."""
    names = [c.strip() for c in READ_COLUMNS.split(",")]
    kinds = [type(v).__name__ for v in row[: len(names)]]
    position = row[0] if type(row[0]) is int else None
    where = f"the record at position {position}" if position is not None else "a record"
    return CorruptionDetected(
        f"{where} cannot be decoded (column types {dict(zip(names, kinds, strict=True))}, "
        f"recorded_at {row[6]!r:.40}): the store is damaged. Run `labledger verify` to "
        "find the first bad record, and restore from a backup.",
        position,
    )


def json_object(e: RecordedEvent) -> dict[str, Any]:
    """A record as the CLI's JSON lines and the HTTP API show it (payloads as raw JSON)."""
    return {
        "position": e.position,
        "stream": e.stream,
        "version": e.stream_version,
        "type": e.type,
        "schema_version": e.schema_version,
        "id": e.id,
        "recorded_at": e.recorded_at.isoformat().replace("+00:00", "Z"),
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "run_id": e.run_id,
        "actor": e.actor,
        "data": msgspec.Raw(e.data),
        "metadata": msgspec.Raw(e.metadata),
    }


_encode = msgspec.json.Encoder().encode


def json_line(e: RecordedEvent) -> bytes:
    """:func:`json_object` as one line of JSON, newline included."""
    return _encode(json_object(e)) + b"\n"


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the database, or None when there is none."""
    try:
        with conn.begin_nested() if conn.in_transaction() else conn.begin():
            row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    except (sa_exc.OperationalError, sa_exc.ProgrammingError):
        return None
    return None if row is None else str(row[0])
