"""Tamiyo's action space: every legal (operation, slot, blueprint) in a state, in a fixed order.

One definition shared by the random baseline, the graph policy (its output
layout), Simic's trainer and the off-policy estimate (which recomputes the
behaviour policy's probabilities from the recorded state alone, so no
propensity has to be stored in the log).

Order: ``WAIT`` first, then per slot (sorted by name): ``GERMINATE`` × each
blueprint (in the given order) when the slot is free (DORMANT or PRUNED),
``FOSSILIZE`` when it is HOLDING, ``PRUNE`` when a seed is alive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labledger.events.esper import LifecycleOp, SeedStage

FREE = (SeedStage.DORMANT.value, SeedStage.PRUNED.value)
ALIVE = tuple(
    s.value
    for s in (SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING)
)
SLOT_OPS = ("GERMINATE", "FOSSILIZE", "PRUNE")
"""Per-slot operations of the graph policy; a GERMINATE is one action per blueprint."""

RANDOM_WAIT = 0.5
"""The random baseline waits with this probability (when anything else is legal)."""


@dataclass(frozen=True)
class Action:
    """One action of the space."""

    op: LifecycleOp
    slot: str | None
    blueprint: str | None = None

    @property
    def key(self) -> str:
        """A stable name: ``WAIT``, ``GERMINATE:r0:wide_mlp``, ``PRUNE:r1``."""
        return ":".join(p for p in (self.op.value, self.slot, self.blueprint) if p)


def legal(stages: Mapping[str, str], blueprints: Sequence[str]) -> list[Action]:
    """The legal actions given each slot's stage (values of ``SeedStage``), in order."""
    out = [Action(LifecycleOp.WAIT, None)]
    for slot, stage in sorted(stages.items()):
        if stage in FREE:
            out += [Action(LifecycleOp.GERMINATE, slot, bp) for bp in blueprints]
        if stage == SeedStage.HOLDING.value:
            out.append(Action(LifecycleOp.FOSSILIZE, slot))
        if stage in ALIVE:
            out.append(Action(LifecycleOp.PRUNE, slot))
    return out


def exploring(actions: Sequence[Action]) -> list[Action]:
    """The actions the random baseline draws from: all but ``PRUNE``.

    A random prune a few epochs after a random germination would cut the seed
    before its field report could see what it is worth, and the report's
    credit would go to the wrong decision; so random only grows and freezes.
    """
    return [a for a in actions if a.op is not LifecycleOp.PRUNE]


def random_probabilities(actions: Sequence[Action]) -> list[float]:
    """The random baseline's probability of each action (``WAIT`` first; :data:`RANDOM_WAIT`)."""
    if len(actions) == 1:
        return [1.0]
    rest = (1.0 - RANDOM_WAIT) / (len(actions) - 1)
    return [RANDOM_WAIT, *([rest] * (len(actions) - 1))]


def as_action(op: str, slot: str | None, blueprint: str | None) -> Action:
    """The action a recorded command took (``WAIT`` has no slot in the space)."""
    operation = LifecycleOp(op)
    if operation is LifecycleOp.WAIT:
        return Action(operation, None)
    return Action(operation, slot, blueprint if operation is LifecycleOp.GERMINATE else None)


def grown(stages: Mapping[str, str]) -> bool:
    """Whether any slot ever left DORMANT (a once run has had its germination)."""
    return any(stage != SeedStage.DORMANT.value for stage in stages.values())


def once_action(stages: Mapping[str, str], epoch: int, at: int, grow: Action) -> Action:
    """What the once behaviour does: ``grow`` at epoch ``at``, FOSSILIZE what HOLDS, else WAIT."""
    for slot, stage in sorted(stages.items()):
        if stage == SeedStage.HOLDING.value:
            return Action(LifecycleOp.FOSSILIZE, slot)
    if epoch == at and not grown(stages):
        return grow
    return Action(LifecycleOp.WAIT, None)


def once_probabilities(
    legal: Sequence[Action], stages: Mapping[str, str], epoch: int, last_epoch: int
) -> list[float]:
    """The once behaviour's probability of each of ``legal`` in a state, from the state alone.

    Before its germination, the chance to germinate at ``epoch`` is the hazard
    ``1 / (last_epoch + 1 − epoch)`` of a uniform epoch, split evenly over the
    slot × blueprint choices; afterwards it is deterministic.
    """
    grows = [a for a in legal if a.op is LifecycleOp.GERMINATE]
    holding = [a for a in legal if a.op is LifecycleOp.FOSSILIZE]
    if holding:
        return [1.0 if a == holding[0] else 0.0 for a in legal]
    if grown(stages) or epoch > last_epoch or not grows:
        return [1.0 if a.op is LifecycleOp.WAIT else 0.0 for a in legal]
    hazard = 1.0 / (last_epoch + 1 - epoch)
    return [
        1.0 - hazard if a.op is LifecycleOp.WAIT else (hazard / len(grows) if a in grows else 0.0)
        for a in legal
    ]
