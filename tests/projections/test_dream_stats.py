"""D-REAM pack statistics against independent computations (seed ``000_…``)."""

from __future__ import annotations

import hashlib
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.projections import dream_stats as ds
from labledger.testing.profile import examples

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=12)


def plain_bootstrap(vals: list[float], seed: int) -> tuple[float, float]:
    """2,000 resamples drawn one index at a time, as ``Random.choices`` draws them."""
    rng = random.Random(seed)
    n = len(vals)
    means = []
    for _ in range(2000):
        total = 0.0
        picked = []
        for _ in range(n):
            picked.append(vals[math.floor(rng.random() * n)])
        total = math.fsum(picked)
        means.append(total / n)
    means.sort()
    return means[50], means[1949]


@settings(max_examples=examples(25), deadline=None)
@given(vals=values, seed=st.integers(0, 2**64 - 1))
def test_bootstrap_ci_equals_a_plain_loop_with_the_same_seed(vals: list[float], seed: int) -> None:
    assert ds.bootstrap_ci(vals, seed=seed) == plain_bootstrap(vals, seed)


def test_bootstrap_ci_brackets_the_mean_and_handles_small_n() -> None:
    vals = [1.0, 1.02, 0.98, 1.05, 1.01, 0.99, 1.03, 1.0, 0.97, 1.04]
    lo, hi = ds.bootstrap_ci(vals, seed=7) or (math.nan, math.nan)
    assert lo <= statistics.fmean(vals) <= hi
    assert min(vals) <= lo < hi <= max(vals)
    assert ds.bootstrap_ci([1.0], seed=7) is None
    assert ds.bootstrap_ci([], seed=7) is None
    assert ds.bootstrap_ci([3.0, 3.0], seed=7) == (3.0, 3.0)


def test_bootstrap_seed_is_sha256_of_the_names() -> None:
    digest = hashlib.sha256(b"gen0_ind7\x1fcpu\x1fidle\x1fperf").digest()
    assert ds.bootstrap_seed("gen0_ind7", "cpu", "idle", "perf") == int.from_bytes(digest[:8])
    assert ds.bootstrap_seed("a", "b", "c", "d") != ds.bootstrap_seed("a", "b", "c", "e")


def test_composite_score_by_hand() -> None:
    assert ds.composite_score(10.0, 20.0, 50.0) == pytest.approx(10.0 - 4.0 - 5.0)
    assert ds.composite_score(10.0, None, 50.0) == pytest.approx(5.0)
    assert ds.composite_score(10.0, 20.0, None) == pytest.approx(6.0)
    assert ds.composite_score(10.0, None, None) == 10.0


def test_mean_does_not_overflow_near_the_float_range() -> None:
    big = 1.7e308
    assert ds.mean([big, big]) == big
    with pytest.raises(ValueError):
        ds.mean([])


def test_aggregate_means_normalised_and_raw_scores_by_hand() -> None:
    regimes = {
        "idle": {"perf": 10.0, "p95_ms": 2.0, "watts": 40.0},
        "stress": {"perf": 20.0, "p95_ms": 6.0, "watts": 60.0},
    }
    reference = {"idle": {"perf": 8.0, "p95_ms": 4.0, "watts": 40.0}}
    imp = {"tolerance": 0.01, "verdict": "inconclusive"}
    agg = ds.aggregate(regimes, imp, reference, safe=True)
    assert agg["means"]["perf"] == {"idle": 10.0, "stress": 20.0, "overall": 15.0}
    assert agg["score_v2_raw"] == pytest.approx(15.0 - 0.2 * 4.0 - 0.1 * 50.0)
    # Only idle has a reference: 10/8 - 0.2 * 2/4 - 0.1 * 40/40 (issue #14: one scale).
    assert agg["compared_regimes"] == ["idle"]
    assert agg["score_v2"] == pytest.approx(1.25 - 0.1 - 0.1)
    assert agg["improves_over_baseline"] == "inconclusive"
    unsafe = ds.aggregate(regimes, imp, reference, safe=False)
    assert unsafe["score_v2"] == -math.inf and unsafe["score_v2_raw"] == -math.inf
    no_perf = ds.aggregate({"idle": {"watts": 3.0}}, imp, {}, safe=True)
    assert no_perf["score_v2"] is None
    assert no_perf["means"] == {"watts": {"idle": 3.0, "overall": 3.0}}


def test_absent_sensors_are_named_never_zero() -> None:
    rows = [{"perf": 5.0, "p95_ms": 1.0, "watts": None, "errors": 0, "requests": 100}] * 3
    caps = {"watts": 250.0, "p95_ms": 50.0, "error_rate": 0.001, "temp_peak_c": 90.0}
    profile, unverified = ds.risk_profile(rows, caps)
    assert [u["metric"] for u in unverified] == ["temp_peak_c", "watts"]
    assert "watts" not in profile and "temp_peak_c" not in profile
    assert profile["p95_ms"] == {"cap": 50.0, "peak": 1.0, "margin": 49.0, "trials_checked": 3}
    assert profile["error_rate"]["peak"] == 0.0
    summary = ds.sensor_summary([{"watts": "absent", "temp_peak_c": "absent"}] * 3)
    assert summary["watts"] == {"provenance": "absent", "trials": {"absent": 3}}


def test_regime_result_aligns_with_trials_and_drops_unmeasured_metrics() -> None:
    kpis = {"perf": [1.0, None, 3.0], "watts": [None, None, None], "errors": [0, 0, 1]}
    base = {"perf": 2.0, "baseline_id": "bl-x"}
    result = ds.regime_result(("c", "cpu", "idle"), [0, 1, 2], kpis, base)
    assert result["kpis"] == {"perf": [1.0, None, 3.0], "errors": [0, 0, 1]}
    assert result["delta"] == {"perf": [-1.0, None, 1.0]}
    seed = ds.bootstrap_seed("c", "cpu", "idle", "perf")
    assert result["ci95"]["perf"] == list(plain_bootstrap([1.0, 3.0], seed))
    assert result["trials"] == 3 and result["baseline"] == base and result["failed"] == []


def test_jsonable_spells_non_finite_floats() -> None:
    assert ds.jsonable({"a": [-math.inf, math.inf, math.nan, 1.5]}) == {
        "a": ["-inf", "inf", "nan", 1.5]
    }
