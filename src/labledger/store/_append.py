"""Planning an append: ids, expected versions, positions, checksums and links.

A write transaction may carry several independent requests (group commit);
each is planned against the state the earlier ones left, and a request that
fails (conflict, bad id) gets its own error without disturbing the others.
Nothing here talks to the database: ``_sql.py`` loads the state, calls
:func:`plan`, and inserts the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labledger.errors import (
    IdempotencyConflict,
    InvalidEvent,
    LabledgerError,
    WrongExpectedVersion,
)
from labledger.store._integrity import chain_link, record_checksum
from labledger.store.base import (
    MAX_STREAM_LENGTH,
    MAX_TYPE_LENGTH,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    SupportsNewEvent,
)


@dataclass(frozen=True)
class Part:
    """A validated StreamAppend: canonical ids, plain NewEvents."""

    stream: str
    events: list[NewEvent]
    expected_version: ExpectedVersion


Request = Sequence[Part]
Outcome = list[AppendResult] | LabledgerError


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


def normalize(event: NewEvent | SupportsNewEvent) -> NewEvent:
    """Validate one event's envelope and return it with a canonical id."""
    if not isinstance(event, NewEvent):
        if not isinstance(event, SupportsNewEvent):
            raise InvalidEvent(f"cannot append a {type(event).__name__}: not an event")
        event = event.to_new_event()
    _check_name("event type", event.type, MAX_TYPE_LENGTH)
    if not isinstance(event.data, bytes) or not isinstance(event.metadata, bytes):
        raise InvalidEvent("event data and metadata must be bytes of a JSON object")
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
        event = NewEvent(
            type=event.type,
            data=event.data,
            id=canonical,
            metadata=event.metadata,
            schema_version=event.schema_version,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            run_id=event.run_id,
            actor=event.actor,
        )
    return event


def normalize_part(part: StreamAppend) -> Part:
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
    seen: set[str] = set()
    for e in events:
        if e.id in seen:
            raise InvalidEvent(f"event id {e.id} appears twice in one batch")
        seen.add(e.id)
    return Part(part.stream, events, expected)


@dataclass
class LogState:
    """What the planner needs to know of the log, loaded under the write lock."""

    head: int
    chain: bytes
    versions: dict[str, int]
    existing: dict[str, RecordedEvent]
    recorded_at_us: int


@dataclass
class Plan:
    outcomes: list[Outcome] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)  # stream: (version, pos)
    new_ids: set[str] = field(default_factory=set)


def _same_content(stored: RecordedEvent, new: NewEvent, stream: str) -> str | None:
    """None when ``new`` repeats ``stored``; otherwise what differs."""
    if stored.stream != stream:
        return f"stream {stored.stream!r} (not {stream!r})"
    for name in ("type", "schema_version", "data", "metadata"):
        if getattr(stored, name) != getattr(new, name):
            return f"a different {name}"
    for name in ("correlation_id", "causation_id", "run_id", "actor"):
        if getattr(stored, name) != getattr(new, name):
            return f"a different {name}"
    return None


def _replayed(part: Part, state: LogState) -> AppendResult | None:
    """The original result if every id of ``part`` is stored with the same content."""
    stored = [state.existing.get(e.id) for e in part.events]
    if all(s is None for s in stored):
        return None
    for e, s in zip(part.events, stored, strict=True):
        if s is None:
            raise IdempotencyConflict(e.id, "only part of this batch (the rest is new)")
        if (diff := _same_content(s, e, part.stream)) is not None:
            raise IdempotencyConflict(e.id, diff)
    versions = [s.stream_version for s in stored if s is not None]
    if versions != list(range(versions[0], versions[0] + len(versions))):
        raise IdempotencyConflict(part.events[0].id, "these ids in another order")
    first, last = stored[0], stored[-1]
    assert first is not None and last is not None
    return AppendResult(
        stream=part.stream,
        first_position=first.position,
        last_position=last.position,
        first_version=first.stream_version,
        last_version=last.stream_version,
        already_appended=True,
    )


def _check_expected(part: Part, current: int) -> None:
    expected = part.expected_version
    ok = (
        expected is StreamState.ANY
        or (expected is StreamState.NO_STREAM and current < 0)
        or (expected is StreamState.EXISTS and current >= 0)
        or (isinstance(expected, int) and expected == current)
    )
    if not ok:
        raise WrongExpectedVersion(part.stream, expected, current)


def plan(requests: Sequence[Request], state: LogState) -> Plan:
    """Plan every request in order; failed requests leave ``state`` untouched."""
    result = Plan()
    head, chain = state.head, state.chain
    for request in requests:
        staged_rows: list[dict[str, Any]] = []
        staged_versions: dict[str, tuple[int, int]] = {}
        results: list[AppendResult] = []
        staged_ids: set[str] = set()
        pos, link = head, chain
        try:
            for part in request:
                replay = _replayed(part, state)
                if replay is not None:
                    results.append(replay)
                    continue
                for e in part.events:
                    if e.id in result.new_ids or e.id in staged_ids:
                        raise IdempotencyConflict(e.id, "another request in the same commit")
                staged_ids.update(e.id for e in part.events)
                current = _version(part.stream, staged_versions, result, state)
                _check_expected(part, current)
                first_pos, first_version = pos + 1, current + 1
                for e in part.events:
                    pos += 1
                    current += 1
                    checksum = record_checksum(
                        pos,
                        current,
                        e.schema_version,
                        state.recorded_at_us,
                        e.id,
                        part.stream,
                        e.type,
                        e.correlation_id,
                        e.causation_id,
                        e.run_id,
                        e.actor,
                        e.data,
                        e.metadata,
                    )
                    link = chain_link(link, checksum)
                    staged_rows.append(_row(pos, current, part.stream, e, state, checksum, link))
                staged_versions[part.stream] = (current, pos)
                results.append(
                    AppendResult(
                        stream=part.stream,
                        first_position=first_pos,
                        last_position=pos,
                        first_version=first_version,
                        last_version=current,
                    )
                )
        except LabledgerError as exc:
            result.outcomes.append(exc)
            continue
        head, chain = pos, link
        result.rows.extend(staged_rows)
        result.versions.update(staged_versions)
        result.new_ids |= staged_ids
        result.outcomes.append(results)
    return result


def _version(stream: str, staged: dict[str, tuple[int, int]], result: Plan, state: LogState) -> int:
    """The stream's version as this request sees it: its own parts, earlier requests, the log."""
    if stream in staged:
        return staged[stream][0]
    if stream in result.versions:
        return result.versions[stream][0]
    return state.versions.get(stream, -1)


def _row(
    pos: int,
    version: int,
    stream: str,
    e: NewEvent,
    state: LogState,
    checksum: bytes,
    link: bytes,
) -> dict[str, Any]:
    return {
        "position": pos,
        "event_id": e.id,
        "stream": stream,
        "stream_version": version,
        "type": e.type,
        "schema_version": e.schema_version,
        "recorded_at": state.recorded_at_us,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "run_id": e.run_id,
        "actor": e.actor,
        "data": e.data,
        "metadata": e.metadata,
        "checksum": checksum,
        "chain": link,
    }
