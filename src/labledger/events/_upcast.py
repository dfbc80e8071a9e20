"""Old event shapes and the upcasters that lift them, in one place.

Stored bytes never change, so every shape ever written stays decodable: the old
class is kept here, *frozen* — never edit a class in this module, add a new
version instead. Its nested records are copies too, so later changes to the
current records cannot change how old bytes decode. (Enums are shared: enum
members are only ever added, never removed or renamed.)

An upcaster takes the builtins form of a payload validated against version N
and returns the builtins form of version N + 1; ``decode`` chains them and
validates the result against the current class.

To evolve a type: bump ``VERSION`` on the current class, move a copy of the old
class here under a ``V<N>`` name, register an upcaster from N, regenerate the
catalog (``python -m labledger.events.catalog --write``) and append golden
records for the new version (the golden test says which are missing).
"""

from __future__ import annotations

from typing import Any

from labledger.events._base import Event, Record, register_upcaster
from labledger.events._types import (
    Count,
    Finite,
    Name,
    NonNegative,
    Params,
    Path,
    Positive,
    Sha256,
    Text,
    Unit,
)
from labledger.events.dream import Regime
from labledger.events.telemetry import EventLevel, HealthStatus, TelemetryPriority
from labledger.events.toolgen import ImplStyle

# --- esper.TelemetryPacket v1 -> v2: priority moves out of the health indicators ----------


class _SystemHealthV1(Record, frozen=True, kw_only=True):
    status: HealthStatus
    indicators: dict[Name, Text]


class _TelemetryMetricV1(Record, frozen=True, kw_only=True):
    name: Name
    value: Finite
    unit: Name | None = None


class _TelemetryEventV1(Record, frozen=True, kw_only=True):
    description: Name
    level: EventLevel
    attributes: dict[Name, Text]


class TelemetryPacketV1(Event, frozen=True, kw_only=True):
    """esper.TelemetryPacket v1: the priority was ``health.indicators["priority"]``."""

    TYPE = "esper.TelemetryPacket"
    VERSION = 1
    SUBSYSTEM = "esper"

    source: Name
    health: _SystemHealthV1
    metrics: list[_TelemetryMetricV1]
    events: list[_TelemetryEventV1]


_PRIORITY_PREFIX = "MESSAGE_PRIORITY_"


def _v1_priority(raw: str | None, events: list[dict[str, Any]]) -> TelemetryPriority:
    """The v2 priority of a v1 packet.

    v1 producers wrote the indicator as ``"HIGH"``, ``"high"`` or the protobuf
    name ``"MESSAGE_PRIORITY_HIGH"``. Packets without it were routed by
    Weatherlight, which derived the priority from the packet's events (an ERROR
    event resolved to HIGH, a CRITICAL one escalated to CRITICAL, seed
    ``004_…``); the same rule is applied here so replay routes them as they were.
    """
    if raw is not None:
        name = raw.strip().upper().removeprefix(_PRIORITY_PREFIX)
        try:
            return TelemetryPriority(name)
        except ValueError:
            raise ValueError(f"unknown v1 priority indicator {raw!r}") from None
    levels = {event["level"] for event in events}
    if EventLevel.CRITICAL in levels:
        return TelemetryPriority.CRITICAL
    if EventLevel.ERROR in levels:
        return TelemetryPriority.HIGH
    return TelemetryPriority.NORMAL


@register_upcaster("esper.TelemetryPacket", 1)
def _telemetry_priority_to_field(data: dict[str, Any]) -> dict[str, Any]:
    indicators = dict(data["health"]["indicators"])
    priority = _v1_priority(indicators.pop("priority", None), data["events"])
    return {
        **data,
        "priority": priority.value,
        "health": {**data["health"], "indicators": indicators},
    }


# --- toolgen.ToolEvaluated v1 -> v2 and toolgen.HandoffRequested v1 -> v2 (issue #15) ---


class _FitnessComponentsV1(Record, frozen=True, kw_only=True):
    correctness: Unit
    safety: Unit
    performance: Unit
    robustness: Unit
    documentation: Unit


class ToolEvaluatedV1(Event, frozen=True, kw_only=True):
    """toolgen.ToolEvaluated v1: performance was ``min(1, budget_ms / median_ms)``."""

    TYPE = "toolgen.ToolEvaluated"
    VERSION = 1
    SUBSYSTEM = "toolgen"

    tool_id: Name
    spec_id: Name
    impl_style: ImplStyle
    epoch: Count
    correctness: Unit
    median_ms: NonNegative | None
    budget_ms: Positive
    performance: Unit
    stability: Unit
    diversity_bonus: Unit
    components: _FitnessComponentsV1
    fitness: Finite


@register_upcaster("toolgen.ToolEvaluated", 1)
def _evaluated_without_reference(data: dict[str, Any]) -> dict[str, Any]:
    # v1 had no reference run and no memory measurement: both are unknown, not 0.
    return {**data, "reference_ms": None, "peak_kib": None}


class _HandoffMetricsV1(Record, frozen=True, kw_only=True):
    correctness: Unit
    fitness: Finite


class HandoffRequestedV1(Event, frozen=True, kw_only=True):
    """toolgen.HandoffRequested v1: no test output travelled with the bundle."""

    TYPE = "toolgen.HandoffRequested"
    VERSION = 1
    SUBSYSTEM = "toolgen"

    handoff_id: Name
    tool_id: Name
    source: Name = "toolgen"
    spec_path: Path
    bundle_dir: Path
    bundle_sha256: Sha256 | None = None
    epoch: Count
    impl_style: ImplStyle
    reason: Name
    metrics: _HandoffMetricsV1


@register_upcaster("toolgen.HandoffRequested", 1)
def _handoff_without_report(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "report_sha256": None}


# --- dream.TrialRecorded v1 -> v2: provenance, units, failure, raw output --------------------


class _TrialKpisV1(Record, frozen=True, kw_only=True):
    perf: Finite | None
    p95_ms: NonNegative | None
    watts: NonNegative | None
    temp_peak_c: Finite | None
    errors: Count | None
    oom: Count | None


class TrialRecordedV1(Event, frozen=True, kw_only=True):
    """dream.TrialRecorded v1: KPIs without units, sensor provenance or a failure reason."""

    TYPE = "dream.TrialRecorded"
    VERSION = 1
    SUBSYSTEM = "dream"

    domain: Name
    regime: Regime
    cand_id: Name
    generation: Count
    trial: Count
    genome: Params
    kpis: _TrialKpisV1


@register_upcaster("dream.TrialRecorded", 1)
def _trial_provenance(data: dict[str, Any]) -> dict[str, Any]:
    """v1 stored only readings: a present value was measured, an absent one absent.

    v1 recorded no units (``{}``: unknown) and counted a trial without ``perf``
    as failed (the workload produced nothing usable).
    """
    kpis = data["kpis"]

    def seen(name: str) -> str:
        return "measured" if kpis.get(name) is not None else "absent"

    sensors = {"watts": seen("watts"), "temp_peak_c": seen("temp_peak_c")}
    failure = "no perf measured (v1 trial)" if kpis.get("perf") is None else None
    return {**data, "sensors": sensors, "units": {}, "failure": failure}


# --- dream.GenerationCompleted v1 -> v2: packs and best fitness ------------------------------


class GenerationCompletedV1(Event, frozen=True, kw_only=True):
    """dream.GenerationCompleted v1: no packs, no best fitness."""

    TYPE = "dream.GenerationCompleted"
    VERSION = 1
    SUBSYSTEM = "dream"

    domain: Name
    generation: Count
    candidates: Count
    regimes: list[Regime]
    trials_per_regime: Count
    best_cand_id: Name | None


@register_upcaster("dream.GenerationCompleted", 1)
def _generation_packs(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named no packs and recorded no fitness: an empty list and ``None``."""
    return {**data, "packs": [], "best_fitness": None}
