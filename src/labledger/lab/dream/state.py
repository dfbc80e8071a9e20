"""A D-REAM run as state folded from its stream, and the pure rules around it.

A run is the stream ``dream-<run_id>`` (:data:`DREAM_RUNS`); every event carries
``run_id``. What a (re)starting runner needs to know is a function of that
stream alone: the lifecycle (started, attempt, heartbeats, finished) is folded
by :class:`~labledger.lab.runs.RunLog`, and the rest — the run's configuration,
the trials and cap breaches recorded, the generations completed — by
:meth:`DreamRunState.apply`. The runner then skips every trial already in the
log, which is how a resumed run neither loses nor repeats one.

Identities are deterministic. A trial is named by (run, generation,
candidate, regime, trial number) and its event id is the UUIDv5 of that name
(:meth:`RunKind.event_id <labledger.lab.runs.RunKind.event_id>`), so
re-appending an in-doubt batch (an append whose acknowledgement was lost)
returns ``already_appended`` instead of writing a second copy, and a second
writer of the same trial is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from labledger.events import Event
from labledger.events.dream import (
    CapMetric,
    GenerationCompleted,
    Regime,
    SafetyCapExceeded,
    TrialKpis,
    TrialRecorded,
)
from labledger.events.runs import RunResumed, RunStarted
from labledger.events.typed import Typed
from labledger.lab.dream.config import Cap, DomainCaps
from labledger.lab.runs import RunKind

DREAM_RUNS = RunKind("dream", uuid.UUID("6c1e1f0e-5d2a-4c59-9a55-2f1d0b7a6d31"))
"""Streams ``dream-<run_id>``; the UUIDv5 namespace of D-REAM event ids is fixed forever."""


def cand_id(run_id: str, generation: int, index: int) -> str:
    """Candidate ids are unique per domain across runs (the read models key trials by them)."""
    return f"{run_id}.gen{generation}_ind{index}"


class TrialKey(NamedTuple):
    generation: int
    cand_id: str
    regime: str
    trial: int


class DreamRunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What a run was asked to do; stored flat in its ``run.RunStarted.config``."""

    domain: str
    generations: int
    population: int
    trials: int
    seed: int
    retries: int
    timeout_s: float
    heartbeat_every: int
    regimes: list[str]
    budgets_ms: dict[str, int]
    """Per regime, the trial budget: ``round(budget_ms · scale)``, at least 1."""
    regimes_file: str
    caps_file: str
    """``"shipped"`` or the path the user passed."""
    caps: dict[str, float] = msgspec.field(default_factory=dict)
    """The domain's caps in force (metric → max), so the packs can say which went unchecked."""
    units: dict[str, str] = msgspec.field(default_factory=dict)
    """Per KPI its unit; ``perf`` in the domain's unit (``regimes.yaml``)."""
    min_requests: int = 1

    def total_trials(self) -> int:
        """Trials the run measures when no candidate is stopped by a cap."""
        return self.generations * self.population * len(self.regimes) * self.trials


def budgets_ms(budget_ms: int, scales: dict[str, float]) -> dict[str, int]:
    """Per regime its trial budget in milliseconds: ``max(1, round(budget_ms · scale))``."""
    return {regime: max(1, round(budget_ms * scale)) for regime, scale in scales.items()}


class DreamRunState(msgspec.Struct, kw_only=True):
    """What a D-REAM run recorded besides its lifecycle, folded from its stream."""

    config: DreamRunConfig | None = None
    trials: dict[TrialKey, tuple[int, TrialKpis]] = msgspec.field(default_factory=dict)
    """Per trial: the position it was recorded at, and its KPIs."""
    caps: dict[str, int] = msgspec.field(default_factory=dict)
    """Per capped candidate, the position of its first breach."""
    completed: dict[int, GenerationCompleted] = msgspec.field(default_factory=dict)

    def apply(self, item: Typed[Event]) -> None:
        """Fold one event of the run's stream, in order.

        A ``run.RunResumed`` drops the trials and cap breaches recorded after
        its checkpoint (as the read models do).
        """
        event, position = item.event, item.position
        match event:
            case RunStarted():
                self.config = msgspec.convert(event.config, DreamRunConfig)
            case TrialRecorded():
                key = TrialKey(event.generation, event.cand_id, event.regime.value, event.trial)
                self.trials[key] = (position, event.kpis)
            case SafetyCapExceeded():
                self.caps.setdefault(event.cand_id, position)
            case GenerationCompleted():
                self.completed[event.generation] = event
            case RunResumed():
                after = event.checkpoint_position
                self.trials = {k: v for k, v in self.trials.items() if v[0] <= after}
                self.caps = {k: v for k, v in self.caps.items() if v <= after}
            case _:
                pass


class Breach(NamedTuple):
    metric: CapMetric
    cap: Cap
    observed: float


def observed(kpis: TrialKpis, metric: CapMetric) -> float | None:
    """The trial's value of a capped metric; ``error_rate`` is ``errors / requests``."""
    if metric is CapMetric.ERROR_RATE:
        if kpis.errors is None or not kpis.requests:
            return None
        return kpis.errors / kpis.requests
    value: float | None = getattr(kpis, metric.value)
    return value


def breaches(kpis: TrialKpis, caps: DomainCaps) -> list[Breach]:
    """The caps ``kpis`` exceed (``observed > max``); an absent KPI exceeds nothing."""
    found = []
    for metric, cap in caps.items():
        value = observed(kpis, metric)
        if value is not None and value > cap.max:
            found.append(Breach(metric, cap, float(value)))
    return found


def trial_plan(regimes: Iterable[str], trials: int) -> list[tuple[str, int]]:
    """One candidate's (regime, trial) order: every trial of a regime, regime by regime."""
    return [(regime, t) for regime in regimes for t in range(trials)]


def regime_names() -> list[str]:
    """The regimes in pack order (idle, normal, stress, mixed)."""
    return [r.value for r in Regime]
