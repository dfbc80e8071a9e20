"""Tamiyo: the policy that decides, and the signing of its decisions into commands.

:class:`HeuristicPolicy` implements :class:`labledger.lab.esper.policy.Policy`
with rules over the live state (training metrics, seed stages, health):

1. Health UNHEALTHY or priority CRITICAL (a rollback just happened): wait.
2. A slot in HOLDING: fossilize it if the last epoch did not lose accuracy,
   else prune it.
3. No seed alive, the host trained ``warmup`` epochs, and its accuracy gain
   over the last epoch is below ``plateau`` (or ``patience`` epochs passed):
   germinate the next blueprint (round robin) in the first free slot.
4. Otherwise: nothing (no command).

:func:`to_command` turns a decision into a signed ``esper.AdaptationCommand``
carrying its ``DecisionMetadata``; :func:`load_policy` resolves ``heuristic``
or ``ckpt:SHA`` (the learned policy, imported lazily).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from labledger.errors import UsageError
from labledger.events.esper import (
    ActionHeads,
    AdaptationCommand,
    AlphaCurve,
    AlphaSpeed,
    BlendStyle,
    DecisionMetadata,
    LifecycleOp,
    SeedStage,
    Tempo,
)
from labledger.events.security import CommandSecurity
from labledger.events.telemetry import HealthStatus, TelemetryPriority
from labledger.lab.esper.policy import Decision, LiveState, Policy
from labledger.security import KeyRing, sign
from labledger.store import EventStore

HEURISTIC_VERSION = "tamiyo-heuristic-1"
ALIVE = (SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING)


@dataclass
class HeuristicPolicy:
    """The rule-based Tamiyo (see the module docstring)."""

    blueprints: tuple[str, ...] = ("residual_mlp", "low_rank")
    warmup: int = 1
    plateau: float = 0.02
    patience: int = 2
    version: str = HEURISTIC_VERSION
    history: dict[int, float] = field(default_factory=dict)
    """Validation accuracy per epoch seen (with ``germinated``, the policy's memory)."""
    germinated: int = 0

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """The next decision, or None (see the module docstring)."""
        m = state.metrics
        if m is None:
            return None
        self.history[m.epoch] = m.accuracy
        if state.health is HealthStatus.UNHEALTHY or state.priority is TelemetryPriority.CRITICAL:
            return None
        stages = {s: state.slots.get(s, (SeedStage.DORMANT, 0.0))[0] for s in slots}
        previous = self.history.get(m.epoch - 1)
        gain = 1.0 if previous is None else m.accuracy - previous
        for slot, stage in stages.items():
            if stage is SeedStage.HOLDING:
                op = LifecycleOp.FOSSILIZE if gain >= 0 else LifecycleOp.PRUNE
                why = f"seed held; last accuracy gain {gain:+.4f}"
                return _decision(op, slot, None, why, self.version, risk=0.1)
        if any(stage in ALIVE for stage in stages.values()):
            return None
        free = [s for s, stage in stages.items() if stage in (SeedStage.DORMANT, SeedStage.PRUNED)]
        trained = m.epoch + 1
        if not free or trained < self.warmup or (gain >= self.plateau and trained < self.patience):
            return None
        blueprint = self.blueprints[self.germinated % len(self.blueprints)]
        self.germinated += 1
        why = f"accuracy gain {gain:+.4f} after {trained} epochs (plateau {self.plateau})"
        return _decision(LifecycleOp.GERMINATE, free[0], blueprint, why, self.version, risk=0.3)


def _decision(
    op: LifecycleOp, slot: str, blueprint: str | None, reason: str, version: str, *, risk: float
) -> Decision:
    heads = ActionHeads(
        blueprint=blueprint,
        style=BlendStyle.RESIDUAL if blueprint else None,
        tempo=Tempo.FAST if blueprint else None,
        alpha_target=1.0 if blueprint else None,
        alpha_speed=AlphaSpeed.FAST if blueprint else None,
        alpha_curve=AlphaCurve.LINEAR if blueprint else None,
    )
    meta = DecisionMetadata(
        policy_version=version, risk=risk, blend=heads.style, coverage=1.0, reason=reason
    )
    return Decision(operation=op, slot=slot, blueprint_id=blueprint, heads=heads, metadata=meta)


def to_command(
    decision: Decision,
    command_id: str,
    seed_id: str | None,
    ring: KeyRing,
    *,
    now: dt.datetime | None = None,
) -> AdaptationCommand:
    """The decision as an ``esper.AdaptationCommand`` signed with the ring's active key."""
    unsigned = AdaptationCommand(
        command_id=command_id,
        target_slot=decision.slot,
        target_seed_id=seed_id,
        blueprint_id=decision.blueprint_id,
        operation=decision.operation,
        heads=decision.heads,
        metadata=decision.metadata,
        security=CommandSecurity(
            signature="",
            nonce="unsigned",
            key_id="unsigned",
            issued_at=dt.datetime.now(dt.UTC),
            freshness_window=dt.timedelta(seconds=60),
        ),
    )
    signed = sign(unsigned, ring, now=now)
    assert isinstance(signed, AdaptationCommand)
    return signed


POLICY_SPECS = (
    "'heuristic', 'noop', 'random', 'once[:LAST]', 'fixed:BLUEPRINT:SLOT[:EPOCH]',"
    " 'learned:SHA256' (graph policy) or 'ckpt:SHA256'"
)


def load_policy(spec: str, store: EventStore, blueprints: tuple[str, ...], seed: int = 0) -> Policy:
    """A policy by spec: ``heuristic``, ``noop``, ``random`` (seeded by the run's ``seed``),
    ``once[:LAST]`` (grow once at a random epoch ≤ LAST, the clean behaviour of a collect),
    ``fixed:BLUEPRINT:SLOT[:EPOCH]`` (grow once at EPOCH, default 0, a hand-written reference),
    ``learned:SHA`` (a graph policy checkpoint blob) or ``ckpt:SHA`` (the older MLP policy).

    Raises:
        UsageError: any other spec.
    """
    if spec == "heuristic":
        return HeuristicPolicy(blueprints=blueprints)
    if spec in ("noop", "random"):
        from labledger.lab.esper import baselines

        if spec == "noop":
            return baselines.NoopPolicy()
        return baselines.RandomPolicy(seed=seed, blueprints=blueprints)
    if spec == "once" or (spec.startswith("once:") and spec.removeprefix("once:").isdigit()):
        from labledger.lab.esper import baselines

        last = int(spec.removeprefix("once:")) if ":" in spec else baselines.ONCE_LAST_EPOCH
        return baselines.OncePolicy(seed=seed, blueprints=blueprints, last_epoch=last)
    if spec.startswith("fixed:") and spec.count(":") in (2, 3):
        from labledger.lab.esper import baselines, tolaria

        _, blueprint, slot, *at = spec.split(":")
        epoch = at[0] if at else "0"
        if blueprint in blueprints and slot in tolaria.SLOT_NAMES and epoch.isdigit():
            return baselines.FixedPolicy(blueprint=blueprint, slot=slot, epoch=int(epoch))
    if spec.startswith("learned:") and len(spec) > 8:
        from labledger.lab.esper import tamiyo_graph

        return tamiyo_graph.load_policy(store, spec.removeprefix("learned:"))
    if spec.startswith("ckpt:") and len(spec) > 5:
        from labledger.lab.esper import tamiyo_learned  # the learned policy's own module

        policy: Policy = tamiyo_learned.load_policy(store, spec.removeprefix("ckpt:"))
        return policy
    raise UsageError(f"--policy {spec!r}: use {POLICY_SPECS}")
