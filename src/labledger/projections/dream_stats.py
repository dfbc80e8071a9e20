"""D-REAM statistics for ``candidate_pack.v2`` (seed ``000_…``): bootstrap CIs, the pack.

Plain functions over plain data, shared by the ``dream_candidates`` projection,
the CLI and the tests. Nothing here reads a clock or unseeded randomness.

The score and the improvement decision live in ``dream_score``:
``score_v2`` is on the baseline's scale (1.0 = the baseline per term), and
``improves_over_baseline`` is ``true``, ``false`` or ``"inconclusive"`` by the
bootstrap CI of the score difference. ``score_v2_raw`` keeps the seed's
formula on raw units (``perf − 0.2·p95_ms − 0.1·watts`` over the overall
means: the mean over regimes of per-regime trial means) for comparison with
old packs.

Valid trials. A trial recorded with a ``failure`` (no work, too few requests,
a crashed workload) is listed in the regime's ``failed`` and counts in no
mean, delta, CI or score.

Absent KPIs. A KPI the machine could not measure is ``None`` in its trial and
stays absent: ``null`` at its place in the trial list, left out of means,
deltas and CIs, never replaced by 0. The pack's ``sensors`` says per sensor
whether it was measured, modelled or absent; ``caps_unverified`` names each
cap whose KPI no trial measured, and ``risk_profile`` gives, per checked cap,
the closest approach (peak observed) and the margin left.

Unsafe candidates (any ``dream.SafetyCapExceeded``) have ``safe = false`` and
``score_v2 = -inf``, written in JSON as the *string* ``"-inf"``: JSON has no
infinity, and ``null`` already means "cannot be scored". Any other
non-finite float is written the same way (``"inf"``, ``"-inf"``, ``"nan"``).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from labledger.projections import dream_score as score

METRICS = (
    "perf",
    "p95_ms",
    "watts",
    "temp_peak_c",
    "errors",
    "oom",
    "requests",
    "cpu_s",
    "peak_rss_mb",
    "watts_modelled",
)
"""The KPIs of a trial, in pack order."""
CAP_METRICS = ("temp_peak_c", "watts", "errors", "oom", "p95_ms", "peak_rss_mb", "error_rate")

ITERS = 2000
ALPHA = 0.05
LATENCY_WEIGHT = score.LATENCY_WEIGHT
POWER_WEIGHT = score.POWER_WEIGHT
TOLERANCE = score.TOLERANCE

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
    improvement: Mapping[str, Any],
    reference: Mapping[str, Mapping[str, float]],
    *,
    safe: bool,
) -> dict[str, Any]:
    """The pack's ``aggregate``: means, ``score_v2`` (normalised), ``score_v2_raw``, improvement.

    Args:
        regimes: per regime (pack order), the candidate's KPI means over valid trials.
        improvement: :func:`dream_score.improvement` against the baseline.
        reference: per regime, the baseline's means the score is normalised by.
        safe: false when a safety cap was exceeded (score −inf, no improvement).
    """
    per_regime = list(regimes.values())
    means: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        row = {r: m[metric] for r, m in regimes.items() if metric in m}
        if row:
            overall = _overall(per_regime, metric)
            means[metric] = row if overall is None else {**row, "overall": overall}
    raw_terms = {t for t in ("p95_ms", "watts") if _overall(per_regime, t) is not None}
    compared = [r for r in regimes if r in reference]
    terms = score.score_terms(regimes, reference, compared)
    normalised = score.normalised_score(regimes, reference, compared, terms)
    return {
        "means": means,
        "score_v2": normalised if safe else -math.inf,
        "score_formula": score.FORMULA,
        "score_formula_text": score.FORMULA_TEXT,
        "score_terms": terms,
        "score_v2_raw": _score(per_regime, raw_terms) if safe else -math.inf,
        "raw_formula": score.RAW_FORMULA,
        "compared_regimes": compared,
        "tolerance": improvement["tolerance"],
        "improvement": dict(improvement),
        "improves_over_baseline": improvement["verdict"],
    }


def regime_result(
    names: tuple[str, str, str],
    trials: Sequence[int],
    kpis: Mapping[str, Column],
    baseline: Mapping[str, Any] | None,
    failed: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One entry of the pack's ``regimes`` (seed ``RegimeResult``).

    Args:
        names: (cand_id, domain, regime), which also seed the bootstrap.
        trials: the valid trial numbers, in order; every ``kpis`` column aligns with them.
        kpis: per metric its column over the valid trials; metrics never measured are left out.
        baseline: the baseline's KPI values and ``baseline_id``, or ``None``.
        failed: the failed trials (``trial``, ``failure``), which count in nothing.

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
        "failed": [dict(f) for f in failed],
    }


class PackInputs(NamedTuple):
    """What :func:`build_pack` needs besides the regime results, read from the projection."""

    cand_rows: score.Rows
    """Per regime, the candidate's valid trials (metric → value)."""
    base_rows: score.Rows
    """Per regime that has a baseline, the baseline candidate's valid trials."""
    all_rows: Sequence[Mapping[str, Any]]
    """Every trial of the candidate (valid or not), for the risk profile."""
    run_caps: Mapping[str, float]
    """The caps its run checked (metric → max), ``{}`` when the run did not record them."""
    units: Mapping[str, str]
    sensors: Sequence[Mapping[str, Any]]
    """Per trial its sensor provenance."""
    artifacts: Sequence[Mapping[str, Any]]
    """Per trial (``regime``, ``trial``) the blob of its raw output (``sha256``)."""


def build_pack(
    header: Mapping[str, Any],
    regimes: Sequence[Mapping[str, Any]],
    caps: Sequence[Any],
    inputs: PackInputs,
) -> dict[str, Any]:
    """The whole ``candidate_pack.v2``, JSON-ready.

    Args:
        header: ``run_id``, ``domain``, ``cand_id``, ``generation``, ``genome``.
        regimes: :func:`regime_result` entries, in pack order.
        caps: the candidate's safety-cap breaches (any makes it unsafe).
        inputs: the trials, the baseline's trials and the provenance (:class:`PackInputs`).

    Returns:
        ``schema``, the header, ``units``, ``sensors``, ``regimes``, ``aggregate``,
        ``safe``, ``caps_exceeded``, ``caps_unverified``, ``risk_profile``, ``artifacts``.
    """
    safe = not caps
    means = {r["regime"]: regime_means(r["kpis"]) for r in regimes}
    reference = {r: score.row_means(rows) for r, rows in inputs.base_rows.items() if rows}
    seed = bootstrap_seed(str(header["cand_id"]), str(header["domain"]), "*", "score_diff")
    improvement = score.improvement(inputs.cand_rows, inputs.base_rows, safe=safe, seed=seed)
    profile, unverified = risk_profile(inputs.all_rows, inputs.run_caps)
    pack = {
        "schema": "candidate_pack.v2",
        **header,
        "units": dict(inputs.units),
        "sensors": sensor_summary(inputs.sensors),
        "regimes": list(regimes),
        "aggregate": aggregate(means, improvement, reference, safe=safe),
        "safe": safe,
        "caps_exceeded": list(caps),
        "caps_unverified": unverified,
        "risk_profile": profile,
        "artifacts": {"trial_outputs": [dict(a) for a in inputs.artifacts]},
    }
    result: dict[str, Any] = jsonable(pack)
    return result


def cap_value(row: Mapping[str, Any], metric: str) -> float | None:
    """A trial's value of a capped metric; ``error_rate`` is ``errors / requests``."""
    if metric == "error_rate":
        errors, requests = row.get("errors"), row.get("requests")
        return None if errors is None or not requests else errors / requests
    value = row.get(metric)
    return None if value is None else float(value)


def risk_profile(
    rows: Sequence[Mapping[str, Any]], caps: Mapping[str, float]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per checked cap its closest approach, and the caps no trial could check.

    Returns:
        ``({metric: {cap, peak, margin, trials_checked}}, [{metric, cap, reason}])``:
        ``margin = cap − peak`` (negative when exceeded); a cap whose KPI is
        absent in every trial is unverified, never given a 0.
    """
    profile: dict[str, Any] = {}
    unverified = []
    for metric in CAP_METRICS:
        if metric not in caps:
            continue
        values = [v for row in rows if (v := cap_value(row, metric)) is not None]
        if not values:
            reason = f"{metric} was not measured in any of {len(rows)} trials"
            unverified.append({"metric": metric, "cap": caps[metric], "reason": reason})
            continue
        peak = max(values)
        profile[metric] = {
            "cap": caps[metric],
            "peak": peak,
            "margin": caps[metric] - peak,
            "trials_checked": len(values),
        }
    return profile, unverified


def sensor_summary(per_trial: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per sensor its provenance over the trials: measured, modelled, absent or mixed."""
    found: dict[str, Any] = {}
    for sensor in ("watts", "temp_peak_c", "watts_modelled"):
        kinds = [p.get(sensor) or "absent" for p in per_trial]
        counts = {k: kinds.count(k) for k in sorted(set(kinds))}
        found[sensor] = {
            "provenance": kinds[0] if len(counts) == 1 else "mixed",
            "trials": counts,
        }
    models = sorted({m for p in per_trial if (m := p.get("watts_model"))})
    if models:
        found["watts_modelled"]["model"] = models[0] if len(models) == 1 else models
    return found


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float as a string (``"-inf"``, ``"inf"``, ``"nan"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
