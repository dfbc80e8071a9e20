"""Seeded bootstrap confidence intervals for evaluation figures (no clock, no global RNG)."""

from __future__ import annotations

import random
from collections.abc import Sequence

RESAMPLES = 4000
LEVEL = 0.95


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (0 for no values)."""
    return sum(values) / len(values) if values else 0.0


def bootstrap_ci(
    values: Sequence[float], *, seed: int, resamples: int = RESAMPLES, level: float = LEVEL
) -> tuple[float, float]:
    """The percentile bootstrap CI of the mean of ``values`` (resampled with a seeded generator).

    The generator is keyed by ``seed`` and the data, so the same values give
    the same interval wherever they are computed.
    """
    if len(values) < 2:
        only = mean(values)
        return only, only
    rng = random.Random(f"bootstrap/{seed}/{len(values)}/{sum(values)!r}")
    n = len(values)
    means = sorted(mean([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1.0 - level) / 2
    low = means[int(tail * resamples)]
    high = means[min(resamples - 1, int((1.0 - tail) * resamples))]
    return low, high
