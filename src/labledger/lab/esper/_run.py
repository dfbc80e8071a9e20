"""The state of one Esper session in memory, its log appends, and its checkpoints.

Private to ``session``: the loop there decides *when*; this module holds *what*
a session is (host, kernels, cache, slots, pending reports, cursors) and how
it is written — one stream per run through a :class:`~labledger.lab.runs.RunLog`
(exact expected versions), event ids ``uuid5(run/attempt/epoch/kind/n)``, and
checkpoints as content-addressed blobs (:mod:`labledger.lab.esper.tolaria`
format: raw tensor bytes + JSON).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import torch

from labledger.events import Event
from labledger.events.esper import SeedStage, TrainingMetrics
from labledger.events.telemetry import HealthStatus, TelemetryPriority
from labledger.lab.esper import tolaria
from labledger.lab.esper.field_reports import PendingReport
from labledger.lab.esper.kasmina import SlotState
from labledger.lab.esper.policy import LiveState, Policy
from labledger.lab.esper.tamiyo import HeuristicPolicy
from labledger.lab.esper.urza import Kernel, KernelCache
from labledger.lab.runs import RunKind, RunLog
from labledger.security import KeyRing
from labledger.store import EventStore, NewEvent

KASMINA, TAMIYO, TOLARIA = "esper.kasmina", "esper.tamiyo", "esper.tolaria"
ESPER_RUNS = RunKind("esper", uuid.UUID("0b5c3f4e-7a41-4d8e-9e51-5d7f3c1a2e90"), actor=TOLARIA)
"""The run's own stream ``esper-<run>`` (everything but the commands); the UUIDv5
namespace of Esper event ids is fixed forever."""
Progress = Callable[[int, int], None]


def commands_stream(run_id: str) -> str:
    """Where Tamiyo's signed commands go (through the store's gate)."""
    return f"esper-commands-{run_id}"


class SessionState(msgspec.Struct, kw_only=True):
    """Everything besides tensors a session needs to continue (the checkpoint's JSON part)."""

    epoch_done: int = -1
    attempt: int = 0
    heartbeat_seq: int = -1
    """``attempt`` and ``heartbeat_seq`` are the RunLog's, copied when a checkpoint is
    saved: the checkpoint format keeps them (a resume starts a new attempt anyway)."""
    slots: dict[str, SlotState] = msgspec.field(default_factory=dict)
    pending: list[PendingReport] = msgspec.field(default_factory=list)
    nonces_seen: list[str] = msgspec.field(default_factory=list)
    commands_cursor: int = 0
    metrics: TrainingMetrics | None = None
    last_good_loss: float | None = None
    steps: int = 0
    seeds_made: int = 0
    policy_history: dict[int, float] = msgspec.field(default_factory=dict)
    policy_germinated: int = 0
    accuracy: dict[int, float] = msgspec.field(default_factory=dict)
    rewards: float = 0.0
    conservative_until: int = -1
    """Kasmina refuses growth up to this epoch (``esper.ConservativeModeEntered``)."""
    conservative_trigger: str | None = None
    slow_decision_s: float | None = None
    """How long the last Tamiyo decision took when it passed its budget (a timeout)."""
    rollbacks_in_a_row: int = 0
    halted: bool = False


@dataclass
class Tally:
    """Counts for the closing summary."""

    commands: int = 0
    accepted: int = 0
    rejected_by_kasmina: int = 0
    rejected_by_gate: int = 0
    reports: int = 0
    rollbacks: int = 0
    kernel_failures: int = 0


@dataclass
class Run:
    """One live session (see the module docstring)."""

    log: RunLog
    config: Any
    """The session's ``SessionConfig`` (typed in ``session``; kept loose to avoid a cycle)."""
    ring: KeyRing
    policy: Policy
    host: tolaria.Host
    data: tolaria.Data
    cache: KernelCache
    kernels: dict[str, Kernel]
    state: SessionState
    progress: Progress | None = None
    tally: Tally = field(default_factory=Tally)
    last_good: dict[str, torch.Tensor] = field(default_factory=dict)
    health: HealthStatus = HealthStatus.HEALTHY
    priority: TelemetryPriority = TelemetryPriority.NORMAL

    @property
    def store(self) -> EventStore:
        return self.log.store

    @property
    def run_id(self) -> str:
        return self.log.run_id

    def name(self, epoch: int, kind: str, n: int = 0) -> tuple[object, ...]:
        """An event's name within the run: ``(attempt, epoch, kind, n)``."""
        return (self.log.attempt, epoch, kind, n)

    def new(
        self,
        event: Event,
        epoch: int,
        kind: str,
        n: int = 0,
        *,
        actor: str = TOLARIA,
        metadata: bytes = b"{}",
    ) -> NewEvent:
        """``event`` with its deterministic id, the run id and actor."""
        return self.log.new(event, *self.name(epoch, kind, n), actor=actor, metadata=metadata)

    def append(self, events: list[NewEvent]) -> None:
        """Append at the exact next version (see :meth:`RunLog.append`)."""
        self.log.append(events)

    def live(self) -> LiveState:
        """Tamiyo's view: the latest metrics, every touched slot, the latest health."""
        slots = {
            name: (s.stage, s.alpha)
            for name, s in sorted(self.state.slots.items())
            if s.seed_id is not None
        }
        return LiveState(
            metrics=self.state.metrics,
            slots=slots,
            health=self.health,
            priority=self.priority,
            slot_names=tuple(sorted(self.state.slots)),
        )

    def save_checkpoint(self) -> str:
        """Store the host (with seeds) and the session state as a blob; its sha."""
        if isinstance(self.policy, HeuristicPolicy):
            self.state.policy_history = dict(self.policy.history)
            self.state.policy_germinated = self.policy.germinated
        self.state.attempt, self.state.heartbeat_seq = self.log.attempt, self.log.heartbeat_seq
        tensors = dict(self.host.state_dict())
        doc = msgspec.to_builtins(self.state)
        return self.store.put_blob(tolaria.encode_checkpoint(tensors, doc))

    def restore(self, data: bytes) -> None:
        """Rebuild slots, seeds and parameters from checkpoint bytes."""
        tensors, doc = tolaria.decode_checkpoint(data)
        self.state = msgspec.convert(doc, SessionState)
        for name, s in self.state.slots.items():
            slot = self.host.slot(name)
            if s.kernel_sha is not None and s.stage not in (SeedStage.PRUNED, SeedStage.DORMANT):
                slot.attach(self.cache.instantiate(s.kernel_sha))
                set_mode(slot, s)
        self.host.load_state_dict(tensors)
        self.last_good = {k: v.clone() for k, v in tensors.items()}
        if isinstance(self.policy, HeuristicPolicy):
            self.policy.history = dict(self.state.policy_history)
            self.policy.germinated = self.state.policy_germinated

    def remember_good(self) -> None:
        """Keep the current parameters as the rollback target."""
        self.last_good = {k: v.detach().clone() for k, v in self.host.state_dict().items()}

    def roll_back(self) -> None:
        """Restore the last good parameters (those of tensors still in the host)."""
        tolaria.restore(self.host, self.last_good)


def set_mode(slot: Any, s: SlotState) -> None:
    """The torch slot's mode for a lifecycle stage."""
    match s.stage:
        case SeedStage.TRAINING:
            slot.mode, slot.alpha = "probe", 0.0
        case SeedStage.BLENDING | SeedStage.HOLDING | SeedStage.FOSSILIZED:
            slot.mode, slot.alpha = "blend", s.alpha
        case SeedStage.PRUNED | SeedStage.DORMANT:
            slot.detach()
        case _:
            slot.mode, slot.alpha = "identity", 0.0
