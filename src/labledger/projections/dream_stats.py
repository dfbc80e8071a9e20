"""D-REAM statistics for ``candidate_pack.v2`` (seed ``000_…``): bootstrap CIs, score_v2.

Plain functions over plain data, shared by the ``dream_candidates`` projection,
the CLI and the tests. Nothing here reads a clock or unseeded randomness.

Units (how ``score_v2`` is normalised). ``score_v2 = perf − 0.2·p95_ms −
0.1·watts``, the seed's ``composite_score``, applied to the values *as
recorded*, with no rescaling: ``perf`` in the workload's own throughput unit
(higher is better; one (domain, regime) always runs the same workload, so
scores compare within a domain, not across domains), ``p95_ms`` in
milliseconds, ``watts`` in watts. The weights therefore carry units (perf
units per ms and per W). Each term uses the *overall* mean: the mean over
regimes of the per-regime trial means, every regime weighing the same (the
seed's ``"overall"``).

Absent KPIs. A KPI the machine could not measure is ``None`` in its trial and
stays absent: ``null`` at its place in the trial list, left out of means,
deltas and CIs, never replaced by 0. Without a p95 there is no latency
penalty, without watts no power penalty, and ``aggregate.penalties`` says
which were applied; without perf there is no score (``null``).

Unsafe candidates (any ``dream.SafetyCapExceeded``) have ``safe = false`` and
``score_v2 = -inf``, written in JSON as the *string* ``"-inf"``: JSON has no
infinity, and ``null`` already means "cannot be scored". Any other
non-finite float (only reachable with KPIs near the float range) is written
the same way (``"inf"``, ``"-inf"``, ``"nan"``).

Improvement. ``improves_over_baseline`` compares like with like: only the
regimes that have a baseline, and a penalty term only where both the
candidate and every compared baseline measured it. It is true when the
candidate's score beats the baseline's by more than ``tolerance`` (relative:
``score > base + tolerance·|base|``, default 1 %), false when it does not or
the candidate is unsafe, ``null`` when there is nothing to compare.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

METRICS = ("perf", "p95_ms", "watts", "temp_peak_c", "errors", "oom")
"""The KPIs of a trial, in pack order."""

ITERS = 2000
ALPHA = 0.05
LATENCY_WEIGHT = 0.2
POWER_WEIGHT = 0.1
TOLERANCE = 0.01

Column = Sequence[float | None]
"""One metric across a regime's trials (in trial order), ``None`` where unmeasured."""


def measured(column: Column) -> list[float]:
    """The measured values of a column, in order."""
    return [v for v in column if v is not None]


def mean(values: Sequence[float]) -> float:
    """The correctly rounded mean (``math.fsum``), without overflowing near the float range.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("mean of no values")
    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # the exact sum leaves the float range; its mean does not
        return math.fsum(v / len(values) for v in values)


def bootstrap_seed(cand_id: str, domain: str, regime: str, metric: str) -> int:
    """The bootstrap seed of one (candidate, domain, regime, metric): data, not time.

    The first 8 bytes (big-endian) of SHA-256 over the four parts joined by U+001F.
    """
    text = "\x1f".join((cand_id, domain, regime, metric))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def bootstrap_ci(
    values: Sequence[float], *, seed: int, iters: int = ITERS, alpha: float = ALPHA
) -> tuple[float, float] | None:
    """The percentile bootstrap CI of the mean (seed ``stats.bootstrap_ci``).

    ``iters`` resamples of ``len(values)`` draws with replacement from
    ``random.Random(seed)`` (``Random.choices``); the bounds are the order
    statistics ``k`` and ``iters − 1 − k`` of the sorted resample means, with
    ``k = round(iters · alpha / 2)`` (50 and 1949 for the defaults).

    Args:
        values: the measured values (no ``None``).
        seed: e.g. :func:`bootstrap_seed`.

    Returns:
        ``(lo, hi)``, or ``None`` with fewer than two values: one value says
        nothing about spread, and a ``[v, v]`` interval would invent certainty.
    """
    n = len(values)
    if n < 2:
        return None
    rng = random.Random(seed)
    means = sorted(mean(rng.choices(values, k=n)) for _ in range(iters))
    k = round(iters * alpha / 2)
    return means[k], means[iters - 1 - k]


def composite_score(perf: float, p95_ms: float | None, watts: float | None) -> float:
    """``perf − 0.2·p95_ms − 0.1·watts``; an absent p95 or watts carries no penalty."""
    score = perf
    if p95_ms is not None:
        score -= LATENCY_WEIGHT * p95_ms
    if watts is not None:
        score -= POWER_WEIGHT * watts
    return score


def regime_means(kpis: Mapping[str, Column]) -> dict[str, float]:
    """Per metric, the mean of its measured values (metrics never measured are absent)."""
    return {m: mean(vs) for m, column in kpis.items() if (vs := measured(column))}


def _overall(per_regime: Sequence[Mapping[str, float]], metric: str) -> float | None:
    """The mean over regimes of one metric; ``None`` unless every regime has it."""
    values = [means.get(metric) for means in per_regime]
    if not values or any(v is None for v in values):
        return None
    return mean([v for v in values if v is not None])


def _score(per_regime: Sequence[Mapping[str, float]], terms: set[str]) -> float | None:
    perf = _overall(per_regime, "perf")
    if perf is None:
        return None
    p95 = _overall(per_regime, "p95_ms") if "p95_ms" in terms else None
    watts = _overall(per_regime, "watts") if "watts" in terms else None
    return composite_score(perf, p95, watts)


def aggregate(
    regimes: Mapping[str, Mapping[str, float]],
    baselines: Mapping[str, Mapping[str, float]],
    *,
    safe: bool,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The pack's ``aggregate``: means per regime and overall, ``score_v2``, improvement.

    Args:
        regimes: per regime (pack order), the candidate's KPI means (:func:`regime_means`).
        baselines: per regime that has one, the baseline's KPI values.
        safe: false when a safety cap was exceeded (score −inf, no improvement).
        tolerance: relative margin the score must beat the baseline's by.

    Returns:
        ``means`` ({metric: {regime: mean, "overall": mean}}; ``overall`` only
        when every regime measured the metric), ``score_v2``, ``penalties``,
        ``baseline_score_v2``, ``compared_regimes``, ``tolerance``,
        ``improves_over_baseline``. Floats may be non-finite: see :func:`jsonable`.
    """
    per_regime = list(regimes.values())
    means: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        row = {r: m[metric] for r, m in regimes.items() if metric in m}
        if row:
            overall = _overall(per_regime, metric)
            means[metric] = row if overall is None else {**row, "overall": overall}
    penalties = {
        "latency": _overall(per_regime, "p95_ms") is not None,
        "power": _overall(per_regime, "watts") is not None,
    }
    terms = {t for t, on in (("p95_ms", penalties["latency"]), ("watts", penalties["power"])) if on}
    score = _score(per_regime, terms) if safe else -math.inf
    compared = [r for r in regimes if r in baselines]
    cand = [regimes[r] for r in compared]
    base = [baselines[r] for r in compared]
    common = {t for t in ("p95_ms", "watts") if _overall(cand, t) is not None}
    common &= {t for t in ("p95_ms", "watts") if _overall(base, t) is not None}
    cand_score, base_score = _score(cand, common), _score(base, common)
    improves: bool | None = None
    if cand_score is not None and base_score is not None:
        improves = safe and cand_score > base_score + tolerance * abs(base_score)
    return {
        "means": means,
        "score_v2": score,
        "penalties": penalties,
        "baseline_score_v2": base_score,
        "compared_regimes": compared,
        "tolerance": tolerance,
        "improves_over_baseline": improves,
    }


def regime_result(
    names: tuple[str, str, str],
    trials: Sequence[int],
    kpis: Mapping[str, Column],
    baseline: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One entry of the pack's ``regimes`` (seed ``RegimeResult``).

    Args:
        names: (cand_id, domain, regime), which also seed the bootstrap.
        trials: the trial numbers, in order; every ``kpis`` column aligns with them.
        kpis: per metric its column; metrics never measured are left out.
        baseline: the baseline's KPI values and ``baseline_id``, or ``None``.

    Returns:
        ``regime``, ``trials`` (count), ``trial_ids``, ``kpis``, ``baseline``,
        ``delta`` (per trial ``value − baseline``; only metrics both have,
        ``null`` where the trial did not measure it), ``ci95`` (``null`` for N < 2).
    """
    cand_id, domain, regime = names
    kept = {m: list(c) for m, c in kpis.items() if measured(c)}
    delta: dict[str, list[float | None]] = {}
    if baseline is not None:
        for metric, column in kept.items():
            ref = baseline.get(metric)
            if isinstance(ref, float | int):
                delta[metric] = [None if v is None else v - ref for v in column]
    ci95: dict[str, list[float] | None] = {}
    for metric, column in kept.items():
        ci = bootstrap_ci(measured(column), seed=bootstrap_seed(cand_id, domain, regime, metric))
        ci95[metric] = None if ci is None else list(ci)
    return {
        "regime": regime,
        "trials": len(trials),
        "trial_ids": list(trials),
        "kpis": kept,
        "baseline": None if baseline is None else dict(baseline),
        "delta": delta,
        "ci95": ci95,
    }


def build_pack(
    header: Mapping[str, Any], regimes: Sequence[Mapping[str, Any]], caps: Sequence[Any]
) -> dict[str, Any]:
    """The whole ``candidate_pack.v2``, JSON-ready.

    Args:
        header: ``run_id``, ``domain``, ``cand_id``, ``generation``, ``genome``.
        regimes: :func:`regime_result` entries, in pack order.
        caps: the candidate's safety-cap breaches (any makes it unsafe).

    Returns:
        ``schema``, the header, ``regimes``, ``aggregate``, ``safe``, ``caps_exceeded``.
    """
    means = {r["regime"]: regime_means(r["kpis"]) for r in regimes}
    refs = {
        r["regime"]: {k: v for k, v in r["baseline"].items() if k != "baseline_id"}
        for r in regimes
        if r["baseline"] is not None
    }
    pack = {
        "schema": "candidate_pack.v2",
        **header,
        "regimes": list(regimes),
        "aggregate": aggregate(means, refs, safe=not caps),
        "safe": not caps,
        "caps_exceeded": list(caps),
    }
    result: dict[str, Any] = jsonable(pack)
    return result


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float as a string (``"-inf"``, ``"inf"``, ``"nan"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
