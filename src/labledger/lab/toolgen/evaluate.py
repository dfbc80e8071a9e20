"""Evaluation: run a generated tool in budgeted subprocesses and measure it.

Each run is a fresh ``python -S -s -P _runner.py`` with a clean environment,
its address space limited to the epoch's memory budget (``RLIMIT_AS``, set in
``preexec_fn``) and killed at the epoch's timeout. The tests run twice, in two
processes with different ``PYTHONHASHSEED`` values derived from the trial: a
tool whose results depend on hash order (set iteration) shows up as a flake,
and because the seeds are derived, the same trial is judged the same way when
a run is resumed. The first run also checks robustness against the spec's
reference implementation and times the benchmark ``timed_runs`` times, each
run paired with a run of the reference implementation in the same process
(the reference's median is what the performance score compares with: measured
on this machine, in this run, under the same load), then traces one more
benchmark run's peak memory.

The child reports its tests before it starts the benchmark, so a tool killed at
the timeout during the benchmark keeps its test results (``median_ms`` is then
``None`` and its performance 0): the budget is a hard limit on speed, not a
verdict on correctness.
"""

from __future__ import annotations

import functools
import json
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from typing import Any

import msgspec

from labledger.events.toolgen import Budgets
from labledger.lab.toolgen._inputs import generate
from labledger.lab.toolgen.specs import Spec, get_spec

DEFAULT_TIMED_RUNS = 30
MIN_TIMED_RUNS = 3
BENCH_SHARE = 0.5
"""The benchmark stops adding runs (after the first 3) once half the timeout has passed."""
MIN_MS = 1e-6
"""A floor for the reference's median (a ratio's denominator is never 0)."""
FLAKY, STABLE = 0.5, 1.0


class RunReport(msgspec.Struct, kw_only=True):
    """What one child process reported (or why it reported nothing)."""

    loaded: bool = False
    tests: list[bool] = msgspec.field(default_factory=list)
    robust: list[bool] = msgspec.field(default_factory=list)
    failures: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Per failing test: its index, whether it raised, got, expected, the line in tool.py."""
    timings_ms: list[float] = msgspec.field(default_factory=list)
    reference_ms: list[float] = msgspec.field(default_factory=list)
    peak_kib: float | None = None
    error: str = ""


_decode_line = msgspec.json.Decoder(dict[str, Any]).decode


def _report(stdout: bytes, error: str = "") -> RunReport:
    """Merge the child's JSON lines (tests first, then the benchmark) into one report."""
    merged: dict[str, Any] = {}
    try:
        for line in stdout.splitlines():
            if line.strip():
                merged.update(_decode_line(line))
        report = msgspec.convert(merged, RunReport)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return RunReport(error=f"unreadable report: {exc}")
    if error:
        report.error = error
    return report


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """The measured facts of one evaluation (scores are computed from them)."""

    correctness: float
    """Fraction of reference tests passed in both runs."""
    stability: float
    """1.0 when both runs gave the same per-test results, 0.5 otherwise."""
    robustness: float
    median_ms: float | None
    """Median of the timed runs; None when fewer than 3 (or ``timed_runs``) completed."""
    reference_ms: float | None = None
    """Median of the reference's runs paired with the timed runs; None likewise."""
    peak_kib: float | None = None
    """Peak traced memory of one benchmark run; None when it did not run."""
    failures: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """The first run's failing tests (the handoff's test output)."""
    detail: str = ""


@functools.cache
def _inputs(spec_id: str) -> tuple[list[list[Any]], list[list[Any]]]:
    spec = get_spec(spec_id)
    return generate(spec.robustness), generate(spec.benchmark, count=1)


def _limit(memory_mb: float) -> Callable[[], None]:
    limit = int(memory_mb * 1024 * 1024)

    def preexec() -> None:  # runs in the child, between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return preexec


def run_child(job: dict[str, Any], budgets: Budgets, hash_seed: int) -> RunReport:
    """Run ``_runner.py`` on ``job`` under ``budgets``; a timeout, crash or
    unreadable report becomes a :class:`RunReport` with ``error`` set."""
    runner = resources.files("labledger.lab.toolgen").joinpath("_runner.py")
    with resources.as_file(runner) as path:
        try:
            done = subprocess.run(
                [sys.executable, "-S", "-s", "-P", str(path)],
                input=json.dumps(job).encode(),
                capture_output=True,
                timeout=budgets.timeout_ms / 1000.0,
                preexec_fn=_limit(budgets.memory_mb),
                env={"PYTHONHASHSEED": str(hash_seed)},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            timeout = f"timeout: over the {budgets.timeout_ms:g} ms budget"
            return _report(exc.stdout or b"", timeout)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        memory = " (memory budget)" if "MemoryError" in tail[0] else ""
        return _report(done.stdout, f"exit {done.returncode}{memory}: {tail[0][:200]}")
    return _report(done.stdout)


def _job(
    code: str, spec: Spec, budgets: Budgets, *, robust: bool, timed_runs: int
) -> dict[str, Any]:
    robust_inputs, bench = _inputs(spec.id)
    return {
        "code": code,
        "function": spec.function,
        "reference": spec.reference,
        "tests": [{"args": c.args, "expected": c.expected} for c in spec.tests],
        "robust": robust_inputs if robust else [],
        "bench": bench,
        "timed_runs": timed_runs,
        "bench_deadline_s": budgets.timeout_ms / 1000.0 * BENCH_SHARE,
    }


def _passed(report: RunReport, n: int) -> list[bool]:
    return report.tests if len(report.tests) == n else [False] * n


def check(code: str, spec: Spec, budgets: Budgets, hash_seed: int) -> float:
    """One quick run of the reference tests: the fraction passed (RepairLab's re-test)."""
    report = run_child(_job(code, spec, budgets, robust=False, timed_runs=0), budgets, hash_seed)
    n = len(spec.tests)
    return sum(_passed(report, n)) / n


def evaluate(
    code: str,
    spec: Spec,
    budgets: Budgets,
    *,
    hash_seeds: tuple[int, int],
    timed_runs: int = DEFAULT_TIMED_RUNS,
) -> Measurement:
    """Test twice (flake detection), check robustness, and time ``timed_runs`` runs.

    Args:
        code: the generated tool's source.
        spec: its spec (tests, inputs, reference).
        budgets: the epoch's timeout and memory limit, enforced on each child.
        hash_seeds: ``PYTHONHASHSEED`` of the first and the second run.
        timed_runs: benchmark repetitions; the median is reported (seed: 30). A slow
            tool gets fewer (at least 3): the child stops timing at half its timeout.
    """
    job = _job(code, spec, budgets, robust=True, timed_runs=timed_runs)
    first = run_child(job, budgets, hash_seeds[0])
    second = run_child(
        _job(code, spec, budgets, robust=False, timed_runs=0), budgets, hash_seeds[1]
    )
    n = len(spec.tests)
    a, b = _passed(first, n), _passed(second, n)
    robust = first.robust
    enough = min(MIN_TIMED_RUNS, timed_runs)
    # Timings arrive only when the timed runs finished; an error after them (a timeout
    # during the traced memory run) leaves them valid and only the peak unknown.
    ran = first.loaded and timed_runs > 0 and len(first.timings_ms) >= enough
    return Measurement(
        correctness=sum(x and y for x, y in zip(a, b, strict=True)) / n,
        stability=STABLE if a == b else FLAKY,
        robustness=sum(robust) / len(robust) if robust and first.loaded else 0.0,
        median_ms=statistics.median(first.timings_ms) if ran else None,
        reference_ms=max(statistics.median(first.reference_ms), MIN_MS) if ran else None,
        peak_kib=first.peak_kib if ran else None,  # None too when the trace timed out
        failures=_failures(first, second, n),
        detail="; ".join(e for e in (first.error, second.error) if e),
    )


def _failures(first: RunReport, second: RunReport, n: int) -> list[dict[str, Any]]:
    """The failing tests of either run (a flake fails only in one), or why nothing ran."""
    found = {f["test"]: f for f in second.failures} | {f["test"]: f for f in first.failures}
    if not found and (len(first.tests) != n or len(second.tests) != n):
        return [{"test": None, "raised": True, "got": first.error or second.error, "line": None}]
    return [found[k] for k in sorted(found)]
