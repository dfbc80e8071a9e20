"""Esper events: morphogenetic training (seeds ``002_…``, ``003_…``, ``004_…``).

Tamiyo (the policy) decides through signed :class:`AdaptationCommand` events;
Kasmina seed slots germinate blueprint kernels (stored in Urza) and blend them
into the host network through a lifecycle; field reports judge each decision;
Tolaria reports training state and telemetry; Simic trains the policy.
The structured fields follow the RC1 plane refresh of seed ``004_…``:
``DecisionMetadata`` instead of annotations, ``FieldReportDelta`` instead of a
metrics map, ``TrainingMetrics`` instead of a map, and the telemetry priority
in its own field.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from labledger.events._base import Event, Record
from labledger.events._types import (
    Count,
    Finite,
    Metrics,
    Name,
    NonNegative,
    Params,
    PositiveCount,
    Sha256,
    Shape,
    Text,
    Unit,
)
from labledger.events.security import SignedCommand


class SeedStage(enum.StrEnum):
    """Kasmina seed lifecycle stages."""

    DORMANT = "DORMANT"
    GERMINATED = "GERMINATED"
    TRAINING = "TRAINING"
    BLENDING = "BLENDING"
    HOLDING = "HOLDING"
    FOSSILIZED = "FOSSILIZED"
    PRUNED = "PRUNED"
    EMBARGOED = "EMBARGOED"
    RESETTING = "RESETTING"


class LifecycleOp(enum.StrEnum):
    """The operation head of an adaptation command."""

    WAIT = "WAIT"
    GERMINATE = "GERMINATE"
    SET_ALPHA_TARGET = "SET_ALPHA_TARGET"
    ADVANCE = "ADVANCE"
    FOSSILIZE = "FOSSILIZE"
    PRUNE = "PRUNE"


class BlendStyle(enum.StrEnum):
    """How a seed's output is blended into the host."""

    LINEAR = "LINEAR"
    GATED = "GATED"
    RESIDUAL = "RESIDUAL"


class Tempo(enum.StrEnum):
    """How fast a seed moves through its lifecycle."""

    FAST = "FAST"
    STANDARD = "STANDARD"
    SLOW = "SLOW"


class AlphaSpeed(enum.StrEnum):
    """How fast alpha moves towards its target."""

    INSTANT = "INSTANT"
    FAST = "FAST"
    MEDIUM = "MEDIUM"
    SLOW = "SLOW"


class AlphaCurve(enum.StrEnum):
    """The shape of the alpha schedule."""

    LINEAR = "LINEAR"
    COSINE = "COSINE"
    SIGMOID = "SIGMOID"


class FieldOutcome(enum.StrEnum):
    """The verdict of a field report on the decision it observed."""

    SUCCESS = "SUCCESS"
    NEUTRAL = "NEUTRAL"
    REGRESSION = "REGRESSION"
    ABORTED = "ABORTED"


class ActionHeads(Record, frozen=True, kw_only=True):
    """The policy's action heads besides the operation (``None``: head not used)."""

    blueprint: Name | None = None
    style: BlendStyle | None = None
    tempo: Tempo | None = None
    alpha_target: Unit | None = None
    alpha_speed: AlphaSpeed | None = None
    alpha_curve: AlphaCurve | None = None


class DecisionMetadata(Record, frozen=True, kw_only=True):
    """Why and how confidently the policy decided (formerly command annotations)."""

    policy_version: Name
    risk: Unit
    blend: BlendStyle | None
    coverage: Unit
    """Fraction of the policy's input features that were present."""
    reason: Text = ""


class AdaptationCommand(SignedCommand, frozen=True, kw_only=True):
    """A signed decision of Tamiyo for one seed slot."""

    TYPE = "esper.AdaptationCommand"
    VERSION = 1
    SUBSYSTEM = "esper"

    command_id: Name
    target_slot: Name
    target_seed_id: Name | None
    blueprint_id: Name | None
    operation: LifecycleOp
    heads: ActionHeads
    metadata: DecisionMetadata

    def __post_init__(self) -> None:
        if self.operation is LifecycleOp.GERMINATE and self.blueprint_id is None:
            raise ValueError("a GERMINATE command needs a blueprint_id")


class SeedGerminated(Event, frozen=True, kw_only=True):
    """A blueprint kernel was attached to a slot as a new seed."""

    TYPE = "esper.SeedGerminated"
    VERSION = 1
    SUBSYSTEM = "esper"

    slot: Name
    seed_id: Name
    blueprint_id: Name
    kernel_sha256: Sha256 | None
    command_id: Name | None
    epoch: Count


class SeedStageChanged(Event, frozen=True, kw_only=True):
    """A seed moved from one lifecycle stage to another."""

    TYPE = "esper.SeedStageChanged"
    VERSION = 1
    SUBSYSTEM = "esper"

    slot: Name
    seed_id: Name
    from_stage: SeedStage
    to_stage: SeedStage
    alpha: Unit
    epoch: Count
    command_id: Name | None

    def __post_init__(self) -> None:
        if self.from_stage is self.to_stage:
            raise ValueError("from_stage and to_stage must differ")


class SeedGateEvaluated(Event, frozen=True, kw_only=True):
    """A quality gate was checked before a stage transition."""

    TYPE = "esper.SeedGateEvaluated"
    VERSION = 1
    SUBSYSTEM = "esper"

    slot: Name
    seed_id: Name
    gate: Name
    stage: SeedStage
    passed: bool
    reason: Text = ""
    metrics: Metrics
    epoch: Count


class SeedFossilized(Event, frozen=True, kw_only=True):
    """A seed was permanently integrated into the host (terminal success)."""

    TYPE = "esper.SeedFossilized"
    VERSION = 1
    SUBSYSTEM = "esper"

    slot: Name
    seed_id: Name
    final_alpha: Unit
    epoch: Count
    command_id: Name | None


class SeedPruned(Event, frozen=True, kw_only=True):
    """A seed was removed for failing or underperforming."""

    TYPE = "esper.SeedPruned"
    VERSION = 1
    SUBSYSTEM = "esper"

    slot: Name
    seed_id: Name
    stage: SeedStage
    """The stage the seed was in when pruned."""
    reason: Text
    epoch: Count
    command_id: Name | None


class FieldReportDelta(Record, frozen=True, kw_only=True):
    """What changed over the observation window after a command."""

    loss_delta: Finite
    accuracy_delta: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
    """Change of accuracy as a fraction, in [-1, 1]."""
    latency_ms: NonNegative
    observation_window_epochs: PositiveCount


class FieldReport(Event, frozen=True, kw_only=True):
    """The judged outcome of one adaptation command."""

    TYPE = "esper.FieldReport"
    VERSION = 1
    SUBSYSTEM = "esper"

    command_id: Name
    outcome: FieldOutcome
    delta: FieldReportDelta
    extra_metrics: Metrics


class TrainingMetrics(Record, frozen=True, kw_only=True):
    """Tolaria's training metrics at one step (``accuracy`` is a fraction)."""

    epoch: Count
    step: Count
    loss: Finite
    accuracy: Unit
    grad_norm: NonNegative
    learning_rate: NonNegative
    throughput_samples_per_s: NonNegative | None


class SystemStateReported(Event, frozen=True, kw_only=True):
    """The training state Tamiyo decides on: metrics and every slot's stage."""

    TYPE = "esper.SystemStateReported"
    VERSION = 1
    SUBSYSTEM = "esper"

    metrics: TrainingMetrics
    seed_stages: dict[Name, SeedStage]
    """Stage per slot id."""


class KernelRegistered(Event, frozen=True, kw_only=True):
    """Urza stored a compiled blueprint kernel."""

    TYPE = "esper.KernelRegistered"
    VERSION = 1
    SUBSYSTEM = "esper"

    blueprint_id: Name
    artifact_sha256: Sha256
    input_shape: Shape
    output_shape: Shape
    dtype: Name
    devices: list[Name]
    """Device kinds the kernel runs on, e.g. ``["cpu", "cuda"]``."""
    min_memory_mb: NonNegative | None = None


class RollbackPerformed(Event, frozen=True, kw_only=True):
    """Tolaria restored the host to a checkpoint."""

    TYPE = "esper.RollbackPerformed"
    VERSION = 1
    SUBSYSTEM = "esper"

    checkpoint_id: Name
    epoch: Count
    reason: Text
    restore_latency_ms: NonNegative
    deadline_exceeded: bool
    command_id: Name | None = None


class PolicyUpdateMetrics(Record, frozen=True, kw_only=True):
    """The losses and diagnostics of one policy update."""

    policy_loss: Finite
    value_loss: Finite
    entropy: Finite
    approx_kl: Finite
    clip_fraction: Unit
    explained_variance: Finite


class PolicyUpdated(Event, frozen=True, kw_only=True):
    """Simic trained a new Tamiyo policy version from recorded decisions."""

    TYPE = "esper.PolicyUpdated"
    VERSION = 1
    SUBSYSTEM = "esper"

    policy_version: Name
    previous_version: Name | None
    checkpoint_sha256: Sha256
    transitions: Count
    """How many (state, action, reward, next state) transitions the update used."""
    metrics: PolicyUpdateMetrics
    hyperparameters: Params


class EpisodeEnded(Event, frozen=True, kw_only=True):
    """A training episode ended with its outcome."""

    TYPE = "esper.EpisodeEnded"
    VERSION = 1
    SUBSYSTEM = "esper"

    episode: Count
    steps: Count
    final_accuracy: Unit
    episode_reward: Finite
    success: bool
    truncated: bool


class SafetyTrigger(enum.StrEnum):
    """Why Kasmina went conservative (issue #16)."""

    RISK = "RISK"
    """A command's ``DecisionMetadata.risk`` was above the threshold."""
    TAMIYO_TIMEOUT = "TAMIYO_TIMEOUT"
    """The policy took longer than its decision budget."""
    CRITICAL_HEALTH = "CRITICAL_HEALTH"
    """The latest telemetry was CRITICAL (e.g. a rollback)."""


class ConservativeModeEntered(Event, frozen=True, kw_only=True):
    """Kasmina refuses growth until ``until_epoch`` (inclusive) and says why."""

    TYPE = "esper.ConservativeModeEntered"
    VERSION = 1
    SUBSYSTEM = "esper"

    trigger: SafetyTrigger
    epoch: Count
    until_epoch: Count
    detail: Text
    command_id: Name | None = None


class GrowthRefused(Event, frozen=True, kw_only=True):
    """A growth command (GERMINATE) was verified but not carried out: conservative mode."""

    TYPE = "esper.GrowthRefused"
    VERSION = 1
    SUBSYSTEM = "esper"

    command_id: Name
    slot: Name
    trigger: SafetyTrigger
    epoch: Count
    detail: Text


class EmergencyHalt(Event, frozen=True, kw_only=True):
    """Training stopped before its last epoch (seed 004's L4 halt): the episode is truncated."""

    TYPE = "esper.EmergencyHalt"
    VERSION = 1
    SUBSYSTEM = "esper"

    epoch: Count
    reason: Text
    rollbacks_in_a_row: Count


class PolicyScoreCI(Record, frozen=True, kw_only=True):
    """One figure of one policy over the evaluation seeds: mean and bootstrap 95 % CI."""

    mean: Finite
    ci_low: Finite
    ci_high: Finite


class PolicyEvaluation(Record, frozen=True, kw_only=True):
    """What one policy scored on the evaluation's seeds."""

    policy: Name
    checkpoint_sha256: Sha256 | None = None
    runs: Count
    final_accuracy: PolicyScoreCI
    params_added: PolicyScoreCI
    reward: PolicyScoreCI
    metric: PolicyScoreCI
    """The evaluation metric: final accuracy − parameter rent of the parameters kept."""
    off_policy_estimate: Finite | None = None
    """The reward estimated from the recorded transitions alone (learned policies)."""


class PolicyDifference(Record, frozen=True, kw_only=True):
    """``policy − baseline`` of the metric, paired by seed, with its bootstrap 95 % CI."""

    policy: Name
    baseline: Name
    mean: Finite
    ci_low: Finite
    ci_high: Finite
    n: Count


class EvaluationCompleted(Event, frozen=True, kw_only=True):
    """``esper evaluate`` ran policies on held-out seeds (a result that replays exactly)."""

    TYPE = "esper.EvaluationCompleted"
    VERSION = 1
    SUBSYSTEM = "esper"

    evaluation_id: Name
    task: Name
    seeds: list[Count]
    epochs: PositiveCount
    reward_version: PositiveCount
    bootstrap_seed: Count
    bootstrap_resamples: PositiveCount
    policies: list[PolicyEvaluation]
    differences: list[PolicyDifference]
    run_ids: dict[Name, list[Name]]
