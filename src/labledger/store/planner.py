"""Validating what callers hand to ``append``, before any transaction starts.

Planning an append: ids, expected versions, command claims, positions and links.

A write transaction may carry several independent requests (group commit);
each is planned against the state the earlier ones left, and a request that
fails (conflict, reused id, refused command) gets its own error without
disturbing the others. A refused command is replaced by its rejection
record. Nothing here talks to the database: ``sql.py`` loads the state
under the write lock, calls :func:`plan`, and inserts the rows.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from labledger import names
from labledger.errors import (
    CommandRefused,
    IdempotencyConflict,
    InvalidEvent,
    LabledgerError,
    WrongExpectedVersion,
)
from labledger.store import integrity
from labledger.store.base import (
    ANY,
    MAX_STREAM_LENGTH,
    MAX_TYPE_LENGTH,
    AppendResult,
    CommandClaim,
    ExpectedVersion,
    Gate,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamState,
    SupportsNewEvent,
)
from labledger.store.schema import EVENT_ID, Row, to_recorded


@dataclass(frozen=True)
class Part:
    """A validated StreamAppend: canonical ids, plain NewEvents, command claims."""

    stream: str
    events: list[NewEvent]
    expected_version: ExpectedVersion
    claims: list[CommandClaim | None]


def _check_name(kind: str, value: str, limit: int) -> None:
    """The one name policy (``labledger.names``), limit in bytes of UTF-8.

    A batch repeats its type, stream, run and actor on every event, and
    ``names.check`` walks each character (~3 us per name): a name that passed
    once is remembered (bounded; refusals are never cached, they raise).
    """
    if type(value) is str:
        _checked(kind, value, limit)
    else:
        names.check(kind, value, limit=limit)


@functools.lru_cache(maxsize=4096)
def _checked(kind: str, value: str, limit: int) -> None:
    names.check(kind, value, limit=limit)


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


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_id(value: object) -> str:
    """The id in uuid's canonical form (lower-case, hyphenated); parsed only if it is not."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # the common case, ~10x cheaper than a uuid.UUID round trip
    try:
        return str(uuid.UUID(value))  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidEvent(f"event id {value!r} is not a UUID") from exc


def normalize(event: NewEvent | SupportsNewEvent, *, gated: bool = False) -> NewEvent:
    """Validate one event's envelope and return it with a canonical id.

    ``gated``: a :class:`Gate` checks the payload next (it decodes data and
    metadata anyway), so only their type is checked here, not decoded twice.
    """
    typed = not isinstance(event, NewEvent)
    if typed:
        if not isinstance(event, SupportsNewEvent):
            raise InvalidEvent(f"cannot append a {type(event).__name__}: not an event")
        event = event.to_new_event()
    assert isinstance(event, NewEvent)
    _check_name(names.TYPE, event.type, MAX_TYPE_LENGTH)
    # Encoded from a typed object (a JSON object by construction), or a gate
    # decodes the payload next: only the type is checked here.
    if typed or gated:
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
            _check_name(names.ACTOR if name == "actor" else name, value, MAX_STREAM_LENGTH)
    canonical = canonical_id(event.id)
    if canonical != event.id:
        event = msgspec.structs.replace(event, id=canonical)
    return event


def normalize_part(part: StreamAppend, gate: Gate | None = None) -> Part:
    _check_name(names.STREAM, part.stream, MAX_STREAM_LENGTH)
    expected = part.expected_version
    if not isinstance(expected, StreamState) and (
        not isinstance(expected, int) or isinstance(expected, bool) or expected < 0
    ):
        raise InvalidEvent(
            f"expected version {expected!r} must be any, no_stream, exists or a version >= 0"
        )
    if not part.events:
        raise InvalidEvent(f"nothing to append to stream {part.stream!r}")
    gated = gate is not None
    events = [normalize(e, gated=gated) for e in part.events]
    claims: list[CommandClaim | None] = [None] * len(events)
    if gate is not None:
        for i, (e, given) in enumerate(zip(events, part.events, strict=True)):
            gate.admit(part.stream, e)
            events[i], claims[i] = gate.prepare(e, typed=not isinstance(given, NewEvent))
    seen: set[str] = set()
    for e in events:
        if e.id in seen:
            raise InvalidEvent(f"event id {e.id} appears twice in one batch")
        seen.add(e.id)
    return Part(part.stream, events, expected, claims)


Request = Sequence[Part]
Outcome = list[AppendResult] | LabledgerError


@dataclass
class LogState:
    """What the planner needs to know of the log, loaded under the write lock."""

    head: int
    chain: bytes
    versions: dict[str, int]
    existing: dict[str, RecordedEvent]
    recorded_at_us: int
    nonces_seen: set[str] = field(default_factory=set)
    nonce_horizon_us: int = 0
    lookup: Callable[[str], int] | None = None
    """Loads the version of a stream not loaded up front (rejection records' stream)."""

    def version(self, stream: str) -> int:
        if stream not in self.versions and self.lookup is not None:
            self.versions[stream] = self.lookup(stream)
        return self.versions.get(stream, -1)


@dataclass
class Plan:
    outcomes: list[Outcome] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)  # stream: (version, pos)
    new_rows: dict[str, Row] = field(default_factory=dict)  # event id: its row in this commit
    nonces: list[Row] = field(default_factory=list)
    nonce_values: set[str] = field(default_factory=set)

    def stored(self, event_id: str, state: LogState) -> RecordedEvent | None:
        """The event with this id in the log or earlier in this commit, if any."""
        found = state.existing.get(event_id)
        if found is None and (row := self.new_rows.get(event_id)) is not None:
            found = to_recorded(row)
        return found


class _Refused(Exception):
    def __init__(self, refusals: list[tuple[NewEvent, CommandClaim, str, str]]) -> None:
        self.refusals = refusals


@dataclass
class _Staged:
    """One request's effect, merged into the plan only if the whole request succeeds."""

    head: int
    link: bytes
    rows: list[Row] = field(default_factory=list)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)  # of this request's earlier parts
    nonces: list[Row] = field(default_factory=list)
    nonce_values: set[str] = field(default_factory=set)
    results: list[AppendResult] = field(default_factory=list)
    framer: integrity.RowFramer = field(default_factory=integrity.RowFramer)
    """Shared by every request of a plan: a flush's rows repeat their type and actor."""


def plan(requests: Sequence[Request], state: LogState, gate: Gate | None = None) -> Plan:
    """Plan every request in order; failed requests leave ``state`` untouched."""
    result = Plan()
    head, link = state.head, state.chain
    framer = integrity.RowFramer()
    for request in requests:
        staged = _Staged(head, link, framer=framer)
        try:
            for part in request:
                _plan_part(part, state, result, staged)
        except _Refused as refused:
            assert gate is not None  # claims only come from a gate
            staged = _Staged(head, link, framer=framer)
            outcome: Outcome = _plan_rejections(refused, state, result, staged, gate)
        except LabledgerError as exc:
            result.outcomes.append(exc)
            continue
        else:
            outcome = staged.results
        head, link = staged.head, staged.link
        result.rows.extend(staged.rows)
        result.versions.update(staged.versions)
        result.new_rows.update((row[EVENT_ID], row) for row in staged.rows)
        result.nonces.extend(staged.nonces)
        result.nonce_values |= staged.nonce_values
        result.outcomes.append(outcome)
    return result


def _plan_part(part: Part, state: LogState, result: Plan, staged: _Staged) -> None:
    # An identical request earlier in the same commit (a retry that raced its
    # original into one group-commit flush) is a replay like any other.
    replay = _replayed(part, state, result)
    if replay is not None:
        staged.results.append(replay)
        return
    for e in part.events:
        if e.id in staged.ids:
            raise InvalidEvent(f"event id {e.id} appears twice in one request")
    staged.ids.update(e.id for e in part.events)
    _check_claims(part, state, result, staged)
    current = _version(part.stream, staged, result, state)
    _check_expected(part, current)
    first_pos = staged.head + 1
    for e, claim in zip(part.events, part.claims, strict=True):
        current += 1
        _stage_row(part.stream, current, e, state, staged)
        if claim is not None:
            staged.nonces.append(_nonce_row(claim, staged.head))
            staged.nonce_values.add(claim.nonce or "")
    staged.versions[part.stream] = (current, staged.head)
    staged.results.append(
        AppendResult(
            stream=part.stream,
            first_position=first_pos,
            last_position=staged.head,
            first_version=current - len(part.events) + 1,
            last_version=current,
        )
    )


def _stage_row(stream: str, version: int, e: NewEvent, state: LogState, staged: _Staged) -> None:
    staged.head += 1
    pos = staged.head
    # An import keeps the original commit time; everything else gets this commit's.
    at = e.recorded_at_us if e.recorded_at_us is not None else state.recorded_at_us
    row = (
        pos,
        stream,
        version,
        e.id,
        e.type,
        e.schema_version,
        at,
        e.correlation_id,
        e.causation_id,
        e.run_id,
        e.actor,
        e.data,
        e.metadata,
    )  # schema.READ_COLUMNS; the checksum and the chain link follow (ROW_COLUMNS)
    checksum = staged.framer.checksum(row)
    staged.link = integrity.chain_link(staged.link, checksum)
    staged.rows.append((*row, checksum, staged.link))


def _check_claims(part: Part, state: LogState, result: Plan, staged: _Staged) -> None:
    """Freshness against the commit clock, the nonce ledger and nonces earlier in this commit."""
    refusals = []
    pending = result.nonce_values | staged.nonce_values
    now = state.recorded_at_us
    for e, claim in zip(part.events, part.claims, strict=True):
        if claim is None:
            continue
        problem = claim.refusal
        if problem is None:
            problem = _freshness(claim, now, state.nonce_horizon_us)
        if problem is None and (claim.nonce in state.nonces_seen or claim.nonce in pending):
            problem = ("replayed_nonce", f"nonce {claim.nonce!r} was already used")
        if problem is not None:
            refusals.append((e, claim, *problem))
        pending.add(claim.nonce or "")
    if refusals:
        raise _Refused(refusals)


def _freshness(claim: CommandClaim, now_us: int, horizon_us: int) -> tuple[str, str] | None:
    age = now_us - claim.issued_at_us
    if age > claim.window_us:
        return (
            "stale",
            f"issued {age / 1e6:.3f}s ago; the freshness window is {claim.window_us / 1e6:.3f}s",
        )
    if -age > claim.window_us:
        return (
            "future",
            f"issued {-age / 1e6:.3f}s in the future; the freshness window is "
            f"{claim.window_us / 1e6:.3f}s",
        )
    if claim.issued_at_us <= horizon_us:
        return "stale", "issued before the nonce ledger's horizon (older nonces were evicted)"
    return None


def _nonce_row(claim: CommandClaim, position: int) -> Row:
    """In the column order of ``_nonces.INSERT``."""
    expires = claim.issued_at_us + claim.window_us
    return (claim.nonce, claim.key_id or "", claim.issued_at_us, expires, position)


def _plan_rejections(
    refused: _Refused, state: LogState, result: Plan, staged: _Staged, gate: Gate
) -> CommandRefused:
    """Record why each command of a refused request was refused; the request fails."""
    for e, claim, reason, detail in refused.refusals:
        stream, record = gate.rejection(e, claim, reason, detail)
        part = Part(stream, [record], ANY, [None])
        _plan_part(part, state, result, staged)
    _, _, reason, detail = refused.refusals[0]
    return CommandRefused(reason, detail, position=staged.head)


def _same_content(stored: RecordedEvent, new: NewEvent, stream: str) -> str | None:
    """None when ``new`` repeats ``stored``; otherwise what differs."""
    if stored.stream != stream:
        return f"stream {stored.stream!r} (not {stream!r})"
    for name in (
        "type",
        "schema_version",
        "data",
        "metadata",
        "correlation_id",
        "causation_id",
        "run_id",
        "actor",
    ):
        if getattr(stored, name) != getattr(new, name):
            return f"a different {name}"
    return None


def _replayed(part: Part, state: LogState, result: Plan) -> AppendResult | None:
    """The original result if every id of ``part`` is stored with the same content."""
    stored = [result.stored(e.id, state) for e in part.events]
    found = [s for s in stored if s is not None]
    if not found:
        return None
    if len(found) < len(stored):
        raise IdempotencyConflict(
            found[0].id,
            f"another batch; this one adds {len(stored) - len(found)} new event(s) to it",
        )
    for e, s in zip(part.events, found, strict=True):
        if (diff := _same_content(s, e, part.stream)) is not None:
            raise IdempotencyConflict(e.id, diff)
    versions = [s.stream_version for s in found]
    if versions != list(range(versions[0], versions[0] + len(versions))):
        raise IdempotencyConflict(part.events[0].id, "these ids in another order")
    return AppendResult(
        stream=part.stream,
        first_position=found[0].position,
        last_position=found[-1].position,
        first_version=found[0].stream_version,
        last_version=found[-1].stream_version,
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


def _version(stream: str, staged: _Staged, result: Plan, state: LogState) -> int:
    """The stream's version as this request sees it: its own parts, earlier requests, the log."""
    if stream in staged.versions:
        return staged.versions[stream][0]
    if stream in result.versions:
        return result.versions[stream][0]
    return state.version(stream)
