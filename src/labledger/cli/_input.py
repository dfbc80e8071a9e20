"""Parsing untrusted JSON-lines input into events, before anything touches the log.

The limits are those of :mod:`labledger.events.raw` (README "Input limits"),
reported with the line number.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from labledger.errors import InvalidEvent
from labledger.events.raw import MAX_DOCUMENT_BYTES, parse_json
from labledger.store import NewEvent

MAX_LINE_BYTES = MAX_DOCUMENT_BYTES
ENVELOPE_KEYS = {"correlation_id", "causation_id", "run_id", "actor", "schema_version"}
ALLOWED_KEYS = {"type", "data", "id", "metadata"} | ENVELOPE_KEYS


def event_from_json(obj: Any) -> NewEvent:
    """One ``{"type", "data", "id"?, "metadata"?, …}`` object → a NewEvent."""
    if not isinstance(obj, dict):
        raise InvalidEvent("each line must be a JSON object")
    unknown = set(obj) - ALLOWED_KEYS
    if unknown:
        raise InvalidEvent(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}")
    if not isinstance(obj.get("type"), str):
        raise InvalidEvent('"type" must be a string')
    if not isinstance(obj.get("data"), dict):
        raise InvalidEvent('"data" must be a JSON object')
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidEvent('"metadata" must be a JSON object')
    envelope = {k: obj[k] for k in ENVELOPE_KEYS if k in obj}
    for key, value in envelope.items():
        if key == "schema_version":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidEvent('"schema_version" must be an integer')
        elif not isinstance(value, str):
            raise InvalidEvent(f'"{key}" must be a string')
    try:
        return NewEvent.from_json(
            obj["type"], obj["data"], id=obj.get("id"), metadata=metadata, **envelope
        )
    except ValueError as exc:
        raise InvalidEvent(f"bad event id {obj.get('id')!r}: must be a UUID") from exc


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
