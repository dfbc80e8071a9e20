"""D-REAM ``score_v2`` on the baseline's scale, and improvement decided by its bootstrap CI.

Plain, seeded functions shared by the packs (``dream_stats``), the runner's
selection and the tests. No clock, no unseeded randomness.

The score (:data:`FORMULA`). The seed's weights — ``perf − 0.2·p95 − 0.1·watts``
— applied to raw units let the largest number win: perf in the hundreds of
MiB/s drowns a p95 of a tenth of a millisecond. Here every term is first
divided by the baseline's value in the same regime, so 1.0 is the baseline and
the penalties act on the same scale as the gain::

    score_v2 = mean_r(perf_r / perf_b,r) − 0.2·mean_r(p95_r / p95_b,r) − 0.1·mean_r(P_r / P_b,r)

over the regimes both have (every regime weighs the same). A term is left out
(and named in ``score_terms``) when a side lacks it in some regime. The power
term ``P`` is the measured ``watts`` when both sides have readings, else the
modelled ``watts_modelled`` (labelled ``modelled``), else absent. The
baseline scored against itself is ``1 − 0.2 − 0.1 = 0.7`` with all terms.

Improvement (:func:`decide`). The difference ``score_v2(candidate) −
score_v2(baseline)`` is bootstrapped: each resample draws the candidate's and
the baseline's valid trials with replacement, per regime and independently,
and rescores (whole trials are drawn, so a trial's perf and p95 stay
together). Its percentile CI decides: ``true`` when the lower bound is above
``+tolerance``, ``false`` when the upper bound is below ``−tolerance`` (a
regression) or the candidate is unsafe, and ``"inconclusive"`` otherwise —
also when either side has fewer than :data:`MIN_DECISION_TRIALS` valid trials
in a compared regime (a bootstrap of two or three trials is its min and max,
not a CI) or there is no baseline to compare with.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

FORMULA = "score_v2.normalised.v1"
FORMULA_TEXT = (
    "mean over regimes of perf/perf_baseline - 0.2 * p95_ms/p95_baseline "
    "- 0.1 * power/power_baseline (1.0 = the baseline per term)"
)
RAW_FORMULA = "perf - 0.2 * p95_ms - 0.1 * watts (seed composite_score, raw units)"
PERF_WEIGHT, LATENCY_WEIGHT, POWER_WEIGHT = 1.0, 0.2, 0.1
POWER_METRICS = ("watts", "watts_modelled")
TOLERANCE = 0.01
MIN_DECISION_TRIALS = 5
ITERS = 2000
ALPHA = 0.05

Means = Mapping[str, Mapping[str, float]]
"""Per regime, per metric, a mean."""
Rows = Mapping[str, Sequence[Mapping[str, float | None]]]
"""Per regime, the valid trials (metric → value, ``None`` where unmeasured)."""


def _has(means: Means, regimes: Sequence[str], metric: str, positive: bool = False) -> bool:
    values = [means.get(r, {}).get(metric) for r in regimes]
    return all(v is not None and (v > 0 or not positive) for v in values)


def score_terms(cand: Means, ref: Means, regimes: Sequence[str]) -> dict[str, str | None]:
    """Which metric each term uses: ``perf``, ``p95_ms``, a power metric, or ``None`` (left out)."""
    latency = _has(cand, regimes, "p95_ms") and _has(ref, regimes, "p95_ms", positive=True)
    power = next(
        (m for m in POWER_METRICS if _has(cand, regimes, m) and _has(ref, regimes, m, True)),
        None,
    )
    perf = _has(cand, regimes, "perf") and _has(ref, regimes, "perf", positive=True)
    return {
        "perf": "perf" if perf else None,
        "latency": "p95_ms" if latency else None,
        "power": power,
    }


def _ratio(cand: Means, ref: Means, regimes: Sequence[str], metric: str) -> float:
    return math.fsum(cand[r][metric] / ref[r][metric] for r in regimes) / len(regimes)


def normalised_score(
    cand: Means, ref: Means, regimes: Sequence[str], terms: Mapping[str, str | None]
) -> float | None:
    """:data:`FORMULA` for ``cand`` against the reference ``ref``; ``None`` without perf."""
    if not regimes or terms["perf"] is None:
        return None
    score = PERF_WEIGHT * _ratio(cand, ref, regimes, "perf")
    for term, weight in (("latency", LATENCY_WEIGHT), ("power", POWER_WEIGHT)):
        metric = terms[term]
        if metric is not None:
            score -= weight * _ratio(cand, ref, regimes, metric)
    return score


def self_score(terms: Mapping[str, str | None]) -> float:
    """The baseline's score against itself: 1.0 less the weight of every term used."""
    used = [w for t, w in (("latency", LATENCY_WEIGHT), ("power", POWER_WEIGHT)) if terms[t]]
    return PERF_WEIGHT - math.fsum(used)


def row_means(rows: Sequence[Mapping[str, float | None]]) -> dict[str, float]:
    """Per metric, the mean over the rows that measured it."""
    metrics = {m for row in rows for m in row}
    found = {}
    for m in sorted(metrics):
        values = [v for row in rows if (v := row.get(m)) is not None]
        if values:
            found[m] = math.fsum(values) / len(values)
    return found


def difference_ci(
    cand: Rows,
    base: Rows,
    regimes: Sequence[str],
    terms: Mapping[str, str | None],
    *,
    seed: int,
    iters: int = ITERS,
    alpha: float = ALPHA,
) -> tuple[float, float] | None:
    """The percentile bootstrap CI of ``score(cand) − score(base)`` (see the module doc).

    Returns:
        ``(lo, hi)``; ``None`` when a compared regime has fewer than two valid
        trials on either side, or the score is not defined.
    """
    if not regimes or any(min(len(cand[r]), len(base[r])) < 2 for r in regimes):
        return None
    if terms["perf"] is None:
        return None
    rng = random.Random(seed)
    own = self_score(terms)
    diffs = []
    for _ in range(iters):
        c = {r: row_means(rng.choices(cand[r], k=len(cand[r]))) for r in regimes}
        b = {r: row_means(rng.choices(base[r], k=len(base[r]))) for r in regimes}
        if _defined(c, regimes, terms, False) and _defined(b, regimes, terms, True):
            score = normalised_score(c, b, regimes, terms)
            if score is not None:
                diffs.append(score - own)
    # A resample can draw only trials that lack a metric (or, for the baseline,
    # measured it as 0): its score is undefined and it is skipped. When most
    # are, the interval would describe the few trials that have it: no CI.
    if len(diffs) < iters / 2:
        return None
    diffs.sort()
    k = round(len(diffs) * alpha / 2)
    return diffs[k], diffs[len(diffs) - 1 - k]


def _defined(
    means: Means, regimes: Sequence[str], terms: Mapping[str, str | None], positive: bool
) -> bool:
    return all(m is None or _has(means, regimes, m, positive) for m in terms.values())


def decide(
    ci: tuple[float, float] | None,
    trials: int,
    *,
    safe: bool,
    tolerance: float = TOLERANCE,
    min_trials: int = MIN_DECISION_TRIALS,
) -> tuple[bool | str, str]:
    """``improves_over_baseline`` and why: ``True``, ``False`` or ``"inconclusive"``.

    Args:
        ci: the CI of the score difference, or ``None`` (no baseline, too few trials).
        trials: the fewest valid trials of either side in a compared regime.
        safe: false when a safety cap was exceeded.
    """
    if not safe:
        return False, "unsafe: a safety cap was exceeded"
    if ci is None:
        return "inconclusive", "no baseline to compare with, or fewer than 2 valid trials"
    if trials < min_trials:
        return "inconclusive", f"{trials} trials per regime; a decision needs {min_trials}"
    lo, hi = ci
    if lo > tolerance:
        return True, f"the CI of the difference lies above +{tolerance:g}"
    if hi < -tolerance:
        return False, f"the CI of the difference lies below -{tolerance:g} (a regression)"
    return "inconclusive", f"the CI of the difference overlaps [-{tolerance:g}, +{tolerance:g}]"


def improvement(
    cand: Rows,
    base: Rows,
    *,
    safe: bool,
    seed: int,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The pack's ``aggregate.improvement``: point difference, its CI, n, verdict and reason.

    Args:
        cand, base: per regime the valid trials of the candidate and of its baseline
            (only regimes present on both sides are compared).
        safe: false when a safety cap was exceeded.
        seed: the bootstrap seed (``dream_stats.bootstrap_seed`` of the candidate).
    """
    regimes = [r for r in cand if r in base and cand[r] and base[r]]
    cm = {r: row_means(cand[r]) for r in regimes}
    bm = {r: row_means(base[r]) for r in regimes}
    terms = score_terms(cm, bm, regimes)
    point = normalised_score(cm, bm, regimes, terms)
    ci = difference_ci(cand, base, regimes, terms, seed=seed) if point is not None else None
    trials = min((min(len(cand[r]), len(base[r])) for r in regimes), default=0)
    verdict, reason = decide(ci, trials, safe=safe, tolerance=tolerance)
    return {
        "score_formula": FORMULA,
        "compared_regimes": regimes,
        "terms": terms,
        "difference": None if point is None else point - self_score(terms),
        "ci95": None if ci is None else list(ci),
        "trials": trials,
        "min_trials": MIN_DECISION_TRIALS,
        "tolerance": tolerance,
        "verdict": verdict,
        "reason": reason,
    }
