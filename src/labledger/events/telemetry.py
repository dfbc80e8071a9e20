"""Esper telemetry packets: health, metrics and events with a routing priority.

Version 2 of ``esper.TelemetryPacket`` carries the priority in its own field.
Version 1 (kept in ``_upcast.py``) stored it as ``health.indicators["priority"]``,
as seed ``004_…`` describes before the RC1 plane refresh; stored version 1
payloads are lifted to version 2 on read.
"""

from __future__ import annotations

import enum

from labledger.events._base import Event, Record
from labledger.events._types import Finite, Name, Text


class TelemetryPriority(enum.StrEnum):
    """Routing priority; CRITICAL goes to the emergency stream."""

    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class HealthStatus(enum.StrEnum):
    """Overall health of the reporting component."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


class EventLevel(enum.StrEnum):
    """Severity of a telemetry event."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class SystemHealth(Record, frozen=True, kw_only=True):
    """Health status with free-form indicators."""

    status: HealthStatus
    indicators: dict[Name, Text]


class TelemetryMetric(Record, frozen=True, kw_only=True):
    """One named measurement, e.g. ``kasmina.prefetch.latency_ms``."""

    name: Name
    value: Finite
    unit: Name | None = None


class TelemetryEvent(Record, frozen=True, kw_only=True):
    """One notable occurrence, e.g. ``command_rejected`` or ``gate_failure``."""

    description: Name
    level: EventLevel
    attributes: dict[Name, Text]


class TelemetryPacket(Event, frozen=True, kw_only=True):
    """Health, metrics and events of one component, with a routing priority."""

    TYPE = "esper.TelemetryPacket"
    VERSION = 2
    SUBSYSTEM = "esper"

    source: Name
    priority: TelemetryPriority
    health: SystemHealth
    metrics: list[TelemetryMetric]
    events: list[TelemetryEvent]
