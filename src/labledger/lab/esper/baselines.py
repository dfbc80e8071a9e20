"""The baseline Tamiyos an evaluation compares against: do nothing, act at random, grow once.

``noop`` never issues a command (the host trains alone). ``random`` issues
one command every epoch, drawn from :mod:`labledger.lab.esper.actions` with a
generator seeded by the run's seed, so a random run replays exactly; waiting
is an explicit ``WAIT`` command, which makes it the behaviour policy of
``esper collect`` too (its decisions, waits included, become transitions).
``fixed:BLUEPRINT:SLOT`` is a hand-written reference (issue #16): germinate
``BLUEPRINT`` in ``SLOT`` at the first decision, fossilize it once HOLDING,
nothing else — what a learned policy has to match at least.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from labledger.events.esper import (
    ActionHeads,
    AlphaCurve,
    AlphaSpeed,
    BlendStyle,
    DecisionMetadata,
    LifecycleOp,
    SeedStage,
    Tempo,
)
from labledger.lab.esper import actions
from labledger.lab.esper.policy import Decision, LiveState

NOOP_VERSION = "tamiyo-noop-1"
RANDOM_VERSION = "tamiyo-random-1"
FIXED_VERSION = "tamiyo-fixed-1"


@dataclass
class NoopPolicy:
    """Never acts."""

    version: str = NOOP_VERSION

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """Nothing, ever."""
        return None


def stages_of(state: LiveState, slots: list[str]) -> dict[str, str]:
    """Each slot's stage value (untouched slots are DORMANT)."""
    return {s: state.slots.get(s, (SeedStage.DORMANT, 0.0))[0].value for s in slots}


def decision(action: actions.Action, version: str, *, risk: float, reason: str) -> Decision:
    """A decision carrying out ``action`` with the default heads (fast tempo, fast linear blend)."""
    grow = action.op is LifecycleOp.GERMINATE
    heads = ActionHeads(
        blueprint=action.blueprint,
        style=BlendStyle.RESIDUAL if grow else None,
        tempo=Tempo.FAST if grow else None,
        alpha_target=1.0 if grow else None,
        alpha_speed=AlphaSpeed.FAST if grow else None,
        alpha_curve=AlphaCurve.LINEAR if grow else None,
    )
    meta = DecisionMetadata(
        policy_version=version, risk=risk, blend=heads.style, coverage=1.0, reason=reason
    )
    # WAIT names a slot only because the command needs one; the first is as good as any
    slot = action.slot or "r0"
    return Decision(
        operation=action.op, slot=slot, blueprint_id=action.blueprint, heads=heads, metadata=meta
    )


@dataclass
class RandomPolicy:
    """Uniform over the legal growth actions (no PRUNE), WAIT with :data:`actions.RANDOM_WAIT`."""

    seed: int
    blueprints: tuple[str, ...]
    version: str = RANDOM_VERSION

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """One draw per epoch (after the first metrics), from a generator of (seed, epoch).

        Stateless between epochs, so a resumed run draws what an uninterrupted one would.
        """
        if state.metrics is None:
            return None
        rng = random.Random(f"tamiyo-random/{self.seed}/{state.metrics.epoch}")
        legal = actions.exploring(actions.legal(stages_of(state, slots), self.blueprints))
        probs = actions.random_probabilities(legal)
        pick = rng.choices(range(len(legal)), weights=probs)[0]
        return decision(legal[pick], self.version, risk=0.5, reason=f"random: p={probs[pick]:.4f}")


@dataclass
class FixedPolicy:
    """Germinates ``blueprint`` in ``slot`` at epoch 0, fossilizes what is HOLDING, else waits."""

    blueprint: str
    slot: str
    version: str = FIXED_VERSION

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """The one germination at epoch 0; a FOSSILIZE for a HOLDING seed; otherwise nothing."""
        if state.metrics is None:
            return None
        stages = stages_of(state, slots)
        if state.metrics.epoch == 0 and stages.get(self.slot) == SeedStage.DORMANT.value:
            grow = actions.Action(LifecycleOp.GERMINATE, self.slot, self.blueprint)
            return decision(grow, self.version, risk=0.1, reason="fixed: grow once")
        for slot, stage in stages.items():
            if stage == SeedStage.HOLDING.value:
                keep = actions.Action(LifecycleOp.FOSSILIZE, slot)
                return decision(keep, self.version, risk=0.1, reason="fixed: keep it")
        return None
