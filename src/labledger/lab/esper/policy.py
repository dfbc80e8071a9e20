"""What Tamiyo's policies see and say: the shared contract of the heuristic and learned policies.

The observation is *exactly* the training set's state features
(:data:`labledger.projections.esper_training.FEATURE_NAMES`), computed by the
same function the projection uses, so a policy trained by Simic on the
exported training set sees at run time what it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Protocol

import msgspec

from labledger.events.esper import (
    ActionHeads,
    DecisionMetadata,
    LifecycleOp,
    SeedStage,
    TrainingMetrics,
)
from labledger.events.telemetry import HealthStatus, TelemetryPriority
from labledger.projections.esper_training import FEATURE_NAMES, observation


@dataclass
class LiveState:
    """Tamiyo's view of one run, kept up to date from the events it sees."""

    metrics: TrainingMetrics | None = None
    slots: dict[str, tuple[SeedStage, float]] = field(default_factory=dict)
    """slot → (stage, alpha) for every slot a lifecycle event has touched."""
    health: HealthStatus | None = None
    priority: TelemetryPriority | None = None
    slot_names: tuple[str, ...] = ()
    """Every slot of the host from the run's start (``slots.count.*`` counts them all)."""


def features(state: LiveState, slot: str) -> list[float]:
    """The observation of ``slot`` (``FEATURE_NAMES`` order), as the training set computes it."""
    m = state.metrics
    run = SimpleNamespace(
        state_position=None if m is None else 1,
        epoch=0 if m is None else m.epoch,
        step=0 if m is None else m.step,
        loss=0.0 if m is None else m.loss,
        accuracy=0.0 if m is None else m.accuracy,
        grad_norm=0.0 if m is None else m.grad_norm,
        learning_rate=0.0 if m is None else m.learning_rate,
        slot_names=msgspec.json.encode(sorted(state.slot_names)),
        health=None if state.health is None else state.health.value,
        priority=None if state.priority is None else state.priority.value,
    )
    slots = [
        SimpleNamespace(slot=name, stage=stage.value, alpha=alpha)
        for name, (stage, alpha) in sorted(state.slots.items())
    ]
    return observation(run, slots, slot)  # type: ignore[arg-type]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """One policy decision for one slot, before it is signed into an AdaptationCommand."""

    operation: LifecycleOp
    slot: str
    blueprint_id: str | None
    heads: ActionHeads
    metadata: DecisionMetadata


class Policy(Protocol):
    """A Tamiyo policy: heuristic (rules) or learned (torch, from a checkpoint blob)."""

    version: str

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """The next decision given the run's state and its slot names; None: nothing to do."""
        ...


__all__ = ["FEATURE_NAMES", "Decision", "LiveState", "Policy", "features"]
