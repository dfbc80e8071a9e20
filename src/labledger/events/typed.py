"""Reading the log as typed events: each record decoded (and upcast) with its envelope."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

import msgspec

from labledger.errors import EventDecodeError
from labledger.events._base import Event, decode
from labledger.store.base import RecordedEvent

E = TypeVar("E", bound=Event)


class Typed(msgspec.Struct, Generic[E], frozen=True):
    """A typed event and the record it came from (position, stream, ids, times)."""

    event: E
    record: RecordedEvent

    @property
    def position(self) -> int:
        return self.record.position


def decode_record(record: RecordedEvent) -> Typed[Event]:
    """Decode one stored record into its current class.

    Raises:
        UnknownEventType / EventDecodeError: with the record's stream and position.
    """
    return _decode(record, twins=False)


def decode_for_fold(record: RecordedEvent) -> Typed[Event]:
    """:func:`decode_record` for the projection engine: the event may be a read twin
    (``events._base.decode``), which a projection's ``match`` and ``isinstance`` see as
    its class. Issue #19: about half the decode of a telemetry packet."""
    return _decode(record, twins=True)


def _decode(record: RecordedEvent, *, twins: bool) -> Typed[Event]:
    try:
        event = decode(record.type, record.schema_version, record.data, twins=twins)
    except EventDecodeError as exc:
        exc.stream, exc.position = record.stream, record.position
        exc.args = (f"{exc.args[0]} (stream {record.stream!r}, position {record.position})",)
        raise
    return Typed(event, record)


def typed(records: Iterable[RecordedEvent]) -> Iterator[Typed[Event]]:
    """Decode records lazily, in order (e.g. ``typed(store.read_all())``)."""
    for record in records:
        yield decode_record(record)
