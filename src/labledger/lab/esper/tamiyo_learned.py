"""The learned Tamiyo policy: a small torch network loaded from a checkpoint blob.

**Checkpoint format** (nothing in it is ever unpickled as arbitrary objects)::

    b"labledger-tamiyo-policy\\n"  magic
    8 bytes, big-endian          length of the header
    header                       JSON (:class:`PolicyHeader`): architecture, vocabularies,
                                 feature names, policy version, allowed ops per stage
    state_dict                   ``torch.save`` of a dict of tensors, loaded with
                                 ``torch.load(..., weights_only=True)``

The network (:class:`TamiyoNet`) standardizes the observation
(:func:`labledger.lab.esper.policy.features`, the training set's exact
layout), runs a two-layer tanh trunk, and has one output per action head:
categorical logits for ``op``, ``style``, ``tempo``, ``alpha_speed``,
``alpha_curve``, ``blueprint`` and ``alpha_set`` (whether the alpha target
head is used), a sigmoid ``alpha_target``, and ``value``: the predicted field
report reward of each operation.

**Deciding** (greedy): for every slot, the op head's argmax among the ops
legal for the slot's stage (those the training data showed in that stage;
``WAIT`` always); the policy acts on the slot whose chosen op has the highest
predicted reward, and only if that reward beats a bar: the predicted reward
of ``WAIT`` when the data had WAIT decisions in that stage, else the mean
reward of the data's decisions in that stage (act only when the decision is
predicted to be better than the recorded average — the advantage filter of
training, applied at decision time). Otherwise it returns ``None``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import msgspec
import torch
from torch import nn

from labledger.errors import CorruptionDetected, UsageError
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
from labledger.lab.esper.policy import FEATURE_NAMES, Decision, LiveState, features
from labledger.projections.esper_training import NONE
from labledger.store import EventStore

MAGIC = b"labledger-tamiyo-policy\n"
FORMAT_VERSION = 1
CATEGORICAL = ("op", "style", "tempo", "alpha_speed", "alpha_curve", "blueprint", "alpha_set")
ALPHA_SET = ["unset", "set"]


class PolicyHeader(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The JSON header of a checkpoint: everything needed to rebuild the network."""

    format_version: int
    policy_version: str
    feature_names: list[str]
    hidden: int
    vocab: dict[str, list[str]]
    """Index → value of each categorical head (``NONE`` = head unused)."""
    allowed_ops: dict[str, list[str]]
    """Stage → ops the training data showed in that stage (``WAIT`` is always allowed)."""
    wait_observed: list[str]
    """Stages in which the data had WAIT decisions (their predicted reward is the bar)."""
    baselines: dict[str, float]
    """Mean reward of the data's decisions per stage (the bar where WAIT was never seen)."""
    training: dict[str, float | int | str] = msgspec.field(default_factory=dict)


class TamiyoNet(nn.Module):
    """Standardize → 2 × (linear, tanh) → one linear output per head."""

    def __init__(self, n_features: int, hidden: int, vocab: Mapping[str, list[str]]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.trunk = nn.Sequential(
            nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, len(vocab[h])) for h in CATEGORICAL})
        self.alpha = nn.Linear(hidden, 1)
        self.value = nn.Linear(hidden, len(vocab["op"]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per categorical head, ``alpha_target`` in (0, 1), ``value`` per op."""
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        z = self.trunk((x - mean) / std)
        out = {h: head(z) for h, head in self.heads.items()}
        out["alpha_target"] = torch.sigmoid(self.alpha(z)).squeeze(-1)
        out["value"] = self.value(z)
        return out


def save_checkpoint(header: PolicyHeader, model: TamiyoNet) -> bytes:
    """The checkpoint bytes of ``model`` with ``header`` (see the module docstring)."""
    raw_header = msgspec.json.encode(header)
    weights = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, weights)
    return MAGIC + len(raw_header).to_bytes(8, "big") + raw_header + weights.getvalue()


def read_checkpoint(data: bytes) -> tuple[PolicyHeader, TamiyoNet]:
    """Parse checkpoint bytes into the header and the network (in eval mode).

    Raises:
        CorruptionDetected: not a checkpoint, or the weights do not fit the header.
    """
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise CorruptionDetected("not a labledger Tamiyo policy checkpoint")
    start = len(MAGIC) + 8
    size = int.from_bytes(data[len(MAGIC) : start], "big")
    try:
        header = msgspec.json.decode(data[start : start + size], type=PolicyHeader)
        state = torch.load(io.BytesIO(data[start + size :]), weights_only=True)
    except (msgspec.DecodeError, RuntimeError, EOFError) as exc:
        raise CorruptionDetected(f"unreadable policy checkpoint: {exc}") from exc
    if header.format_version != FORMAT_VERSION:
        raise CorruptionDetected(f"policy checkpoint format v{header.format_version} is unknown")
    if header.feature_names != list(FEATURE_NAMES):
        raise UsageError(
            "the policy was trained on other observation features than this code computes; "
            "retrain it with `labledger esper simic`"
        )
    model = TamiyoNet(len(header.feature_names), header.hidden, header.vocab)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise CorruptionDetected(f"policy weights do not fit their header: {exc}") from exc
    return header, model.eval()


def load_policy(store: EventStore, sha256: str) -> LearnedPolicy:
    """The learned policy stored as blob ``sha256`` (verified against its hash by the store).

    Raises:
        BlobNotFound: no such blob.
        CorruptionDetected: the blob is not a valid checkpoint.
    """
    header, model = read_checkpoint(store.get_blob(sha256))
    return LearnedPolicy(header, model)


def coverage(x: list[float]) -> float:
    """Fraction of the features that were present (not zero-filled for a missing part)."""
    f = dict(zip(FEATURE_NAMES, x, strict=True))
    missing = 0
    if not f["metrics.present"]:
        missing += sum(1 for n in FEATURE_NAMES if n.startswith("metrics.")) - 1
    for group in ("health.", "priority."):
        names = [n for n in FEATURE_NAMES if n.startswith(group)]
        if not any(f[n] for n in names):
            missing += len(names)
    return 1.0 - missing / len(FEATURE_NAMES)


class LearnedPolicy:
    """A :class:`labledger.lab.esper.policy.Policy` backed by a :class:`TamiyoNet`."""

    def __init__(self, header: PolicyHeader, model: TamiyoNet) -> None:
        self.header, self.model = header, model
        self.version = header.policy_version
        self._ops = [LifecycleOp(v) for v in header.vocab["op"]]

    def _legal(self, stage: str) -> torch.Tensor:
        allowed = set(self.header.allowed_ops.get(stage, [])) | {LifecycleOp.WAIT.value}
        if len(self.header.vocab["blueprint"]) < 2:  # nothing to germinate with
            allowed.discard(LifecycleOp.GERMINATE.value)
        return torch.tensor([op.value in allowed for op in self._ops])

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """The greedy decision for the most promising slot, or None (see the module docstring)."""
        if not slots:
            return None
        xs = [features(state, slot) for slot in slots]
        with torch.no_grad():
            out = self.model(torch.tensor(xs, dtype=torch.float32))
        wait = self._ops.index(LifecycleOp.WAIT)
        best: tuple[float, int, int, torch.Tensor] | None = None
        for i, slot in enumerate(slots):
            stage = state.slots.get(slot, (SeedStage.DORMANT, 0.0))[0].value
            logits = out["op"][i].masked_fill(~self._legal(stage), -math.inf)
            probs = torch.softmax(logits, -1)
            op = int(probs.argmax())
            q = float(out["value"][i, op])
            bar = (
                float(out["value"][i, wait])
                if stage in self.header.wait_observed
                else self.header.baselines.get(stage, 0.0)
            )
            if op != wait and q > bar and (best is None or q > best[0]):
                best = (q, i, op, probs)
        if best is None:
            return None
        q, i, op, probs = best
        return self._decision(slots[i], xs[i], {h: t[i] for h, t in out.items()}, op, probs, q)

    def _pick(self, logits: torch.Tensor, head: str, *, required: bool = False) -> str | None:
        values = self.header.vocab[head]
        if required:  # a GERMINATE needs a blueprint: the best one that is not NONE
            logits = logits.masked_fill(torch.tensor([v == NONE for v in values]), -math.inf)
        value = values[int(logits.argmax())]
        return None if value == NONE else value

    def _decision(
        self,
        slot: str,
        x: list[float],
        out: dict[str, torch.Tensor],
        op_index: int,
        probs: torch.Tensor,
        q: float,
    ) -> Decision:
        op = self._ops[op_index]
        style = self._pick(out["style"], "style")
        blueprint = self._pick(out["blueprint"], "blueprint", required=op is LifecycleOp.GERMINATE)
        alpha_set = self.header.vocab["alpha_set"][int(out["alpha_set"].argmax())] == "set"
        tempo, speed = (
            self._pick(out["tempo"], "tempo"),
            self._pick(out["alpha_speed"], "alpha_speed"),
        )
        curve = self._pick(out["alpha_curve"], "alpha_curve")
        heads = ActionHeads(
            blueprint=blueprint,
            style=None if style is None else BlendStyle(style),
            tempo=None if tempo is None else Tempo(tempo),
            alpha_target=round(float(out["alpha_target"]), 6) if alpha_set else None,
            alpha_speed=None if speed is None else AlphaSpeed(speed),
            alpha_curve=None if curve is None else AlphaCurve(curve),
        )
        live = probs[probs > 0]
        entropy = float(-(live * live.log()).sum())
        risk = entropy / math.log(len(live)) if len(live) > 1 else 0.0
        metadata = DecisionMetadata(
            policy_version=self.version,
            risk=min(1.0, max(0.0, round(risk, 6))),
            blend=heads.style,
            coverage=round(coverage(x), 6),
            reason=(
                f"learned policy: {op.value} on {slot} (p={float(probs[op_index]):.2f}, "
                f"predicted reward {q:+.4f})"
            ),
        )
        return Decision(
            operation=op, slot=slot, blueprint_id=blueprint, heads=heads, metadata=metadata
        )


__all__ = [
    "CATEGORICAL",
    "LearnedPolicy",
    "PolicyHeader",
    "TamiyoNet",
    "coverage",
    "load_policy",
    "read_checkpoint",
    "save_checkpoint",
]
