"""Weatherlight: the supervisor that routes emergencies to their own stream (seed ``004_…``).

It follows ``esper.TelemetryPacket`` and ``security.CommandRejected`` events
and appends one ``weatherlight.EmergencyRouted`` to :data:`EMERGENCY_STREAM`
for every packet whose *own* priority is CRITICAL (the producer's priority is
forwarded, never recomputed — RC1's rule) and for every command rejection.

No side files: the checkpoint is the emergency stream itself. Its last record
names the last routed source position and carries the counters after it, so
a restarted Weatherlight resumes at that position + 1 with the same counters.
Each append names the stream version it expects, so two Weatherlights racing
on one log cannot both route an event (the loser reloads and skips what the
winner routed), and the routed record's id is derived from the source event's
id, so a retry after a crash between commit and acknowledgement is an
idempotent no-op rather than a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

import anyio
import anyio.to_thread
import msgspec

from labledger.errors import WrongExpectedVersion
from labledger.events import decode
from labledger.events.security import CommandRejected
from labledger.events.telemetry import EventLevel, TelemetryPacket, TelemetryPriority
from labledger.events.weatherlight import EmergencyKind, EmergencyRouted
from labledger.store import NO_STREAM, EventStore, RecordedEvent
from labledger.store.subscribe import subscribe

EMERGENCY_STREAM = "weatherlight-emergency"
WATCHED = frozenset({TelemetryPacket.TYPE, CommandRejected.TYPE})
ACTOR = "weatherlight"
_ID_NAMESPACE = uuid.UUID("5e0d6a3c-7f1b-4c51-9a55-2f3b8e0c9d17")
_NAME_MAX = 256


class RoutingCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where routing stands: the last routed source position, stream version, counters."""

    source_position: int = 0
    stream_version: int = -1
    counters: dict[str, int] = msgspec.field(default_factory=dict)


def load_checkpoint(store: EventStore) -> RoutingCheckpoint:
    """The checkpoint derived from the emergency stream's last record (empty stream: zero)."""
    version = store.stream_version(EMERGENCY_STREAM)
    if version < 0:
        return RoutingCheckpoint()
    (last,) = store.read_stream(EMERGENCY_STREAM, from_version=version, limit=1)
    routed = decode(last.type, last.schema_version, last.data)
    assert isinstance(routed, EmergencyRouted)
    return RoutingCheckpoint(
        source_position=routed.source_position,
        stream_version=version,
        counters=dict(routed.counters),
    )


def _clip(name: str) -> str:
    return name[:_NAME_MAX].strip() or "unnamed"


def _bump(counters: Mapping[str, int], keys: list[str]) -> dict[str, int]:
    out = dict(counters)
    for key in ["total", *keys]:
        out[_clip(key)] = out.get(_clip(key), 0) + 1
    return out


def route(record: RecordedEvent, counters: Mapping[str, int]) -> EmergencyRouted | None:
    """The routed record for ``record``, or None when it is not an emergency.

    Pure: the decision uses the event's own fields only (a packet's
    ``priority`` as its producer set it), and the counters are ``counters``
    plus this record.
    """
    if record.type not in WATCHED:
        return None
    event = decode(record.type, record.schema_version, record.data)
    if isinstance(event, CommandRejected):
        reason = event.reason.value
        return EmergencyRouted(
            source_position=record.position,
            source_stream=record.stream,
            source_type=record.type,
            kind=EmergencyKind.COMMAND_REJECTED,
            priority=None,
            reason=reason,
            origin=event.command_type,
            detail=event.detail,
            counters=_bump(counters, [f"reason.command_rejected.{reason}"]),
        )
    assert isinstance(event, TelemetryPacket)
    if event.priority is not TelemetryPriority.CRITICAL:
        return None
    critical = [e.description for e in event.events if e.level is EventLevel.CRITICAL]
    reasons = critical or ["critical"]
    return EmergencyRouted(
        source_position=record.position,
        source_stream=record.stream,
        source_type=record.type,
        kind=EmergencyKind.TELEMETRY,
        priority=event.priority,
        reason=_clip(",".join(reasons)),
        origin=event.source,
        detail=event.health.status.value,
        counters=_bump(
            counters,
            [f"priority.{event.priority.value}", *(f"reason.telemetry.{r}" for r in reasons)],
        ),
    )


class Weatherlight:
    """Routes emergencies of ``store``'s log to :data:`EMERGENCY_STREAM`, exactly once each."""

    def __init__(self, store: EventStore, *, actor: str = ACTOR) -> None:
        self.store, self.actor = store, actor
        self.checkpoint = load_checkpoint(store)

    def handle(self, record: RecordedEvent) -> EmergencyRouted | None:
        """Route one record (if it is an emergency not yet routed); returns what was appended.

        Raises:
            WrongExpectedVersion: only if another writer keeps winning the race.
        """
        for _ in range(5):
            if record.position <= self.checkpoint.source_position:
                return None  # routed already (by us before a restart, or by a racing worker)
            routed = route(record, self.checkpoint.counters)
            if routed is None:
                return None
            new = routed.to_new_event(
                id=str(uuid.uuid5(_ID_NAMESPACE, record.id)),
                correlation_id=record.correlation_id,
                causation_id=record.id,
                run_id=record.run_id,
                actor=self.actor,
            )
            version = self.checkpoint.stream_version
            try:
                result = self.store.append(
                    EMERGENCY_STREAM, [new], NO_STREAM if version < 0 else version
                )
            except WrongExpectedVersion:
                self.checkpoint = load_checkpoint(self.store)
                continue
            self.checkpoint = RoutingCheckpoint(
                source_position=record.position,
                stream_version=result.last_version,
                counters=dict(routed.counters),
            )
            return routed
        raise WrongExpectedVersion(  # another writer kept winning the race
            EMERGENCY_STREAM,
            self.checkpoint.stream_version,
            self.store.stream_version(EMERGENCY_STREAM),
        )

    def drain(self) -> int:
        """Route everything up to the current head, synchronously; returns how many were routed."""
        routed = 0
        head = self.store.head()
        for record in self.store.read_all(self.checkpoint.source_position + 1):
            if record.position > head:
                break
            routed += self.handle(record) is not None
        return routed

    async def run(
        self,
        stop: anyio.Event | None = None,
        on_routed: Callable[[EmergencyRouted], None] | None = None,
    ) -> None:
        """Follow the log from the checkpoint, routing live, until ``stop`` is set or cancelled."""
        async with anyio.create_task_group() as tg:
            if stop is not None:

                async def _stop() -> None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(_stop)
            start = self.checkpoint.source_position + 1
            async for record in subscribe(self.store, start, types=WATCHED):
                routed = await anyio.to_thread.run_sync(self.handle, record)
                if routed is not None and on_routed is not None:
                    on_routed(routed)


def counters(store: EventStore) -> dict[str, int]:
    """Weatherlight's counters as of its last routed record (``{}`` before the first)."""
    return load_checkpoint(store).counters


__all__ = [
    "EMERGENCY_STREAM",
    "WATCHED",
    "RoutingCheckpoint",
    "Weatherlight",
    "counters",
    "load_checkpoint",
    "route",
]
