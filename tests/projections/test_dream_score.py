"""The improvement decision of D-REAM (issue #14): by the bootstrap CI of the score difference.

Trials are drawn from known distributions with a fixed seed, at the sample
sizes a run uses (10 trials, the default; 3, the short lab session), so each
verdict is reproducible and the test can fail.
"""

from __future__ import annotations

import random

import pytest

from labledger.projections import dream_score as sc

REGIMES = ("idle", "normal", "stress", "mixed")


def draws(perf: float, p95: float, n: int, seed: int, spread: float = 0.03) -> sc.Rows:
    """Per regime ``n`` trials with perf and p95 around the given means (relative spread)."""
    rng = random.Random(seed)
    return {
        r: [
            {"perf": rng.gauss(perf, perf * spread), "p95_ms": rng.gauss(p95, p95 * spread)}
            for _ in range(n)
        ]
        for r in REGIMES
    }


def test_a_known_improvement_is_detected() -> None:
    base = draws(100.0, 1.0, 10, seed=1)
    cand = draws(110.0, 1.0, 10, seed=2)  # +10 % perf, same latency
    got = sc.improvement(cand, base, safe=True, seed=7)
    assert got["verdict"] is True, got
    assert got["ci95"][0] > sc.TOLERANCE
    assert got["difference"] == pytest.approx(0.10, abs=0.03)
    assert got["trials"] == 10 and got["terms"]["latency"] == "p95_ms"


def test_equal_distributions_are_inconclusive() -> None:
    base = draws(100.0, 1.0, 10, seed=3)
    cand = draws(100.0, 1.0, 10, seed=4)
    got = sc.improvement(cand, base, safe=True, seed=7)
    assert got["verdict"] == "inconclusive", got
    lo, hi = got["ci95"]
    assert lo < 0.0 < hi


def test_a_known_regression_is_detected() -> None:
    base = draws(100.0, 1.0, 10, seed=5)
    cand = draws(100.0, 1.5, 10, seed=6)  # latency 50 % worse: -0.2 * 0.5 = -0.1
    got = sc.improvement(cand, base, safe=True, seed=7)
    assert got["verdict"] is False, got
    assert got["ci95"][1] < -sc.TOLERANCE
    assert got["difference"] == pytest.approx(-0.10, abs=0.03)


def test_too_few_trials_are_inconclusive_even_for_a_real_gain() -> None:
    base = draws(100.0, 1.0, 3, seed=1)
    cand = draws(150.0, 1.0, 3, seed=2)
    got = sc.improvement(cand, base, safe=True, seed=7)
    assert got["verdict"] == "inconclusive" and "needs 5" in got["reason"]
    assert got["ci95"] is not None and got["ci95"][0] > 0.3  # the data is clear; n is not


def test_unsafe_never_improves_and_no_baseline_is_inconclusive() -> None:
    base, cand = draws(100.0, 1.0, 10, seed=1), draws(150.0, 1.0, 10, seed=2)
    assert sc.improvement(cand, base, safe=False, seed=7)["verdict"] is False
    alone = sc.improvement(cand, {}, safe=True, seed=7)
    assert alone["verdict"] == "inconclusive" and alone["difference"] is None


def test_the_baseline_scores_point_seven_against_itself_with_every_term() -> None:
    means = {"idle": {"perf": 10.0, "p95_ms": 2.0, "watts_modelled": 15.0}}
    terms = sc.score_terms(means, means, ["idle"])
    assert terms == {"perf": "perf", "latency": "p95_ms", "power": "watts_modelled"}
    assert sc.normalised_score(means, means, ["idle"], terms) == pytest.approx(0.7)
    assert sc.self_score(terms) == pytest.approx(0.7)
    # Measured watts win over the model when both sides have them.
    both = {"idle": {**means["idle"], "watts": 30.0}}
    assert sc.score_terms(both, both, ["idle"])["power"] == "watts"


def test_the_ci_is_seeded() -> None:
    base, cand = draws(100.0, 1.0, 10, seed=1), draws(104.0, 1.0, 10, seed=2)
    a = sc.improvement(cand, base, safe=True, seed=11)
    assert a == sc.improvement(cand, base, safe=True, seed=11)
