"""Off-policy estimates: a policy's reward from the recorded transitions alone.

**Weighted importance sampling, per decision.** The behaviour policy of the
collected transitions is ``random``, whose probability of each action
:mod:`labledger.lab.esper.actions` recomputes from the recorded state (the
stage of every slot), so nothing but the log is needed. For a deterministic
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
        mu = actions.random_probabilities(legal)[keys.index(taken.key)]
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
