"""Simic, fitted Q iteration: the graph Tamiyo learns when waiting to see more pays (issue #16).

One-step fitted Q (``simic_awr``, method ``q``) values WAIT at its reward, 0,
so a policy germinates the first time growth looks better than nothing, even
when one more epoch would show that the host needs no help. Here a decision's
value also counts what the best supported decision after it is worth
(``γ = 1`` over an episode's decisions, Ernst et al. 2005)::

    Q_k(s, a) ← r + max_{a' ∈ support(s')} Q_{k-1}(s', a')      (0 after the run's last decision)

``s'`` is the state of the same run's next decision (by log position), not the
transition's ``next_obs``, which a report judged at the episode's end places at
the end. Since each germination's reward is the run's metric minus its no-op
control's (``--window end``), an episode's return is exactly its evaluation
metric relative to doing nothing.

The max ranges over what the once behaviour could have done
(:func:`labledger.lab.esper.tamiyo_graph.supported_mask`) and WAIT, whose
reward is 0 by construction, so the backup never leans on an action the data
never tried. Seeded, single-threaded, full batch, warm-started across
iterations: the same log and config give the same checkpoint bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from labledger.events.esper import PolicyUpdateMetrics
from labledger.lab.esper import tamiyo_graph
from labledger.lab.esper.tamiyo_graph import GraphState, GraphTamiyo
from labledger.projections.esper_training import Transition

FQI_METHOD = "fitted Q iteration (γ = 1 over the episode's decisions) of a graph policy, support"


def in_log_order(rows: Sequence[Transition]) -> list[Transition]:
    """``rows`` by run, then by the position of their command."""
    return sorted(rows, key=lambda t: (t.run_id, t.command_position))


def next_decisions(rows: Sequence[Transition]) -> list[int]:
    """For each of ``rows`` (in :func:`in_log_order`), the index of its run's next decision; -1 at
    the run's last."""
    return [
        i + 1 if i + 1 < len(rows) and rows[i + 1].run_id == t.run_id else -1
        for i, t in enumerate(rows)
    ]


def support(
    states: Sequence[GraphState], blueprints: Sequence[str], last_epoch: int
) -> torch.Tensor:
    """[rows, actions]: what the backup may take in each state (behaviour support and WAIT)."""
    masks = [
        tamiyo_graph.supported_mask(s, blueprints, last_epoch, wait_anywhere=True) for s in states
    ]
    return torch.tensor(masks, dtype=torch.bool)


def fit(
    model: GraphTamiyo,
    x: torch.Tensor,
    allowed: torch.Tensor,
    a: torch.Tensor,
    r: torch.Tensor,
    following: list[int],
    *,
    iterations: int,
    steps: int,
    lr: float,
    temperature: float,
    progress: Callable[[int, int], None] | None = None,
) -> PolicyUpdateMetrics:
    """``iterations`` rounds of ``steps`` Adam steps on the backed-up targets (module docstring).

    ``allowed`` is the legal-and-supported mask of every row's state; ``following``
    the index of its run's next decision (-1: none).
    """
    nxt = torch.tensor([max(j, 0) for j in following], dtype=torch.long)
    last = torch.tensor([j < 0 for j in following], dtype=torch.bool)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    q_loss = value_loss = 0.0
    target = r  # Q_0 = 0: the first round fits the one-step reward
    for k in range(iterations):
        if k > 0:
            with torch.no_grad():
                logits, _ = model(x)
                best = logits.masked_fill(~allowed, float("-inf")).max(1).values
                target = r + torch.where(last, torch.zeros_like(r), best[nxt])
        for step in range(steps):
            logits, value = model(x)
            taken = logits.gather(1, a.unsqueeze(1)).squeeze(1)
            loss_q = ((taken - target) ** 2).mean()
            loss_v = ((value - target) ** 2).mean()
            optimizer.zero_grad()
            (loss_q + loss_v).backward()
            optimizer.step()
            q_loss, value_loss = float(loss_q.detach()), float(loss_v.detach())
            done = k * steps + step + 1
            if progress is not None and done % 20 == 0:
                progress(done, iterations * steps)
    with torch.no_grad():
        logits, _ = model(x)
        taken = logits.gather(1, a.unsqueeze(1)).squeeze(1)
        logp = tamiyo_graph.masked_log_probs(logits / temperature, allowed)
        entropy = -(logp.exp() * logp.masked_fill(~allowed, 0.0)).sum(1).mean()
    explained = 1.0 - float((target - taken).var() / target.var().clamp(min=1e-12))
    return PolicyUpdateMetrics(
        policy_loss=round(q_loss, 9),
        value_loss=round(value_loss, 9),
        entropy=round(float(entropy), 9),
        approx_kl=0.0,
        clip_fraction=0.0,
        explained_variance=round(explained, 9),
    )
