"""The baseline Tamiyos an evaluation compares against: do nothing, act at random, grow once.

``noop`` never issues a command (the host trains alone). ``random`` issues
one command every epoch, drawn from :mod:`labledger.lab.esper.actions` with a
generator seeded by the run's seed, so a random run replays exactly; waiting
is an explicit ``WAIT`` command, which makes it the behaviour policy of
``esper collect`` too (its decisions, waits included, become transitions).
``fixed:BLUEPRINT:SLOT[:EPOCH]`` is a hand-written reference (issue #16):
germinate ``BLUEPRINT`` in ``SLOT`` at epoch ``EPOCH`` (default 0), fossilize it
once HOLDING, nothing else — what a learned policy has to match at least.
``once`` (or ``once:LAST``) is the behaviour policy of a clean collect: it
germinates at most once per episode, at an (epoch, slot, blueprint) drawn
uniformly from the run's seed (epoch 0…LAST), fossilizes the seed once
HOLDING, and otherwise waits explicitly — so no later growth leaks into a
germination's control branch, and every epoch is a transition.
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
ONCE_VERSION = "tamiyo-once-1"
ONCE_LAST_EPOCH = 5
"""The once policy's latest germination epoch by default (half a 12-epoch episode)."""


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
    """Germinates ``blueprint`` in ``slot`` at ``epoch``, fossilizes what is HOLDING, else waits."""

    blueprint: str
    slot: str
    epoch: int = 0
    version: str = FIXED_VERSION

    def __post_init__(self) -> None:
        # epoch 0 keeps the original version, so earlier fixed runs still replay as theirs
        if self.epoch:
            self.version = f"{FIXED_VERSION}-e{self.epoch}"

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """The one germination at ``epoch``; a FOSSILIZE for a HOLDING seed; otherwise nothing."""
        if state.metrics is None:
            return None
        stages = stages_of(state, slots)
        if state.metrics.epoch == self.epoch and stages.get(self.slot) == SeedStage.DORMANT.value:
            grow = actions.Action(LifecycleOp.GERMINATE, self.slot, self.blueprint)
            return decision(grow, self.version, risk=0.1, reason="fixed: grow once")
        for slot, stage in stages.items():
            if stage == SeedStage.HOLDING.value:
                keep = actions.Action(LifecycleOp.FOSSILIZE, slot)
                return decision(keep, self.version, risk=0.1, reason="fixed: keep it")
        return None


def once_version(last_epoch: int) -> str:
    """The once policy's version: it names ``last_epoch``, so μ can be recomputed."""
    return f"{ONCE_VERSION}-l{last_epoch}"


def once_last_epoch(version: str) -> int | None:
    """The ``last_epoch`` of a once policy's version; None for any other policy."""
    prefix = f"{ONCE_VERSION}-l"
    if not version.startswith(prefix) or not version.removeprefix(prefix).isdigit():
        return None
    return int(version.removeprefix(prefix))


def once_plan(
    seed: int, last_epoch: int, slots: list[str], blueprints: tuple[str, ...]
) -> tuple[int, actions.Action]:
    """The one germination of a once run — (epoch, action), uniform, drawn from ``seed`` alone."""
    rng = random.Random(f"tamiyo-once/{seed}")
    epoch = rng.randrange(last_epoch + 1)
    slot = rng.choice(sorted(slots))
    return epoch, actions.Action(LifecycleOp.GERMINATE, slot, rng.choice(blueprints))


@dataclass
class OncePolicy:
    """Germinates once at a random (epoch, slot, blueprint); fossilizes it; else waits."""

    seed: int
    blueprints: tuple[str, ...]
    last_epoch: int = ONCE_LAST_EPOCH
    version: str = ""
    """Set from ``last_epoch`` (see :func:`once_version`)."""

    def __post_init__(self) -> None:
        self.version = once_version(self.last_epoch)

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """One command every epoch (after the first metrics); stateless, so resumes replay."""
        if state.metrics is None:
            return None
        stages = stages_of(state, slots)
        action = actions.once_action(stages, state.metrics.epoch, *self._plan(slots))
        return decision(action, self.version, risk=0.5, reason=f"once: {action.key}")

    def _plan(self, slots: list[str]) -> tuple[int, actions.Action]:
        return once_plan(self.seed, self.last_epoch, slots, self.blueprints)
