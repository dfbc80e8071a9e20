"""Test profiles: a short one for CI and every-day runs, a long one for thorough runs.

``LABLEDGER_TEST_PROFILE=long`` multiplies example counts and kill rounds
(``make test-long``); the default ``short`` profile keeps the whole suite
within CI's budget while every property still runs on both backends.
"""

from __future__ import annotations

import os

PROFILE = os.environ.get("LABLEDGER_TEST_PROFILE", "short")
_SCALE = {"short": 0.5, "long": 5.0}.get(PROFILE, 1.0)


def examples(n: int) -> int:
    """Hypothesis examples for a test written with ``n`` in mind."""
    return max(3, round(n * _SCALE))


def rounds(n: int, *, minimum: int = 1) -> int:
    """Repetitions (kills, races) for a fault test written with ``n`` in mind."""
    return max(minimum, round(n * max(_SCALE, 1.0)) if PROFILE == "long" else n)
