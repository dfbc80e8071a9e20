"""The graph Tamiyo: a policy over the graph of the host's layers and seed slots (seed ``002_…``).

**Graph.** One node per layer and per seed slot of the host, in forward
order — ``fc1 → r0 → fc2 → r1 → out`` — with edges between neighbours. A
node's features: its kind (layer or slot), for a slot its lifecycle stage
(one-hot) and alpha, its depth; and, on every node, the run's global state —
epoch / horizon, validation accuracy, validation loss (clipped), whether the
latest telemetry was CRITICAL. Nothing measured by a clock.

**Network** (plain torch): an input layer, :data:`ROUNDS` rounds of message
passing ``h ← relu(W_self h + W_msg · mean of the neighbours' h)``, then per
slot node the logits of its operations (``GERMINATE`` × each blueprint,
``FOSSILIZE``, ``PRUNE``), a ``WAIT`` logit and a state value from the mean
of all nodes. Illegal actions (:mod:`labledger.lab.esper.actions`) are masked.

**Acting**: the most probable legal action (deterministic, so the same seed
and checkpoint give the same commands); ``WAIT`` issues no command. The risk
recorded with a decision is ``1 − p(action)``, the policy's own doubt. A
policy trained by fitted Q (``simic_awr``, ``method = "q"``) has action values
for logits: its header's ``training.temperature`` turns them into ``p``, and
``training.support`` (``once:LAST``) keeps it to the actions its behaviour
policy could take — an offline policy must not act where the data never went.

**Checkpoint**: :func:`labledger.lab.esper.tolaria.encode_checkpoint` bytes
(raw tensors + a JSON header: format, blueprints, horizon, hidden size,
policy version, how it was trained) — no pickle.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import torch
from torch import nn

from labledger.errors import CorruptionDetected
from labledger.events.esper import LifecycleOp, SeedStage
from labledger.events.telemetry import HealthStatus, TelemetryPriority
from labledger.lab.esper import actions, baselines, tolaria
from labledger.lab.esper.policy import Decision, LiveState
from labledger.projections.esper_training import FEATURE_NAMES, Transition

FORMAT = "labledger.esper.graph-policy.v1"
ROUNDS = 2
NODES = ("fc1", "r0", "fc2", "r1", "out")
SLOT_NODES = tuple(i for i, n in enumerate(NODES) if n in tolaria.SLOT_NAMES)
STAGES = tuple(s.value for s in SeedStage)
NODE_FEATURES = 2 + len(STAGES) + 2 + 4
_F = {name: i for i, name in enumerate(FEATURE_NAMES)}


class GraphHeader(msgspec.Struct, frozen=True, kw_only=True):
    """What a graph policy checkpoint says about itself."""

    format: str = FORMAT
    policy_version: str
    blueprints: list[str]
    horizon: int
    """Epochs per episode it was trained for (the epoch feature is epoch / horizon)."""
    hidden: int
    training: dict[str, Any]


@dataclass(frozen=True)
class GraphState:
    """The policy's input, from a live run or from a recorded transition."""

    epoch: int
    accuracy: float
    loss: float
    critical: bool
    slots: Mapping[str, tuple[str, float]]

    @classmethod
    def from_live(cls, state: LiveState, slots: Sequence[str]) -> GraphState:
        m = state.metrics
        critical = (
            state.priority is TelemetryPriority.CRITICAL or state.health is HealthStatus.UNHEALTHY
        )
        return cls(
            epoch=0 if m is None else m.epoch,
            accuracy=0.0 if m is None else m.accuracy,
            loss=0.0 if m is None else m.loss,
            critical=critical,
            slots={
                s: (st.value, a)
                for s in slots
                for st, a in [state.slots.get(s, (SeedStage.DORMANT, 0.0))]
            },
        )

    @classmethod
    def from_transition(cls, t: Transition) -> GraphState:
        obs = t.obs
        critical = bool(obs[_F["priority.CRITICAL"]] or obs[_F["health.UNHEALTHY"]])
        slots = dict(t.slots) or {s: (SeedStage.DORMANT.value, 0.0) for s in tolaria.SLOT_NAMES}
        return cls(
            epoch=int(obs[_F["metrics.epoch"]]),
            accuracy=obs[_F["metrics.accuracy"]],
            loss=obs[_F["metrics.loss"]],
            critical=critical,
            slots=slots,
        )

    def stages(self) -> dict[str, str]:
        return {s: stage for s, (stage, _) in self.slots.items()}


def node_features(state: GraphState, horizon: int) -> list[list[float]]:
    """The node feature matrix (``NODES`` × :data:`NODE_FEATURES`) of one state."""
    loss = state.loss if math.isfinite(state.loss) else 5.0
    glob = [
        state.epoch / max(1, horizon),
        state.accuracy,
        min(loss, 5.0) / 5.0,
        float(state.critical),
    ]
    rows = []
    for depth, name in enumerate(NODES):
        stage, alpha = state.slots.get(name, (SeedStage.DORMANT.value, 0.0))
        is_slot = name in tolaria.SLOT_NAMES
        onehot = [1.0 if is_slot and stage == s else 0.0 for s in STAGES]
        kind = [0.0, 1.0] if is_slot else [1.0, 0.0]
        rows.append([*kind, *onehot, alpha if is_slot else 0.0, depth / len(NODES), *glob])
    return rows


def layout(blueprints: Sequence[str]) -> list[actions.Action]:
    """Every action the network has a logit for, in output order."""
    out = [actions.Action(LifecycleOp.WAIT, None)]
    for slot in sorted(tolaria.SLOT_NAMES):
        out += [actions.Action(LifecycleOp.GERMINATE, slot, bp) for bp in blueprints]
        out += [
            actions.Action(LifecycleOp.FOSSILIZE, slot),
            actions.Action(LifecycleOp.PRUNE, slot),
        ]
    return out


def legal_mask(state: GraphState, blueprints: Sequence[str]) -> list[bool]:
    """Which outputs of :func:`layout` are legal in ``state``."""
    legal = {a.key for a in actions.legal(state.stages(), blueprints)}
    return [a.key in legal for a in layout(blueprints)]


def supported_mask(
    state: GraphState, blueprints: Sequence[str], last_epoch: int | None, *, wait_anywhere: bool
) -> list[bool]:
    """Which outputs of :func:`layout` the once behaviour (``once:last_epoch``) could take.

    All of them without a support (``last_epoch`` None). ``wait_anywhere`` adds
    WAIT wherever the behaviour would grow: its counterfactual reward is 0 by
    construction (a command that changes nothing is its own control), so acting on
    it extrapolates nothing. A HOLDING seed is still fossilized, as the behaviour
    did: a seed left HOLDING would lead to states the log never saw.
    """
    out = layout(blueprints)
    if last_epoch is None:
        return [True] * len(out)
    legal = actions.legal(state.stages(), blueprints)
    mu = actions.once_probabilities(legal, state.stages(), state.epoch, last_epoch)
    allowed = {a.key for a, p in zip(legal, mu, strict=True) if p > 0.0}
    holding = any(stage == SeedStage.HOLDING.value for stage in state.stages().values())
    if wait_anywhere and not holding:
        allowed.add(actions.Action(LifecycleOp.WAIT, None).key)
    return [a.key in allowed for a in out]


class GraphTamiyo(nn.Module):
    """Message passing over the host graph; action logits per slot, WAIT and value globally."""

    def __init__(self, hidden: int, n_blueprints: int) -> None:
        super().__init__()
        self.embed = nn.Linear(NODE_FEATURES, hidden)
        self.self_w = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(ROUNDS))
        self.msg_w = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(ROUNDS))
        self.slot_head = nn.Linear(hidden, n_blueprints + 2)
        self.wait_head = nn.Linear(hidden, 1)
        self.value_head = nn.Linear(hidden, 1)
        n = len(NODES)
        adj = torch.zeros(n, n)
        for i in range(n - 1):
            adj[i, i + 1] = adj[i + 1, i] = 1.0
        self.register_buffer("adj", adj / adj.sum(1, keepdim=True))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: [batch, nodes, features] → (logits [batch, len(layout)], value [batch])."""
        h = torch.relu(self.embed(x))
        adj = self.get_buffer("adj")
        for self_w, msg_w in zip(self.self_w, self.msg_w, strict=True):
            h = torch.relu(self_w(h) + msg_w(adj @ h))
        pooled = h.mean(1)
        per_slot = [self.slot_head(h[:, i]) for i in SLOT_NODES]
        logits = torch.cat([self.wait_head(pooled), *per_slot], dim=1)
        return logits, self.value_head(pooled).squeeze(1)


def batch(
    states: Sequence[GraphState], blueprints: Sequence[str], horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Node features and legal masks of many states, as tensors."""
    x = torch.tensor([node_features(s, horizon) for s in states], dtype=torch.float32)
    mask = torch.tensor([legal_mask(s, blueprints) for s in states], dtype=torch.bool)
    return x, mask


def masked_log_probs(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π over the legal actions (illegal ones get −inf)."""
    return torch.log_softmax(logits.masked_fill(~mask, -math.inf), dim=1)


# -- checkpoints --------------------------------------------------------------------


def save(header: GraphHeader, model: GraphTamiyo) -> bytes:
    """The checkpoint bytes (module docstring)."""
    return tolaria.encode_checkpoint(dict(model.state_dict()), msgspec.to_builtins(header))


def load_bytes(data: bytes) -> tuple[GraphHeader, GraphTamiyo]:
    """Header and network of checkpoint bytes.

    Raises:
        CorruptionDetected: not a graph policy checkpoint, or weights that do not fit.
    """
    tensors, doc = tolaria.decode_checkpoint(data)
    try:
        header = msgspec.convert(doc, GraphHeader)
    except msgspec.ValidationError as exc:
        raise CorruptionDetected(f"not a graph policy checkpoint: {exc}") from exc
    if header.format != FORMAT:
        raise CorruptionDetected(f"policy format {header.format!r}, expected {FORMAT!r}")
    model = GraphTamiyo(header.hidden, len(header.blueprints))
    try:
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise CorruptionDetected(f"policy weights do not fit their header: {exc}") from exc
    return header, model.eval()


def weights_version(model: GraphTamiyo) -> str:
    """``tamiyo-graph-`` + 12 hex digits of the weights' SHA-256."""
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().contiguous().numpy().tobytes())
    return f"tamiyo-graph-{digest.hexdigest()[:12]}"


class GraphPolicy:
    """A :class:`labledger.lab.esper.policy.Policy` backed by a :class:`GraphTamiyo`."""

    def __init__(self, header: GraphHeader, model: GraphTamiyo) -> None:
        self.header, self.model = header, model
        self.version = header.policy_version
        self._layout = layout(header.blueprints)
        self._temperature = float(header.training.get("temperature", 1.0))
        support = str(header.training.get("support", ""))
        self._support = int(support.removeprefix("once:")) if support.startswith("once:") else None
        self._wait_anywhere = bool(header.training.get("wait_anywhere", False))

    def _supported(self, state: GraphState) -> list[bool]:
        """Which outputs the behaviour could have taken in ``state`` (all, without a support)."""
        return supported_mask(
            state, self.header.blueprints, self._support, wait_anywhere=self._wait_anywhere
        )

    def choose(self, state: GraphState) -> tuple[actions.Action, float]:
        """The most probable legal (and supported) action and its probability."""
        x, mask = batch([state], self.header.blueprints, self.header.horizon)
        mask = mask & torch.tensor([self._supported(state)], dtype=torch.bool)
        with torch.no_grad():
            logits, _ = self.model(x)
            probs = masked_log_probs(logits / self._temperature, mask)[0].exp()
        best = int(probs.argmax())
        return self._layout[best], float(probs[best])

    def action(self, state: GraphState) -> actions.Action:
        """The action :meth:`decide` takes in ``state`` (WAIT included)."""
        return self.choose(state)[0]

    def decide(self, state: LiveState, slots: list[str]) -> Decision | None:
        """The most probable legal action; None for WAIT (module docstring)."""
        if state.metrics is None:
            return None
        action, p = self.choose(GraphState.from_live(state, slots))
        if action.op is LifecycleOp.WAIT:
            return None
        return baselines.decision(
            action,
            self.version,
            risk=round(min(1.0, max(0.0, 1.0 - p)), 6),
            reason=f"graph policy: {action.key} (p={p:.3f})",
        )


def load_policy(store: Any, sha256: str) -> GraphPolicy:
    """The graph policy stored as blob ``sha256``.

    Raises:
        BlobNotFound: no such blob. CorruptionDetected: not a graph policy checkpoint.
    """
    header, model = load_bytes(store.get_blob(sha256))
    return GraphPolicy(header, model)
