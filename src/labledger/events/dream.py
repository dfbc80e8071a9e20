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
from labledger.events.security import SignedCommand


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
    P95_MS = "p95_ms"
    PEAK_RSS_MB = "peak_rss_mb"
    ERROR_RATE = "error_rate"
    """``errors / requests`` of the trial."""


class Provenance(enum.StrEnum):
    """Where a sensor value came from: read from hardware, computed by a model, or not at all."""

    MEASURED = "measured"
    MODELLED = "modelled"
    ABSENT = "absent"


class DreamManifest(Record, frozen=True, kw_only=True):
    """What makes a D-REAM run reproducible; carried by its ``run.RunStarted``."""

    code_hash: Sha256
    regimes_sha256: Sha256
    caps_sha256: Sha256
    rng_seed: Count


class TrialKpis(Record, frozen=True, kw_only=True):
    """One trial's KPIs; ``None`` where the machine cannot measure the value.

    ``watts`` is measured power only (RAPL); ``watts_modelled`` is the power
    model's estimate from CPU time (see ``lab.dream.sensors``), kept apart so a
    modelled number is never mistaken for a reading.
    """

    perf: Finite | None
    p95_ms: NonNegative | None
    watts: NonNegative | None
    temp_peak_c: Finite | None
    errors: Count | None
    oom: Count | None
    requests: Count | None = None
    """Fixed requests (the domain's unit of work) served in the trial."""
    cpu_s: NonNegative | None = None
    peak_rss_mb: NonNegative | None = None
    watts_modelled: NonNegative | None = None


class SensorProvenance(Record, frozen=True, kw_only=True):
    """How a trial's power and temperature were obtained."""

    watts: Provenance
    temp_peak_c: Provenance
    watts_modelled: Provenance = Provenance.ABSENT
    watts_model: Text | None = None
    """The model behind ``watts_modelled``, e.g. ``"15 W per busy CPU second"``."""


class TrialRecorded(Event, frozen=True, kw_only=True):
    """One trial of one candidate genome in one (domain, regime).

    v2 adds the sensors' provenance, the KPIs' units, why a trial failed (it
    did no work, too few requests, the workload crashed) and the blob of the
    workload's raw output.
    """

    TYPE = "dream.TrialRecorded"
    VERSION = 2
    SUBSYSTEM = "dream"

    domain: Name
    regime: Regime
    cand_id: Name
    generation: Count
    trial: Count
    genome: Params
    kpis: TrialKpis
    sensors: SensorProvenance
    units: dict[Name, Text]
    """Per KPI its unit (``perf`` in the domain's own unit, ``p95_ms`` in ms, …)."""
    failure: Text | None = None
    """``None`` for a valid trial; else why it does not count."""
    output_sha256: Sha256 | None = None
    """The blob holding the workload's raw stdout."""


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
    """Every candidate of a generation in a domain has been measured.

    v2 names the generation's candidate packs and the best fitness.
    """

    TYPE = "dream.GenerationCompleted"
    VERSION = 2
    SUBSYSTEM = "dream"

    domain: Name
    generation: Count
    candidates: Count
    regimes: list[Regime]
    trials_per_regime: Count
    best_cand_id: Name | None
    """``None`` when no candidate of the generation was safe."""
    packs: list[Name]
    """The cand_ids of the generation (``dream pack CAND_ID`` reads each one)."""
    best_fitness: Finite | None
    """The best candidate's ``score_v2`` (baseline-normalised), ``None`` when none was scored."""
    fitness: Name = "score_v2"


class PromotionEvidence(Record, frozen=True, kw_only=True):
    """Why a candidate was promoted: its score difference from the baseline, with its CI."""

    score_formula: Name
    difference: Finite
    ci95: list[Finite]
    trials: Count
    """Trials per regime behind the decision (the smallest over compared regimes)."""
    tolerance: Finite
    baseline_ids: list[Name]


class CandidatePromoted(SignedCommand, frozen=True, kw_only=True):
    """A signed command: this candidate's genome is the configuration in force for its domain."""

    TYPE = "dream.CandidatePromoted"
    VERSION = 1
    SUBSYSTEM = "dream"

    command_id: Name
    domain: Name
    cand_id: Name
    genome: Params
    promoted_by: Name
    evidence: PromotionEvidence
    reason: Text = ""
