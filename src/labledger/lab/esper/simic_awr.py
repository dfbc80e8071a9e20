"""Simic, offline RL: the graph Tamiyo trained by advantage-weighted regression from the ledger.

**Data**: the completed transitions of the ``esper_training`` read model whose
behaviour policy is ``random`` (``esper collect``), on the graph policy's
slots and blueprints. The reward is the one reward definition
(:func:`labledger.projections.esper_training.reward`, counterfactual, with the
parameter rent).

**Method (AWR, Peng et al. 2019, one-step)**: a value head ``V(s)`` regresses
the reward; the advantage is ``A = r − V(s)``; the policy maximises
``Σ w · log π(a | s)`` with ``w = min(exp(A / β), w_max)`` over the legal
actions. Each report already measures a decision against its own control over
a window of several epochs, so the target is that one-step counterfactual
reward (``γ = 0``): the policy learns which action beats doing nothing, in
which state. **Safety regularisation**: an entropy bonus keeps the policy
from collapsing on actions seen a few times; risky decisions are caught in
the loop by Kasmina's conservative mode (``risk = 1 − p``).

Everything is seeded and single-threaded, so one training set and one config
give the same checkpoint bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec
import torch

from labledger.errors import UsageError
from labledger.events.esper import PolicyUpdated, PolicyUpdateMetrics
from labledger.lab.esper import actions, baselines, simic_fqi, tamiyo_graph, tolaria
from labledger.lab.esper.tamiyo_graph import GraphHeader, GraphState, GraphTamiyo
from labledger.projections.esper_training import FEATURE_NAMES, REWARD_VERSION, Transition
from labledger.store import NO_STREAM, EventStore

METHOD = "advantage-weighted regression (one-step, counterfactual reward) of a graph policy"
Q_METHOD = "fitted Q (one-step, counterfactual reward) of a graph policy, behaviour support"
METHODS = ("awr", "q", "fqi")
_METHODS = {"awr": METHOD, "q": Q_METHOD, "fqi": simic_fqi.FQI_METHOD}


class AwrConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Hyperparameters (recorded in ``esper.PolicyUpdated.hyperparameters``)."""

    steps: int = 400
    lr: float = 3e-3
    hidden: int = 32
    beta: float = 0.02
    max_weight: float = 20.0
    entropy_bonus: float = 0.01
    seed: int = 0
    horizon: int = 12
    clean_window: int = 0
    """When > 0: leave out a GERMINATE followed by another GERMINATE of the same run within
    this many epochs — its counterfactual reward would also carry the later seed's effect."""
    method: str = "awr"
    """``awr``, or ``q``: the logits regress each taken action's reward (γ = 0) and the
    policy takes the best supported action."""
    temperature: float = 1.0
    """``q`` only: p(action) = softmax(Q / temperature), which sets the recorded risk."""
    support: str = ""
    """``q`` and ``fqi``: ``once:LAST`` — act only where the once behaviour could have
    (``fqi`` needs it, and may also WAIT anywhere: see ``simic_fqi``)."""
    iterations: int = 8
    """``fqi`` only: backups; each runs ``steps`` gradient steps."""


class AwrReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one training did."""

    policy_version: str
    transitions: int
    by_action: dict[str, list[float]]
    """Action kind (op:blueprint) → [count, mean reward]."""
    metrics: PolicyUpdateMetrics


def behaviour(version: str) -> bool:
    """Whether ``version`` is a behaviour policy whose probabilities the log lets us recompute."""
    return version == baselines.RANDOM_VERSION or baselines.once_last_epoch(version) is not None


def usable(rows: Sequence[Transition], blueprints: Sequence[str]) -> list[Transition]:
    """Transitions of ``esper collect``'s behaviour (random or once) on the graph's slots and
    blueprints.

    Only collected runs (``collect-…``): the random baseline's *evaluation* runs
    are on held-out seeds and must never become training data.
    """
    slots = set(tolaria.SLOT_NAMES)
    return [
        t
        for t in rows
        if t.run_id.startswith("collect-")
        and behaviour(t.policy_version)
        and (t.slot in slots)
        and (t.blueprint is None or t.blueprint in blueprints)
    ]


def clean(rows: Sequence[Transition], window: int) -> list[Transition]:
    """``rows`` without the germinations another germination followed within ``window`` epochs."""
    epoch = FEATURE_NAMES.index("metrics.epoch")
    grows: dict[str, list[float]] = {}
    for t in rows:
        if t.heads["op"] == "GERMINATE":
            grows.setdefault(t.run_id, []).append(t.obs[epoch])

    def followed(t: Transition) -> bool:
        e = t.obs[epoch]
        return any(e < other <= e + window for other in grows.get(t.run_id, []))

    return [t for t in rows if t.heads["op"] != "GERMINATE" or not followed(t)]


def _tensors(
    rows: Sequence[Transition], blueprints: Sequence[str], horizon: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    states = [GraphState.from_transition(t) for t in rows]
    x, mask = tamiyo_graph.batch(states, blueprints, horizon)
    keys = [a.key for a in tamiyo_graph.layout(blueprints)]
    taken = [actions.as_action(t.heads["op"], t.slot, t.blueprint).key for t in rows]
    a = torch.tensor([keys.index(k) for k in taken], dtype=torch.long)
    r = torch.tensor([t.reward for t in rows], dtype=torch.float32)
    return x, mask, a, r


def _by_action(rows: Sequence[Transition]) -> dict[str, list[float]]:
    sums: dict[str, list[float]] = {}
    for t in rows:
        key = t.heads["op"] + (f":{t.blueprint}" if t.blueprint else "")
        entry = sums.setdefault(key, [0.0, 0.0])
        entry[0] += 1
        entry[1] += t.reward
    return {k: [n, round(s / n, 6)] for k, (n, s) in sorted(sums.items())}


def train(
    rows: Sequence[Transition],
    blueprints: Sequence[str],
    config: AwrConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[bytes, AwrReport]:
    """Train a graph policy on ``rows`` (see the module docstring); checkpoint bytes and report.

    Raises:
        UsageError: no usable transitions (run ``esper collect`` first).
    """
    config = config or AwrConfig()
    if config.method not in METHODS:
        raise UsageError(f"method {config.method!r}: use one of {', '.join(METHODS)}")
    last = config.support.removeprefix("once:")
    if config.support and not (config.support.startswith("once:") and last.isdigit()):
        raise UsageError(f"support {config.support!r}: use once:LAST (e.g. once:5) or nothing")
    if config.method == "fqi" and not config.support:
        raise UsageError(
            "method fqi backs up over the behaviour's support: give --support once:LAST"
        )
    data = usable(rows, blueprints)
    if config.clean_window > 0:
        data = clean(data, config.clean_window)
    if not data:
        raise UsageError("no transitions of a behaviour policy: run `labledger esper collect`")
    if config.method == "fqi":
        data = simic_fqi.in_log_order(data)
    x, mask, a, r = _tensors(data, blueprints, config.horizon)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = GraphTamiyo(config.hidden, len(blueprints))
            if config.method == "fqi":
                states = [GraphState.from_transition(t) for t in data]
                allowed = simic_fqi.support(states, blueprints, int(last)) & mask
                stats = simic_fqi.fit(
                    model,
                    x,
                    allowed,
                    a,
                    r,
                    simic_fqi.next_decisions(data),
                    iterations=config.iterations,
                    steps=config.steps,
                    lr=config.lr,
                    temperature=config.temperature,
                    progress=progress,
                )
            else:
                fit = _fit_q if config.method == "q" else _fit
                stats = fit(model, x, mask, a, r, config, progress)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    version = tamiyo_graph.weights_version(model)
    # fqi's own settings stay out of the other methods' headers: their checkpoint bytes are kept
    skip = {"method"} if config.method == "fqi" else {"method", "iterations"}
    header = GraphHeader(
        policy_version=version,
        blueprints=list(blueprints),
        horizon=config.horizon,
        hidden=config.hidden,
        training={
            "method": _METHODS[config.method],
            **({"wait_anywhere": True} if config.method == "fqi" else {}),
            "transitions": len(data),
            "reward_version": REWARD_VERSION,
            **{k: v for k, v in msgspec.to_builtins(config).items() if k not in skip},
        },
    )
    report = AwrReport(
        policy_version=version, transitions=len(data), by_action=_by_action(data), metrics=stats
    )
    return tamiyo_graph.save(header, model), report


def _fit(
    model: GraphTamiyo,
    x: torch.Tensor,
    mask: torch.Tensor,
    a: torch.Tensor,
    r: torch.Tensor,
    config: AwrConfig,
    progress: Callable[[int, int], None] | None,
) -> PolicyUpdateMetrics:
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    cap = math.log(config.max_weight)
    policy_loss = value_loss = entropy = clipped = 0.0
    for step in range(config.steps):
        logits, value = model(x)
        logp = tamiyo_graph.masked_log_probs(logits, mask)
        advantage = (r - value).detach()
        scaled = (advantage / config.beta).clamp(max=cap)
        w = scaled.exp()
        taken = logp.gather(1, a.unsqueeze(1)).squeeze(1)
        probs = logp.exp()
        ent = -(probs * logp.masked_fill(~mask, 0.0)).sum(1).mean()
        p_loss = -(w * taken).mean() - config.entropy_bonus * ent
        v_loss = ((value - r) ** 2).mean()
        optimizer.zero_grad()
        (p_loss + v_loss).backward()
        optimizer.step()
        policy_loss, value_loss = float(p_loss.detach()), float(v_loss.detach())
        entropy = float(ent.detach())
        clipped = float((scaled >= cap).float().mean())
        if progress is not None and (step + 1) % 20 == 0:
            progress(step + 1, config.steps)
    with torch.no_grad():
        _, value = model(x)
    explained = 1.0 - float(((r - value).var()) / r.var().clamp(min=1e-12))
    return PolicyUpdateMetrics(
        policy_loss=round(policy_loss, 9),
        value_loss=round(value_loss, 9),
        entropy=round(entropy, 9),
        approx_kl=0.0,
        clip_fraction=round(clipped, 9),
        explained_variance=round(explained, 9),
    )


def _fit_q(
    model: GraphTamiyo,
    x: torch.Tensor,
    mask: torch.Tensor,
    a: torch.Tensor,
    r: torch.Tensor,
    config: AwrConfig,
    progress: Callable[[int, int], None] | None,
) -> PolicyUpdateMetrics:
    """The logits regress the taken action's reward; the value head the state's mean reward.

    One round of fitted Q iteration without a backup (``simic_fqi.fit``), over the legal actions.
    """
    return simic_fqi.fit(
        model,
        x,
        mask,
        a,
        r,
        [-1] * len(r),
        iterations=1,
        steps=config.steps,
        lr=config.lr,
        temperature=config.temperature,
        progress=progress,
    )


def record(
    store: EventStore, checkpoint: bytes, report: AwrReport, config: AwrConfig
) -> tuple[str, int]:
    """Store the checkpoint blob and append ``esper.PolicyUpdated``; (sha256, position)."""
    from labledger.lab.esper.simic import POLICY_STREAM, latest_policy

    sha = store.put_blob(checkpoint)
    previous = latest_policy(store)
    event = PolicyUpdated(
        policy_version=report.policy_version,
        previous_version=None if previous is None else previous.policy_version,
        checkpoint_sha256=sha,
        transitions=report.transitions,
        metrics=report.metrics,
        hyperparameters=msgspec.to_builtins(config),
    )
    expected = store.stream_version(POLICY_STREAM)
    result = store.append(
        POLICY_STREAM, [event.to_new_event(actor="simic")], NO_STREAM if expected < 0 else expected
    )
    return sha, result.first_position
