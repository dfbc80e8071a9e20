"""Annealed budgets (seed ``001_…``): pure functions of the epoch.

Linear over epochs 0→40 with ``k = epoch / 40`` (clamped to [0, 1]): the timeout
goes 2000→1000 ms and the memory limit 128→64 MB. The annealing temperature
goes 1.0→0.5 on the same schedule; it scales the diversity bonus, so
alternative styles are rewarded most while the budgets are still generous
(the seed's "scaled by anneal_temp for early exploration").
"""

from __future__ import annotations

from labledger.events.toolgen import Budgets

ANNEAL_EPOCHS = 40
TIMEOUT_MS = (2000.0, 1000.0)
MEMORY_MB = (128.0, 64.0)
TEMPERATURE = (1.0, 0.5)


def progress(epoch: int) -> float:
    """``k = epoch / 40``, clamped to [0, 1] (epochs past 40 keep the tightest budgets)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return min(epoch, ANNEAL_EPOCHS) / ANNEAL_EPOCHS


def _lerp(bounds: tuple[float, float], k: float) -> float:
    start, end = bounds
    return start + (end - start) * k


def budgets_for(epoch: int) -> Budgets:
    """The epoch's timeout (ms) and memory limit (MB): 2000 ms / 128 MB at epoch 0,
    1500 ms / 96 MB at 20, 1000 ms / 64 MB from 40 on."""
    k = progress(epoch)
    return Budgets(timeout_ms=_lerp(TIMEOUT_MS, k), memory_mb=_lerp(MEMORY_MB, k))


def anneal_temp(epoch: int) -> float:
    """The annealing temperature: 1.0 at epoch 0, 0.5 from epoch 40 on."""
    return _lerp(TEMPERATURE, progress(epoch))
