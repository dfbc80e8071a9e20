"""Parsing untrusted JSON-lines input into events, before anything touches the log.

The limits are those of :mod:`labledger.events.raw` (README "Input limits"),
reported with the line number.
"""

from __future__ import annotations

from collections.abc import Iterable

from labledger.errors import InvalidEvent
from labledger.events.raw import MAX_DOCUMENT_BYTES, event_from_json, parse_json
from labledger.store import NewEvent

MAX_LINE_BYTES = MAX_DOCUMENT_BYTES


def events_from_lines(lines: Iterable[bytes]) -> list[NewEvent]:
    """Every line parsed, or an InvalidEvent naming the first bad line."""
    events: list[NewEvent] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(event_from_json(parse_json(line)))
        except InvalidEvent as exc:
            raise InvalidEvent(f"line {number}: {exc}") from exc
    return events
