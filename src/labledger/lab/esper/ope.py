"""Off-policy estimates: a policy's reward from the recorded transitions alone.

**Weighted importance sampling, per decision.** The behaviour policy of the
collected transitions is ``random`` or ``once``, whose probability of each
action :mod:`labledger.lab.esper.actions` recomputes from the recorded state
(the stage of every slot, the epoch), so nothing but the log is needed. For a deterministic
target policy ``π`` each transition weighs ``ρ = 1[π(s) = a] / μ(a | s)``;
the estimate of the reward per decision is ``Σ ρ r / Σ ρ``, and of an
episode's reward that times the decisions per episode (one per epoch).

What it leaves out, said plainly: the states are those the *behaviour*
policy visited, not those the target policy would reach, and each decision
is weighed on its own (no product of ratios along a trajectory). So it is a
biased, low-variance estimate; ``esper evaluate`` prints it beside the value
measured on held-out seeds and how far apart the two are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labledger.events.esper import LifecycleOp
from labledger.lab.esper import actions
from labledger.lab.esper.tamiyo_graph import GraphState
from labledger.projections.esper_training import Transition

Chooser = Callable[[GraphState], actions.Action]


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate and what it rests on."""

    per_decision: float
    per_episode: float
    matched: int
    """Transitions whose recorded action is the one the target policy takes."""
    transitions: int
    effective_sample_size: float


def behaviour_probabilities(
    t: Transition, state: GraphState, legal: Sequence[actions.Action]
) -> list[float]:
    """μ(· | s) of the policy that recorded ``t``: ``random``, or ``once`` (from its version)."""
    from labledger.lab.esper import baselines

    last = baselines.once_last_epoch(t.policy_version)
    if last is None:
        return actions.random_probabilities(legal)
    return actions.once_probabilities(legal, state.stages(), state.epoch, last)


def wis(
    rows: Sequence[Transition], choose: Chooser, blueprints: Sequence[str], decisions: int
) -> Estimate | None:
    """The estimate for the policy ``choose`` (None: no recorded action matches it)."""
    num = den = sq = 0.0
    matched = 0
    for t in rows:
        state = GraphState.from_transition(t)
        legal = actions.exploring(actions.legal(state.stages(), blueprints))
        taken = actions.as_action(t.heads["op"], t.slot, t.blueprint)
        keys = [a.key for a in legal]
        if taken.key not in keys or choose(state).key != taken.key:
            continue
        mu = behaviour_probabilities(t, state, legal)[keys.index(taken.key)]
        if mu <= 0.0:
            continue  # the behaviour could not have taken it: not evidence (never in a clean log)
        rho = 1.0 / mu
        num, den, sq = num + rho * t.reward, den + rho, sq + rho * rho
        matched += 1
    if den == 0:
        return None
    per = num / den
    return Estimate(
        per_decision=per,
        per_episode=per * decisions,
        matched=matched,
        transitions=len(rows),
        effective_sample_size=den * den / sq,
    )


def episode_wis(
    rows: Sequence[Transition], choose: Chooser, blueprints: Sequence[str]
) -> Estimate | None:
    """Per-episode weighted importance sampling: ``ρ = Π_t 1[π(s_t) = a_t] / μ(a_t | s_t)``.

    The estimate of an episode's reward is ``Σ ρ G / Σ ρ`` over the recorded
    episodes, ``G`` the sum of their GERMINATE rewards: judged at the episode's
    end against a control forked before it, a germination's reward already
    holds what followed it (a FOSSILIZE's own report would count it twice).
    Unlike :func:`wis` the states are the target's own until it departs from
    the episode, so it is not
    biased by the behaviour's state distribution; with the ``once`` behaviour
    an episode matches a grow-once target exactly when it grew the same seed
    in the same slot at the same epoch. None: no episode matches.
    """
    runs: dict[str, list[Transition]] = {}
    for t in rows:
        runs.setdefault(t.run_id, []).append(t)
    num = den = sq = 0.0
    matched = 0
    for steps in runs.values():
        rho, ret = 1.0, 0.0
        for t in sorted(steps, key=lambda t: GraphState.from_transition(t).epoch):
            state = GraphState.from_transition(t)
            legal = actions.exploring(actions.legal(state.stages(), blueprints))
            taken = actions.as_action(t.heads["op"], t.slot, t.blueprint)
            keys = [a.key for a in legal]
            mu = 0.0
            if taken.key in keys:
                mu = behaviour_probabilities(t, state, legal)[keys.index(taken.key)]
            if mu <= 0.0 or choose(state).key != taken.key:
                rho = 0.0
                break
            rho = rho / mu
            ret += t.reward if taken.op is LifecycleOp.GERMINATE else 0.0
        if rho > 0.0:
            num, den, sq = num + rho * ret, den + rho, sq + rho * rho
            matched += 1
    if den == 0:
        return None
    per_episode = num / den
    decisions = max(1, len(rows) // max(1, len(runs)))
    return Estimate(
        per_decision=per_episode / decisions,
        per_episode=per_episode,
        matched=matched,
        transitions=len(rows),
        effective_sample_size=den * den / sq,
    )
