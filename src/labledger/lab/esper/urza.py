"""Urza: the blueprint library, compiled to TorchScript and kept as content-addressed blobs.

A blueprint is a small residual module ``R^d → R^d`` (it returns a *delta*
that Kasmina blends into the host: ``x + alpha · k(x)``). Urza scripts it,
saves the TorchScript archive to bytes, stores them with ``put_blob`` (the
SHA-256 is the kernel's identity) and records an ``esper.KernelRegistered``
event naming blueprint, shapes and sha.

:class:`KernelCache` is the only way kernel bytes become modules: by sha,
through ``get_blob`` (which verifies the hash), verified again, refused unless
they are a TorchScript zip archive, and loaded with ``torch.jit.load`` from
memory — TorchScript's own restricted unpickler, never ``torch.load`` or
``pickle`` on blob bytes. The cache keeps verified bytes, least recently
used first out when their total size passes ``max_bytes``.

Why the ``warnings`` filter: torch 2.13 marks ``torch.jit.script/save/load``
deprecated (in favour of ``torch.export``). The issue asks for TorchScript
archives, and the test suite turns warnings into errors, so exactly that one
deprecation message is silenced around the three calls — nothing else.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from labledger.errors import CorruptionDetected, UsageError
from labledger.events.esper import KernelRegistered
from labledger.store import EventStore

ZIP_MAGIC = b"PK\x03\x04"
"""Every TorchScript archive is a zip file; a pickle (``\\x80…``) never is."""


@contextmanager
def _jit_quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\.jit\.\w+` is (deprecated|not supported)",
            category=DeprecationWarning,
        )
        yield


class ResidualMLP(nn.Module):
    """Two-layer MLP delta: ``W2 relu(W1 x)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 2 * dim)
        self.down = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down(torch.relu(self.up(x)))
        return out


class WideMLP(nn.Module):
    """A wide two-layer MLP delta ``W2 relu(W1 x)`` with 32 hidden units, whatever ``dim`` is.

    The blueprint that adds real capacity to a narrow host (the spirals task).
    """

    def __init__(self, dim: int, width: int = 32) -> None:
        super().__init__()
        self.up = nn.Linear(dim, width)
        self.down = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down(torch.relu(self.up(x)))
        return out


class LowRankAdapter(nn.Module):
    """LoRA-style delta ``B A x`` with rank 4."""

    def __init__(self, dim: int, rank: int = 4) -> None:
        super().__init__()
        self.a = nn.Linear(dim, rank, bias=False)
        self.b = nn.Linear(rank, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.b(self.a(x))
        return out


class AttentionLite(nn.Module):
    """Feature attention: a sigmoid gate over a linear value, ``σ(G x) ⊙ V x``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.sigmoid(self.gate(x)) * self.value(x)
        return out


class ConvBlock(nn.Module):
    """A 1-D convolution over the feature vector (one channel in, four hidden, one out)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(1, 4, 3, padding=1)
        self.c2 = nn.Conv1d(4, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x.unsqueeze(1)))
        out: torch.Tensor = self.c2(h).squeeze(1)
        return out


class BrokenShape(nn.Module):
    """A deliberately faulty kernel (fault injection): its output has one feature too many."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(x)
        return out


BLUEPRINTS: dict[str, Callable[[int], nn.Module]] = {
    "residual_mlp": ResidualMLP,
    "low_rank": LowRankAdapter,
    "attention_lite": AttentionLite,
    "conv_block": ConvBlock,
    "wide_mlp": WideMLP,
}
"""The library a policy chooses from."""
FAULTY: dict[str, Callable[[int], nn.Module]] = {"broken_shape": BrokenShape}
"""Registered only on request (tests, drills): kernels that fail at run time."""


@dataclass(frozen=True)
class Kernel:
    """A registered kernel: blueprint, the sha of its archive, its size and parameter count."""

    blueprint_id: str
    sha256: str
    size: int
    params: int


def compile_blueprint(blueprint_id: str, dim: int, seed: int) -> tuple[bytes, int]:
    """The TorchScript archive of one blueprint (initialised from ``seed``) and its parameters.

    The last layer starts small (std 1e-3), so a fresh seed barely moves the host.

    Raises:
        UsageError: an unknown blueprint.
    """
    factory = BLUEPRINTS.get(blueprint_id) or FAULTY.get(blueprint_id)
    if factory is None:
        raise UsageError(f"unknown blueprint {blueprint_id!r}; known: {sorted(BLUEPRINTS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory(dim)
        last = list(module.parameters())[-2:]
        with torch.no_grad():
            for p in last:
                p.normal_(0.0, 1e-3)
    with _jit_quiet():
        scripted = torch.jit.script(module)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
    return buf.getvalue(), sum(p.numel() for p in module.parameters())


def register_kernels(
    store: EventStore, blueprint_ids: list[str], dim: int, seed: int
) -> tuple[dict[str, Kernel], list[KernelRegistered]]:
    """Compile and store each blueprint; return the kernels and their ``KernelRegistered`` events.

    The caller appends the events (in its run stream). Compiling is deterministic
    for a seed, so the same blueprint gets the same sha in every run with it.
    """
    kernels: dict[str, Kernel] = {}
    events: list[KernelRegistered] = []
    for i, blueprint_id in enumerate(blueprint_ids):
        data, params = compile_blueprint(blueprint_id, dim, seed * 1000 + i)
        sha = store.put_blob(data)
        kernels[blueprint_id] = Kernel(blueprint_id, sha, len(data), params)
        events.append(
            KernelRegistered(
                blueprint_id=blueprint_id,
                artifact_sha256=sha,
                input_shape=[0, dim],
                output_shape=[0, dim],
                dtype="float32",
                devices=["cpu"],
            )
        )
    return kernels, events


class KernelCache:
    """Verified kernel bytes by sha, LRU-evicted by total size; modules only via TorchScript.

    ``hits``, ``misses`` and ``evictions`` count what happened (telemetry reads them).
    """

    def __init__(self, store: EventStore, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._bytes: OrderedDict[str, bytes] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    @property
    def size(self) -> int:
        """Bytes held now."""
        return sum(len(b) for b in self._bytes.values())

    def __contains__(self, sha: object) -> bool:
        return sha in self._bytes

    def fetch(self, sha: str) -> bytes:
        """The verified archive bytes of ``sha`` (from the cache or the store).

        Raises:
            BlobNotFound: no such blob.
            CorruptionDetected: the bytes do not hash to ``sha`` or are not a TorchScript archive.
        """
        data = self._bytes.get(sha)
        if data is not None:
            self.hits += 1
            self._bytes.move_to_end(sha)
            return data
        self.misses += 1
        data = self.store.get_blob(sha)
        if hashlib.sha256(data).hexdigest() != sha:  # get_blob verifies; this costs microseconds
            raise CorruptionDetected(f"kernel blob {sha[:12]}… does not match its hash")
        if not data.startswith(ZIP_MAGIC):
            raise CorruptionDetected(f"kernel blob {sha[:12]}… is not a TorchScript archive")
        self._bytes[sha] = data
        while self.size > self.max_bytes and len(self._bytes) > 1:
            self._bytes.popitem(last=False)
            self.evictions += 1
        return data

    def instantiate(self, sha: str) -> nn.Module:
        """A fresh module (own parameters) from the kernel ``sha``."""
        data = self.fetch(sha)
        with _jit_quiet():
            module: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(data), map_location="cpu"
            )
        return module
