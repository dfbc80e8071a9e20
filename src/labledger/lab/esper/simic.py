"""Simic: trains the Tamiyo policy from the policy training set (seed ``002_…``).

**Method: advantage-filtered, reward-weighted behaviour cloning** (an offline,
AWR-style update; no environment interaction, no importance ratios).

- Advantage ``A = r - b(stage)``: the field-report reward minus the mean reward
  of the training split's decisions taken in the same target-slot stage.
- Policy heads (op, style, tempo, alpha speed/curve, blueprint, alpha target)
  imitate only decisions with ``A > 0``, each weighted by
  ``min(exp(A / beta), max_weight)``: the better than usual a decision turned
  out, the more it is copied; worse-than-usual decisions are filtered out.
- The ``value`` head regresses every decision's reward on (state, op): it is
  the predicted field-report reward the policy uses to decide *whether* to act
  (see :mod:`labledger.lab.esper.tamiyo_learned`).

A deterministic split holds out ``val_fraction`` of the transitions; the
report gives imitation accuracy and value error on it. ``PolicyUpdated``
metrics map as: ``policy_loss`` (weighted cross-entropy, train), ``value_loss``
(reward MSE, held out), ``entropy`` (op head, nats), ``approx_kl``
(KL(previous ‖ new) of the op head on the training states; 0 without a
previous policy), ``clip_fraction`` (share of imitated decisions whose weight
hit ``max_weight``), ``explained_variance`` (value head, held out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import torch
import torch.nn.functional as F

from labledger.events.esper import LifecycleOp, PolicyUpdated, PolicyUpdateMetrics, SeedStage
from labledger.lab.esper.tamiyo_learned import (
    ALPHA_SET,
    CATEGORICAL,
    FORMAT_VERSION,
    PolicyHeader,
    TamiyoNet,
    read_checkpoint,
    save_checkpoint,
)
from labledger.projections.esper_training import FEATURE_NAMES
from labledger.store import NO_STREAM, EventStore

POLICY_STREAM = "esper-policy"
METHOD = "advantage-filtered reward-weighted behaviour cloning"
Tensors = dict[str, Any]
Progress = Callable[[int, int], None]
_STAGES = [f"slot.stage.{s.value}" for s in SeedStage]


class SimicConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Hyperparameters of one Simic update (recorded in ``PolicyUpdated.hyperparameters``)."""

    epochs: int = 150
    lr: float = 3e-3
    hidden: int = 64
    beta: float = 0.05
    """Temperature of the advantage weights (reward units)."""
    max_weight: float = 20.0
    batch_size: int = 256
    val_fraction: float = 0.2
    weight_decay: float = 1e-4
    seed: int = 0


class SimicReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one update did and how well it fits held-out decisions."""

    policy_version: str
    transitions: int
    train: int
    held_out: int
    imitated: int
    """Training transitions with a positive advantage (the ones cloned)."""
    metrics: PolicyUpdateMetrics
    held_out_op_accuracy: float | None
    """Op-head accuracy on held-out positive-advantage decisions (None: none held out)."""
    held_out_value_mse: float | None
    baselines: dict[str, float]
    """Mean reward per target stage (the advantage baseline)."""


def _stage_index(obs: torch.Tensor) -> torch.Tensor:
    cols = [FEATURE_NAMES.index(n) for n in _STAGES]
    return obs[:, cols].argmax(dim=1)


def _split(n: int, config: SimicConfig) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(n, generator=gen)
    held = int(n * config.val_fraction) if n >= 5 else 0
    return order[held:], order[:held]


def _targets(tensors: Tensors, vocab: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    action = tensors["action"]
    out = {h: action[h].long() for h in CATEGORICAL if h != "alpha_set"}
    out["alpha_set"] = action["alpha_target_mask"].long()
    out["alpha_target"] = action["alpha_target"].float()
    out["reward"] = tensors["next"]["reward"].reshape(-1).float()
    return out


def _header_vocab(manifest: dict[str, Any]) -> dict[str, list[str]]:
    vocab = {h: list(manifest["action_vocabularies"][h]) for h in CATEGORICAL if h != "alpha_set"}
    vocab["alpha_set"] = list(ALPHA_SET)
    return vocab


def _allowed(obs: torch.Tensor, ops: torch.Tensor, vocab: list[str]) -> dict[str, list[str]]:
    stages = _stage_index(obs)
    seen: dict[str, set[str]] = {}
    for stage, op in zip(stages.tolist(), ops.tolist(), strict=True):
        seen.setdefault(list(SeedStage)[stage].value, set()).add(vocab[op])
    return {stage: sorted(ops_) for stage, ops_ in sorted(seen.items())}


def _weights(
    stage: torch.Tensor, reward: torch.Tensor, train: torch.Tensor, config: SimicConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    baselines: dict[str, float] = {}
    base = torch.zeros_like(reward)
    for s in sorted(set(stage[train].tolist())):
        mask = stage[train] == s
        mean = float(reward[train][mask].mean())
        baselines[list(SeedStage)[s].value] = mean
        base[stage == s] = mean
    advantage = reward - base
    raw = torch.exp((advantage / config.beta).clamp(max=50.0))
    weights = torch.where(advantage > 0, raw.clamp(max=config.max_weight), 0.0)
    return weights, baselines


def _loss(
    model: TamiyoNet, x: torch.Tensor, y: dict[str, torch.Tensor], w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = model(x)
    norm = w.sum().clamp(min=1e-8)
    policy = sum(
        (F.cross_entropy(out[h], y[h], reduction="none") * w).sum() / norm for h in CATEGORICAL
    )
    alpha_w = w * y["alpha_set"].float()
    alpha = ((out["alpha_target"] - y["alpha_target"]) ** 2 * alpha_w).sum() / alpha_w.sum().clamp(
        min=1e-8
    )
    q = out["value"].gather(1, y["op"].unsqueeze(1)).squeeze(1)
    value = F.mse_loss(q, y["reward"])
    return torch.as_tensor(policy) + alpha, value, out["op"]


def _fit(
    model: TamiyoNet,
    x: torch.Tensor,
    y: dict[str, torch.Tensor],
    w: torch.Tensor,
    config: SimicConfig,
    progress: Progress | None,
) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed + 1)
    last = 0.0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            policy, value, _ = _loss(model, x[idx], {k: v[idx] for k, v in y.items()}, w[idx])
            opt.zero_grad()
            (policy + value).backward()  # type: ignore[no-untyped-call]
            opt.step()
            last = float(policy.detach())
        if progress is not None:
            progress(epoch + 1, config.epochs)
    return last


def _explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = float(target.var(unbiased=False)) if len(target) > 1 else 0.0
    if var == 0.0:
        return 0.0
    return 1.0 - float((target - pred).var(unbiased=False)) / var


def _approx_kl(previous: bytes | None, model: TamiyoNet, x: torch.Tensor, ops: list[str]) -> float:
    if previous is None:
        return 0.0
    header, old = read_checkpoint(previous)
    if header.vocab["op"] != ops:
        return 0.0  # another op vocabulary: the distributions are not comparable
    with torch.no_grad():
        p_log = torch.log_softmax(old(x)["op"], -1)
        q_log = torch.log_softmax(model(x)["op"], -1)
    return float((p_log.exp() * (p_log - q_log)).sum(-1).mean())


def train_policy(
    source: Path | tuple[Tensors, dict[str, Any]],
    config: SimicConfig | None = None,
    *,
    previous: bytes | None = None,
    progress: Progress | None = None,
) -> tuple[bytes, SimicReport]:
    """One Simic update on an exported training set (a path, or its loaded tensors + manifest).

    Args:
        source: a file written by ``esper training-set export`` (checked against its
            manifest), or ``(tensors, manifest)`` as ``load_training_set`` returns them.
        config: hyperparameters (defaults: :class:`SimicConfig`).
        previous: the checkpoint of the policy being replaced, for ``approx_kl``.
        progress: called with (epochs done, epochs).

    Returns:
        The new checkpoint's bytes and the report; the policy version is
        ``simic-`` + the first 12 hex digits of the weights' SHA-256.

    Raises:
        UsageError: the training set is empty.
    """
    from labledger.errors import UsageError
    from labledger.projections.training_data import load_training_set

    config = config or SimicConfig()
    tensors, manifest = load_training_set(source) if isinstance(source, Path) else source
    n = int(manifest["transitions"])
    if n == 0:
        raise UsageError("the training set has no transitions: run some Esper sessions first")
    vocab = _header_vocab(manifest)
    x, y = tensors["observation"].float(), _targets(tensors, vocab)
    train, held = _split(n, config)
    stage = _stage_index(x)
    w, baselines = _weights(stage, y["reward"], train, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = TamiyoNet(len(FEATURE_NAMES), config.hidden, vocab)
    model.get_buffer("mean").copy_(x[train].mean(0))
    model.get_buffer("std").copy_(x[train].std(0, unbiased=False).clamp(min=1e-6))
    xt, yt, wt = x[train], {k: v[train] for k, v in y.items()}, w[train]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: thread hand-offs cost more than they save
    try:
        policy_loss = _fit(model, xt, yt, wt, config, progress)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    stats = _evaluate(model, x, y, w, train, held)
    imitated = int((wt > 0).sum())
    header = _header(model, config, vocab, (x, y["op"], stage), baselines, n, imitated)
    metrics = PolicyUpdateMetrics(
        policy_loss=round(policy_loss, 9),
        value_loss=round(stats["value_mse"], 9),
        entropy=round(stats["entropy"], 9),
        approx_kl=round(_approx_kl(previous, model, xt, vocab["op"]), 9),
        clip_fraction=round(int((wt >= config.max_weight).sum()) / max(imitated, 1), 9),
        explained_variance=round(stats["explained"], 9),
    )
    report = SimicReport(
        policy_version=header.policy_version,
        transitions=n,
        train=len(train),
        held_out=len(held),
        imitated=imitated,
        metrics=metrics,
        held_out_op_accuracy=stats.get("accuracy"),
        held_out_value_mse=stats["value_mse"] if len(held) else None,
        baselines=baselines,
    )
    return save_checkpoint(header, model), report


def _evaluate(
    model: TamiyoNet,
    x: torch.Tensor,
    y: dict[str, torch.Tensor],
    w: torch.Tensor,
    train: torch.Tensor,
    held: torch.Tensor,
) -> dict[str, float]:
    """Op entropy on the training states; value error and imitation accuracy held out."""
    stats: dict[str, float] = {}
    with torch.no_grad():
        probs = torch.softmax(model(x[train])["op"], -1)
        stats["entropy"] = float(-(probs * probs.clamp(min=1e-12).log()).sum(-1).mean())
        idx = held if len(held) else train
        q = model(x[idx])["value"].gather(1, y["op"][idx].unsqueeze(1)).squeeze(1)
        stats["value_mse"] = float(F.mse_loss(q, y["reward"][idx]))
        stats["explained"] = _explained_variance(q, y["reward"][idx])
        good = held[w[held] > 0]
        if len(good):
            hits = model(x[good])["op"].argmax(-1) == y["op"][good]
            stats["accuracy"] = float(hits.float().mean())
    return stats


def _header(
    model: TamiyoNet,
    config: SimicConfig,
    vocab: dict[str, list[str]],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    baselines: dict[str, float],
    n: int,
    imitated: int,
) -> PolicyHeader:
    """The checkpoint header; the version is ``simic-`` + a digest of the weights."""
    x, ops, stage = data
    wait = vocab["op"].index(LifecycleOp.WAIT.value)
    header = PolicyHeader(
        format_version=FORMAT_VERSION,
        policy_version="-",
        feature_names=list(FEATURE_NAMES),
        hidden=config.hidden,
        vocab=vocab,
        allowed_ops=_allowed(x, ops, vocab["op"]),
        wait_observed=sorted({list(SeedStage)[int(s)].value for s in stage[ops == wait]}),
        baselines=baselines,
        training={"transitions": n, "imitated": imitated, "method": METHOD},
    )
    digest = hashlib.sha256(save_checkpoint(header, model)).hexdigest()
    return msgspec.structs.replace(header, policy_version=f"simic-{digest[:12]}")


def latest_policy(store: EventStore) -> PolicyUpdated | None:
    """The last ``esper.PolicyUpdated`` of :data:`POLICY_STREAM`, if any."""
    from labledger.events import decode

    version = store.stream_version(POLICY_STREAM)
    if version < 0:
        return None
    (last,) = store.read_stream(POLICY_STREAM, from_version=version, limit=1)
    event = decode(last.type, last.schema_version, last.data)
    return event if isinstance(event, PolicyUpdated) else None


def record_policy_update(
    store: EventStore,
    checkpoint: bytes,
    report: SimicReport,
    config: SimicConfig,
    *,
    actor: str = "simic",
) -> tuple[str, int]:
    """Store the checkpoint as a blob and append ``esper.PolicyUpdated``; (sha256, position).

    Raises:
        WrongExpectedVersion: another Simic recorded a policy concurrently.
    """
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
        POLICY_STREAM, [event.to_new_event(actor=actor)], NO_STREAM if expected < 0 else expected
    )
    return sha, result.first_position


# -- held-out comparison -----------------------------------------------------------

METRIC = "final accuracy per 1,000 parameters of the final network (host + seeds kept)"


class PolicyScore(msgspec.Struct, frozen=True, kw_only=True):
    """One held-out run of one policy."""

    policy: str
    seed: int
    run_id: str
    final_accuracy: float
    params_added: int
    """Parameters of the seeds alive or fossilized at the end (pruned ones excluded)."""
    host_params: int
    score: float
    """:data:`METRIC`."""


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """Learned vs heuristic Tamiyo on the same held-out seeds."""

    metric: str
    seeds: list[int]
    heuristic: list[PolicyScore]
    learned: list[PolicyScore]
    heuristic_mean: float
    learned_mean: float
    learned_wins: bool


def _params_added(store: EventStore, run_id: str, kernel_params: dict[str, int]) -> int:
    from labledger.events import SeedGerminated, SeedPruned
    from labledger.events.typed import typed
    from labledger.lab.esper._run import ESPER_RUNS

    kept: dict[str, str] = {}
    for item in typed(store.read_stream(ESPER_RUNS.stream(run_id))):
        if isinstance(item.event, SeedGerminated):
            kept[item.event.slot] = item.event.blueprint_id
        elif isinstance(item.event, SeedPruned):
            kept.pop(item.event.slot, None)
    return sum(kernel_params.get(bp, 0) for bp in kept.values())


def compare_with_heuristic(
    store: EventStore,
    checkpoint_sha256: str,
    seeds: list[int],
    *,
    epochs: int = 8,
    tag: str = "holdout",
    progress: Progress | None = None,
) -> Comparison:
    """Run the heuristic and the learned policy on each held-out seed; score both by :data:`METRIC`.

    Needs the session runner (``labledger.lab.esper.session``), imported here.
    Use seeds the training runs did not use.
    """
    from labledger.lab.esper import session, tolaria, urza

    blueprints = session.SessionConfig().blueprints
    kernel_params = {bp: urza.compile_blueprint(bp, tolaria.HIDDEN, 0)[1] for bp in blueprints}
    scores: dict[str, list[PolicyScore]] = {"heuristic": [], "learned": []}
    specs = {"heuristic": "heuristic", "learned": f"ckpt:{checkpoint_sha256}"}
    for done, seed in enumerate(seeds):
        host = tolaria.Host(seed).host_parameter_count()
        for name, spec in specs.items():
            run_id = f"{tag}-{name}-{checkpoint_sha256[:8]}-s{seed}"
            cfg = session.SessionConfig(epochs=epochs, seed=seed, policy=spec)
            summary = session.run_session(store, cfg, run_id=run_id)
            added = _params_added(store, run_id, kernel_params)
            score = summary.final_accuracy / ((host + added) / 1000)
            scores[name].append(
                PolicyScore(
                    policy=spec,
                    seed=seed,
                    run_id=run_id,
                    host_params=host,
                    final_accuracy=summary.final_accuracy,
                    params_added=added,
                    score=round(score, 6),
                )
            )
        if progress is not None:
            progress(done + 1, len(seeds))
    means = {k: sum(s.score for s in v) / max(1, len(v)) for k, v in scores.items()}
    return Comparison(
        metric=METRIC,
        seeds=list(seeds),
        heuristic=scores["heuristic"],
        learned=scores["learned"],
        heuristic_mean=round(means["heuristic"], 6),
        learned_mean=round(means["learned"], 6),
        learned_wins=means["learned"] > means["heuristic"],
    )


__all__ = [
    "METRIC",
    "POLICY_STREAM",
    "Comparison",
    "PolicyScore",
    "SimicConfig",
    "SimicReport",
    "compare_with_heuristic",
    "latest_policy",
    "record_policy_update",
    "train_policy",
]
