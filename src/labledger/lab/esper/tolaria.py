"""Tolaria: trains the host network on the CPU — a task built in code, nothing downloaded.

Three tasks (:data:`TASKS`): ``digits`` (the 8×8 digits of scikit-learn, the
default: a host of width 32 solves it alone, so growth hardly matters),
``spirals`` (three interleaved spiral arms in the plane, generated from the
seed: the host of width 6 is too small to separate them in a short
episode — but growth adds only +0.05…+0.10 accuracy there, issue #16), and
``spirals_mix``, where each seed draws easy or hard spirals: growth pays on
half the seeds and only costs rent on the other half, so a policy has to
read the host's first epochs to know which.
:data:`SWEEP_TASKS` are harder variants (narrower hosts, more half-turns,
concentric rings) measured and found no better for growth.

The host is an MLP ``in → H → [slot r0] → H → [slot r1] → classes``. One epoch is
mini-batch SGD over a shuffle drawn from ``(seed, epoch)`` alone, so an epoch
replays identically after a resume. The optimizer is plain SGD without
momentum: it has no state, so a checkpoint is the parameters alone.

Seeds in TRAINING learn in isolation: after each host step, a second pass
with their slots probing (``x + k(x)``) updates only their own parameters, so
an untrained seed never disturbs the host.

Divergence (:func:`diverged`): a non-finite validation loss, or one above
``factor`` × the last good epoch's. The session then restores the last good
checkpoint and records it.

Checkpoints (:func:`encode_checkpoint`) are a msgspec document of raw tensor
bytes plus JSON state — no pickle anywhere, so restoring one executes nothing.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from labledger.errors import CorruptionDetected, UsageError
from labledger.lab.esper.slots import SeedSlot

HIDDEN = 32
SLOT_NAMES = ("r0", "r1")
DIVERGENCE_FACTOR = 3.0


@dataclass(frozen=True)
class Task:
    """A classification task and the shape of its host."""

    name: str
    in_dim: int
    hidden: int
    classes: int
    turns: float = 1.25
    """Spiral tasks only: half-turns of each arm."""
    mix: tuple[float, ...] = ()
    """Spiral tasks only: when set, each seed draws its half-turns from these
    (:meth:`turns_of`), so one task holds workloads that need growth and workloads
    the host solves alone."""
    pre_activation: bool = False
    """Slots sit before each hidden ReLU, not after it. A seed in r0 then reads a linear
    image of the input, so a wide seed there widens the host's first layer (more ReLU
    regions in the input plane) instead of refining six already-rectified features."""

    def turns_of(self, seed: int) -> float:
        """The half-turns of ``seed``'s spirals: :attr:`turns`, or a draw from :attr:`mix`."""
        if not self.mix:
            return self.turns
        return random.Random(f"tolaria-mix/{self.name}/{seed}").choice(self.mix)


TASKS = {
    "digits": Task("digits", 64, HIDDEN, 10),
    "spirals": Task("spirals", 2, 6, 3),
    "spirals_mix": Task("spirals_mix", 2, 6, 3, mix=(0.5, 1.5)),
    "spirals_mix_pre": Task("spirals_mix_pre", 2, 6, 3, mix=(0.5, 1.5), pre_activation=True),
}
"""``spirals_mix`` (issue #16, round 5): half the seeds draw easy spirals (0.5
half-turns: the host reaches 0.99 alone and any seed only pays rent), half hard
ones (1.5: growth in r0 adds about +0.1 accuracy at 20 epochs). What the host
shows in its first epochs is all a policy has to tell them apart.

``spirals_mix_pre`` (round 7) is the same mix with the slots before each ReLU. Round 6
found that a residual seed on r0's rectified six features speeds training but barely lifts
capacity; before the ReLU it widens the first layer. On seeds 300–311 (20 epochs), a seed
germinated in r0 at epoch 0 adds about +0.2 to the metric on hard spirals (noop 0.707) and
costs only its rent on easy ones (``scripts/analysis/esper_mix_sweep.py`` with ``PRE=1``)."""
SWEEP_TASKS = {
    t.name: t
    for t in (
        Task("spirals_w3", 2, 3, 3),
        Task("spirals_t15_w4", 2, 4, 3, 1.5),
        Task("spirals_t2_w4", 2, 4, 3, 2.0),
        Task("spirals_t2_w6", 2, 6, 3, 2.0),
        Task("spirals_t25_w8", 2, 8, 3, 2.5),
        Task("rings_w2", 2, 2, 3),
        Task("rings_w3", 2, 3, 3),
    )
}
"""Harder variants measured with ``scripts/analysis/esper_fixed.py`` (issue #16,
``docs/results/2026-12-02-esper3-s2.md``): on none of them did one early
germination pay its rent within 12 epochs. ``spirals_*`` narrow the host
(``_wN``) or add half-turns (``_tN``); ``rings_*`` are three concentric rings."""
TASKS.update(SWEEP_TASKS)


def task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        UsageError: no such task.
    """
    if name not in TASKS:
        raise UsageError(f"task {name!r}: use one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


@dataclass(frozen=True)
class Data:
    """Train and validation split of the digits (features scaled to [0, 1])."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def load_data(seed: int, val_fraction: float = 0.2, task_name: str = "digits") -> Data:
    """The task's data split by a permutation of ``seed`` (digits, or spirals made from ``seed``).

    The 1797 8×8 digits ship with scikit-learn;
    their CSV is read straight from the installed package: importing
    scikit-learn itself (and scipy behind it) would cost seconds per process.
    """
    if task_name.startswith("rings"):
        return _split(*rings(seed), seed, val_fraction)
    if task_name.startswith("spirals"):
        x, y = spirals(seed, turns=task(task_name).turns_of(seed))
        return _split(x, y, seed, val_fraction)
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise UsageError("the digits data ships with scikit-learn: pip install 'labledger[ml]'")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    x = torch.tensor(table[:, :-1] / 16.0)
    y = torch.tensor(table[:, -1].astype(np.int64))
    return _split(x, y, seed, val_fraction)


def spirals(
    seed: int, per_class: int = 300, noise: float = 0.04, turns: float = 1.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Three spiral arms of ``turns`` half-turns in [-1, 1]², Gaussian noise; from ``seed``."""
    g = torch.Generator().manual_seed(10_007 + seed)
    t = torch.rand(3, per_class, generator=g)
    arm = torch.arange(3, dtype=torch.float32).unsqueeze(1)
    theta = arm * (2 * math.pi / 3) + t * (turns * math.pi)
    r = 0.1 + 0.9 * t
    x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1).reshape(-1, 2)
    x = x + noise * torch.randn(x.shape, generator=g)
    y = arm.expand(3, per_class).reshape(-1).long()
    return x.float(), y


def rings(
    seed: int, per_class: int = 300, noise: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """Three concentric rings (radii 0.3, 0.6, 0.9) in [-1, 1]², Gaussian noise; from ``seed``."""
    g = torch.Generator().manual_seed(20_011 + seed)
    theta = torch.rand(3, per_class, generator=g) * (2 * math.pi)
    r = torch.tensor([0.3, 0.6, 0.9]).unsqueeze(1) + noise * torch.randn(3, per_class, generator=g)
    x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=-1).reshape(-1, 2)
    y = torch.arange(3).unsqueeze(1).expand(3, per_class).reshape(-1)
    return x.float(), y


def _split(x: torch.Tensor, y: torch.Tensor, seed: int, val_fraction: float) -> Data:
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(y) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return Data(x[train], y[train], x[val], y[val])


class Host(nn.Module):
    """The host MLP with its seed slots."""

    def __init__(self, seed: int, shape: Task = TASKS["digits"]) -> None:
        super().__init__()
        self.shape = shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.fc1 = nn.Linear(shape.in_dim, shape.hidden)
            self.fc2 = nn.Linear(shape.hidden, shape.hidden)
            self.out = nn.Linear(shape.hidden, shape.classes)
        self.slots = nn.ModuleDict({name: SeedSlot(name, shape.hidden) for name in SLOT_NAMES})

    def slot(self, name: str) -> SeedSlot:
        """The slot called ``name``."""
        module = self.slots[name]
        assert isinstance(module, SeedSlot)
        return module

    def _hidden(self, slot: str, z: torch.Tensor) -> torch.Tensor:
        """One hidden layer's ReLU and its slot, in the order the task puts them."""
        if self.shape.pre_activation:
            return torch.relu(self.slot(slot)(z))
        out: torch.Tensor = self.slot(slot)(torch.relu(z))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._hidden("r1", self.fc2(self._hidden("r0", self.fc1(x))))
        out: torch.Tensor = self.out(h)
        return out

    def host_parameter_count(self) -> int:
        """Parameters of the host proper (without seeds)."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("slots."))


@dataclass
class EpochStats:
    """What one epoch of training measured."""

    train_loss: float
    grad_norm: float
    steps: int
    samples: int
    seconds: float
    probe_loss: dict[str, float] = field(default_factory=dict)
    """Per slot in TRAINING: mean loss of its isolated pass."""


def _sgd(params: list[nn.Parameter], lr: float) -> None:
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
                p.grad = None


def train_epoch(
    host: Host, data: Data, *, epoch: int, seed: int, lr: float, batch: int
) -> EpochStats:
    """One epoch of SGD over a shuffle of ``(seed, epoch)``; probing passes for training seeds."""
    started = time.perf_counter()
    host.train()
    probing = [s for s in (host.slot(n) for n in SLOT_NAMES) if s.mode == "probe"]
    seed_params = {id(p) for s in probing for p in s.seed_parameters()}
    host_params = [p for p in host.parameters() if id(p) not in seed_params]
    order = torch.randperm(
        len(data.y_train), generator=torch.Generator().manual_seed(seed * 7919 + epoch)
    )
    losses, norms, probe = [], [], {s.name: 0.0 for s in probing}
    steps = 0
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        x, y = data.x_train[idx], data.y_train[idx]
        loss = F.cross_entropy(host(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        grads = [p.grad.norm() for p in host_params if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(grads))) if grads else 0.0)
        _sgd(host_params, lr)
        losses.append(float(loss.detach()))
        for slot in probing:
            slot.probing = True
            probe_loss = F.cross_entropy(host(x), y)
            slot.probing = False
            if probe_loss.requires_grad:
                probe_loss.backward()  # type: ignore[no-untyped-call]
            _sgd(slot.seed_parameters(), lr)
            host.zero_grad(set_to_none=True)
            probe[slot.name] += float(probe_loss.detach())
        steps += 1
    return EpochStats(
        train_loss=sum(losses) / max(1, len(losses)),
        grad_norm=sum(norms) / max(1, len(norms)),
        steps=steps,
        samples=len(order),
        seconds=time.perf_counter() - started,
        probe_loss={k: v / max(1, steps) for k, v in probe.items()},
    )


def evaluate(host: Host, data: Data) -> tuple[float, float]:
    """Validation (loss, accuracy); a non-finite loss is returned as ``inf``."""
    host.eval()
    with torch.no_grad():
        logits = host(data.x_val)
        loss = float(F.cross_entropy(logits, data.y_val))
        accuracy = float((logits.argmax(dim=1) == data.y_val).float().mean())
    return (loss if math.isfinite(loss) else math.inf), accuracy


def diverged(loss: float, last_good_loss: float | None, factor: float = DIVERGENCE_FACTOR) -> bool:
    """Whether a validation loss is divergent: non-finite, or ``factor`` × the last good."""
    if not math.isfinite(loss):
        return True
    return last_good_loss is not None and loss > factor * max(last_good_loss, 1e-3)


def restore(host: Host, good: dict[str, torch.Tensor]) -> None:
    """A divergence rollback: copy ``good`` into the tensors still in ``host``, by name and shape.

    A seed pruned or germinated since ``good`` was taken keeps its own tensors.
    """
    current = host.state_dict()
    with torch.no_grad():
        for name, value in good.items():
            if name in current and current[name].shape == value.shape:
                current[name].copy_(value)


def inject_divergence(host: Host) -> None:
    """Fault injection: blow up a host layer the way an exploding gradient would."""
    with torch.no_grad():
        host.fc2.weight.mul_(1e4)


# -- checkpoints: raw tensor bytes, never pickle -----------------------------------


class _Tensor(msgspec.Struct, frozen=True):
    dtype: str
    shape: list[int]
    data: bytes


class _Checkpoint(msgspec.Struct, frozen=True):
    format: str
    state: dict[str, Any]
    tensors: dict[str, _Tensor]


FORMAT = "labledger.esper.checkpoint.v1"
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}


def encode_checkpoint(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> bytes:
    """One self-contained checkpoint: the tensors' raw bytes and a JSON-able ``state``."""
    packed = {}
    for name, t in tensors.items():
        array = t.detach().cpu().contiguous().numpy()
        packed[name] = _Tensor(str(array.dtype), list(array.shape), array.tobytes())
    return msgspec.msgpack.encode(_Checkpoint(FORMAT, state, packed))


def decode_checkpoint(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and state of :func:`encode_checkpoint` bytes.

    Raises:
        CorruptionDetected: not a checkpoint of this format.
    """
    try:
        doc = msgspec.msgpack.decode(data, type=_Checkpoint)
    except msgspec.DecodeError as exc:
        raise CorruptionDetected(f"not an Esper checkpoint: {exc}") from exc
    if doc.format != FORMAT:
        raise CorruptionDetected(f"checkpoint format {doc.format!r}, expected {FORMAT!r}")
    tensors = {}
    for name, t in doc.tensors.items():
        array = np.frombuffer(bytearray(t.data), dtype=np.dtype(t.dtype)).reshape(t.shape)
        tensors[name] = torch.from_numpy(array.copy())
    return tensors, doc.state
