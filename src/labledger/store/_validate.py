"""Validating what callers hand to ``append``, before any transaction starts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from labledger.errors import InvalidEvent
from labledger.store.base import (
    MAX_STREAM_LENGTH,
    MAX_TYPE_LENGTH,
    ExpectedVersion,
    NewEvent,
    StreamAppend,
    StreamState,
    SupportsNewEvent,
)
from labledger.store.hooks import CommandClaim, Gate


@dataclass(frozen=True)
class Part:
    """A validated StreamAppend: canonical ids, plain NewEvents, command claims."""

    stream: str
    events: list[NewEvent]
    expected_version: ExpectedVersion
    claims: list[CommandClaim | None]


def _check_name(kind: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{kind} must be a non-empty string")
    if len(value) > limit:
        raise InvalidEvent(f"{kind} is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise InvalidEvent(f"{kind} contains a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidEvent(f"{kind} is not valid UTF-8 text") from exc


_object = msgspec.json.Decoder(dict[str, Any])


def _check_object(kind: str, raw: object) -> None:
    """``raw`` must be the bytes of one JSON object: every reader decodes it as one."""
    if not isinstance(raw, bytes):
        raise InvalidEvent(f"event {kind} must be bytes of a JSON object, not {type(raw).__name__}")
    try:
        _object.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"event {kind} is not a JSON object: {exc}") from exc
    except RecursionError as exc:
        raise InvalidEvent(f"event {kind} is nested too deeply to be read back") from exc


def normalize(event: NewEvent | SupportsNewEvent) -> NewEvent:
    """Validate one event's envelope and return it with a canonical id."""
    typed = not isinstance(event, NewEvent)
    if typed:
        if not isinstance(event, SupportsNewEvent):
            raise InvalidEvent(f"cannot append a {type(event).__name__}: not an event")
        event = event.to_new_event()
    assert isinstance(event, NewEvent)
    _check_name("event type", event.type, MAX_TYPE_LENGTH)
    if typed:  # encoded from a typed object: a JSON object by construction
        if not isinstance(event.data, bytes) or not isinstance(event.metadata, bytes):
            raise InvalidEvent("event data and metadata must be bytes of a JSON object")
    else:
        _check_object("data", event.data)
        _check_object("metadata", event.metadata)
    if not (0 < event.schema_version < 2**31):
        raise InvalidEvent(f"schema_version {event.schema_version} is out of range")
    for name in ("correlation_id", "causation_id", "run_id", "actor"):
        value = getattr(event, name)
        if value is not None:
            _check_name(name, value, MAX_STREAM_LENGTH)
    try:
        canonical = str(uuid.UUID(event.id))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidEvent(f"event id {event.id!r} is not a UUID") from exc
    if canonical != event.id:
        event = msgspec.structs.replace(event, id=canonical)
    return event


def normalize_part(part: StreamAppend, gate: Gate | None = None) -> Part:
    _check_name("stream name", part.stream, MAX_STREAM_LENGTH)
    expected = part.expected_version
    if not isinstance(expected, StreamState) and (
        not isinstance(expected, int) or isinstance(expected, bool) or expected < 0
    ):
        raise InvalidEvent(
            f"expected version {expected!r} must be any, no_stream, exists or a version >= 0"
        )
    if not part.events:
        raise InvalidEvent(f"nothing to append to stream {part.stream!r}")
    events = [normalize(e) for e in part.events]
    claims: list[CommandClaim | None] = [None] * len(events)
    if gate is not None:
        for i, (e, given) in enumerate(zip(events, part.events, strict=True)):
            events[i], claims[i] = gate.prepare(e, typed=not isinstance(given, NewEvent))
    seen: set[str] = set()
    for e in events:
        if e.id in seen:
            raise InvalidEvent(f"event id {e.id} appears twice in one batch")
        seen.add(e.id)
    return Part(part.stream, events, expected, claims)
