"""D-REAM events: evolutionary tuning of system configurations (seed ``000_…``).

A candidate genome is measured in several workload regimes with repeated
trials; each trial is one :class:`TrialRecorded`. Baselines, deltas, bootstrap
confidence intervals, ``score_v2`` and the ``safe`` flag are projections of
these events, never stored here.
"""

from __future__ import annotations

import enum

from labledger.events._base import Event, Record
from labledger.events._types import (
    Count,
    Finite,
    Name,
    NonNegative,
    Params,
    Sha256,
    Text,
)


class Regime(enum.StrEnum):
    """The workload regimes every candidate is measured in."""

    IDLE = "idle"
    NORMAL = "normal"
    STRESS = "stress"
    MIXED = "mixed"


class CapMetric(enum.StrEnum):
    """The measurements that safety caps limit (``caps.yaml``)."""

    TEMP_PEAK_C = "temp_peak_c"
    WATTS = "watts"
    ERRORS = "errors"
    OOM = "oom"


class DreamManifest(Record, frozen=True, kw_only=True):
    """What makes a D-REAM run reproducible; carried by its ``run.RunStarted``."""

    code_hash: Sha256
    regimes_sha256: Sha256
    caps_sha256: Sha256
    rng_seed: Count


class TrialKpis(Record, frozen=True, kw_only=True):
    """One trial's KPIs; ``None`` where the machine cannot measure the value."""

    perf: Finite | None
    p95_ms: NonNegative | None
    watts: NonNegative | None
    temp_peak_c: Finite | None
    errors: Count | None
    oom: Count | None


class TrialRecorded(Event, frozen=True, kw_only=True):
    """One trial of one candidate genome in one (domain, regime)."""

    TYPE = "dream.TrialRecorded"
    VERSION = 1
    SUBSYSTEM = "dream"

    domain: Name
    regime: Regime
    cand_id: Name
    generation: Count
    trial: Count
    genome: Params
    kpis: TrialKpis


class BaselineRefreshRequested(Event, frozen=True, kw_only=True):
    """The (domain, regime) baseline is to be re-measured (``--refresh-baseline``)."""

    TYPE = "dream.BaselineRefreshRequested"
    VERSION = 1
    SUBSYSTEM = "dream"

    domain: Name
    regime: Regime | None
    """``None`` refreshes every regime of the domain."""
    requested_by: Name
    reason: Text = ""


class SafetyCapExceeded(Event, frozen=True, kw_only=True):
    """A trial crossed a safety cap; the candidate is unsafe (``score_v2`` = -inf)."""

    TYPE = "dream.SafetyCapExceeded"
    VERSION = 1
    SUBSYSTEM = "dream"

    domain: Name
    regime: Regime
    cand_id: Name
    generation: Count
    trial: Count | None
    metric: CapMetric
    sensor: Name | None
    """Which sensor the cap applies to (``cpu``, ``gpu``, ``dimm``), if any."""
    cap: Finite
    observed: Finite


class GenerationCompleted(Event, frozen=True, kw_only=True):
    """Every candidate of a generation in a domain has been measured."""

    TYPE = "dream.GenerationCompleted"
    VERSION = 1
    SUBSYSTEM = "dream"

    domain: Name
    generation: Count
    candidates: Count
    regimes: list[Regime]
    trials_per_regime: Count
    best_cand_id: Name | None
    """``None`` when no candidate of the generation was safe."""
