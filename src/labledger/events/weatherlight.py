"""Weatherlight events: the supervisor's emergency stream (seed ``004_…``).

Weatherlight follows the log and routes every CRITICAL ``esper.TelemetryPacket``
and every ``security.CommandRejected`` to the ``weatherlight-emergency``
stream, forwarding the priority the producer set (it never recomputes one).
Each routed record carries the running counters after it, so the stream's
last record is both Weatherlight's checkpoint and its metrics.
"""

from __future__ import annotations

import enum

from labledger.events._base import Event
from labledger.events._types import Count, Name, PositiveCount, Text, TypeName
from labledger.events.telemetry import TelemetryPriority


class EmergencyKind(enum.StrEnum):
    """What was routed."""

    TELEMETRY = "telemetry"
    COMMAND_REJECTED = "command_rejected"


class EmergencyRouted(Event, frozen=True, kw_only=True):
    """One source event routed to the emergency stream, with the counters after it."""

    TYPE = "weatherlight.EmergencyRouted"
    VERSION = 1
    SUBSYSTEM = "weatherlight"

    source_position: PositiveCount
    """Log position of the routed event (Weatherlight resumes after the last one)."""
    source_stream: Name
    source_type: TypeName
    kind: EmergencyKind
    priority: TelemetryPriority | None
    """The packet's own priority (telemetry); ``None`` for a command rejection."""
    reason: Name
    """Rejection reason, or the packet's CRITICAL event descriptions (or ``critical``)."""
    origin: Name
    """The packet's source component, or the rejected command's type."""
    detail: Text = ""
    counters: dict[Name, Count]
    """Routed records so far, this one included: ``total``, ``priority.<P>``,
    ``reason.<kind>.<reason>``."""
