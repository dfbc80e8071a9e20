"""Kasmina's seed slot as a torch module: identity path, kernel path, alpha blend, breaker.

A slot sits between two host layers and computes ``x + a · k(x)`` where ``k``
is the seed's kernel (a TorchScript module from Urza) and ``a`` depends on the
mode: ``identity`` (no seed, or one not yet trained: ``a = 0``, the kernel is
not even called), ``probe`` (a seed in TRAINING: the host's own passes see the
identity; only Tolaria's isolated seed pass, with ``probing`` set, sees
``a = 1``), ``blend`` (``a = alpha``, the schedule's value; 1 when fossilized).

A kernel that raises, or returns the wrong shape, falls back to the identity
path for that call; the failure is counted with its reason. After
``threshold`` consecutive failures the circuit breaker opens and the kernel is
isolated — never called again — until Kasmina prunes the seed.
"""

from __future__ import annotations

import torch
from torch import nn

BREAKER_THRESHOLD = 3


class CircuitBreaker:
    """Consecutive-failure breaker: closed → open after ``threshold`` failures in a row."""

    def __init__(self, threshold: int = BREAKER_THRESHOLD) -> None:
        self.threshold = threshold
        self.consecutive = 0
        self.total = 0
        self.last_error = ""

    @property
    def open(self) -> bool:
        """True once the kernel is isolated."""
        return self.consecutive >= self.threshold

    def failure(self, error: str) -> None:
        """Count one failed call."""
        self.consecutive += 1
        self.total += 1
        self.last_error = error

    def success(self) -> None:
        """A good call closes the run of failures."""
        self.consecutive = 0


class SeedSlot(nn.Module):
    """One seed slot of width ``dim`` (see the module docstring for the modes)."""

    def __init__(self, name: str, dim: int) -> None:
        super().__init__()
        self.name, self.dim = name, dim
        self.kernel: nn.Module | None = None
        self.mode = "identity"
        self.alpha = 0.0
        self.probing = False
        self.breaker = CircuitBreaker()
        self.failures_this_epoch = 0

    def attach(self, kernel: nn.Module) -> None:
        """Put a fresh seed's kernel in the slot (mode stays identity until it trains)."""
        self.kernel = kernel
        self.mode, self.alpha = "identity", 0.0
        self.breaker = CircuitBreaker()

    def detach(self) -> None:
        """Remove the seed (pruned): back to the bare identity path."""
        self.kernel = None
        self.mode, self.alpha = "identity", 0.0

    def seed_parameters(self) -> list[nn.Parameter]:
        """The kernel's trainable parameters (empty without a kernel)."""
        return [] if self.kernel is None else list(self.kernel.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel
        if kernel is None or self.mode == "identity" or self.breaker.open:
            return x
        if self.mode == "probe" and not self.probing:
            return x
        weight = 1.0 if self.mode == "probe" else self.alpha
        try:
            delta = kernel(x)
            if delta.shape != x.shape:
                raise RuntimeError(
                    f"kernel output shape {tuple(delta.shape)} != input shape {tuple(x.shape)}"
                )
        except RuntimeError as exc:  # TorchScript errors are RuntimeErrors too
            self.breaker.failure(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            self.failures_this_epoch += 1
            return x
        self.breaker.success()
        out: torch.Tensor = x + weight * delta
        return out
