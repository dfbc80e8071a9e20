"""The event row: one column order for reading and writing, and row → record.

A planned row is a read row with its checksum and chain link appended, so a
row staged by the planner reads back through :func:`to_recorded` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labledger.store.base import RecordedEvent

Row = tuple[Any, ...]

READ_COLUMNS = (
    "position, stream, stream_version, event_id, type, schema_version, recorded_at, "
    "correlation_id, causation_id, run_id, actor, data, metadata"
)
ROW_COLUMNS = f"{READ_COLUMNS}, checksum, chain"
EVENT_ID, CHAIN = 3, 14


def to_recorded(row: Sequence[Any]) -> RecordedEvent:
    """A row in READ_COLUMNS (or ROW_COLUMNS) order as a RecordedEvent."""
    data, metadata = row[11], row[12]
    return RecordedEvent(
        position=row[0],
        stream=row[1],
        stream_version=row[2],
        id=row[3],
        type=row[4],
        schema_version=row[5],
        recorded_at_us=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        run_id=row[9],
        actor=row[10],
        data=data if type(data) is bytes else bytes(data),
        metadata=metadata if type(metadata) is bytes else bytes(metadata),
    )
