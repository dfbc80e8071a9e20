"""D-REAM trials that must not count, sensors that are absent, caps that fire (issue #14).

Real subprocesses: a toy script printing a fixed line, and the shipped cpu workload.
"""

from __future__ import annotations

import json
from pathlib import Path

from labledger.events.dream import CapMetric
from labledger.lab.dream import measure
from labledger.lab.dream import state as st
from labledger.lab.dream.config import load_caps, load_regimes, workloads_dir
from labledger.lab.dream.sensors import NoSensors


def toy_spec(tmp_path: Path, line: str) -> measure.TrialSpec:
    script = tmp_path / "toy.py"
    script.write_text(f"print({line!r})\n")
    return measure.TrialSpec(
        script=script,
        genome={},
        budget_ms=10,
        mode="steady",
        background=0,
        timeout_s=30.0,
        workdir=tmp_path,
        seed=0,
        min_requests=20,
    )


def run(spec: measure.TrialSpec, retries: int = 0) -> measure.Measured:
    return measure.measure(spec, retries, NoSensors(), load_regimes().config.background)


def test_a_zero_work_trial_is_a_failed_trial(tmp_path: Path) -> None:
    """perf 0 with no errors used to be recorded as a valid trial."""
    idle = json.dumps({"perf": 0.0, "p95_ms": None, "errors": 0, "oom": 0, "requests": 0})
    got = run(toy_spec(tmp_path, idle), retries=1)
    assert got.failure == "the trial did no work" and got.attempts == 2
    few = json.dumps({"perf": 5.0, "p95_ms": 1.0, "errors": 0, "oom": 0, "requests": 3})
    got = run(toy_spec(tmp_path, few))
    assert got.failure is not None and "only 3 requests" in got.failure
    assert got.kpis.perf == 5.0  # recorded as measured, but it counts in nothing


def test_absent_sensors_have_provenance_and_power_is_modelled(tmp_path: Path) -> None:
    kpis = {"perf": 5.0, "p95_ms": 1.0, "errors": 0, "oom": 0, "requests": 50, "cpu_s": 0.5}
    got = run(toy_spec(tmp_path, json.dumps(kpis)))
    assert got.failure is None
    assert got.kpis.watts is None and got.kpis.temp_peak_c is None  # absent, never 0
    assert got.sensors.watts.value == "absent" and got.sensors.temp_peak_c.value == "absent"
    assert got.kpis.watts_modelled is not None and got.kpis.watts_modelled > 0
    assert got.sensors.watts_modelled.value == "modelled" and got.sensors.watts_model


def test_a_cap_fires_from_a_real_workload_made_to_exceed_it(tmp_path: Path) -> None:
    """The real cpu workload under a p95 ceiling it cannot meet, and an RSS cap below its own."""
    spec = measure.TrialSpec(
        script=workloads_dir() / "cpu.py",
        genome={"threads": 1, "chunk_kb": 1, "algo": "sha256"},
        budget_ms=50,
        mode="steady",
        background=0,
        timeout_s=30.0,
        workdir=tmp_path,
        seed=0,
    )
    got = run(spec)
    assert got.failure is None and got.kpis.requests and got.kpis.peak_rss_mb
    text = "schema: dream.caps.v1\ndefaults: {p95_ms: {max: 0.000001}, peak_rss_mb: {max: 1}}\n"
    (tmp_path / "caps.yaml").write_text(text)
    caps = load_caps(tmp_path / "caps.yaml").config.for_domain("cpu")
    fired = {b.metric for b in st.breaches(got.kpis, caps)}
    assert fired == {CapMetric.P95_MS, CapMetric.PEAK_RSS_MB}


def memory_trial(tmp_path: Path, genome: dict[str, object]) -> measure.Measured:
    spec = measure.TrialSpec(
        script=workloads_dir() / "memory.py",
        genome=genome,
        budget_ms=100,
        mode="steady",
        background=0,
        timeout_s=30.0,
        workdir=tmp_path,
        seed=0,
        min_requests=1,
    )
    return run(spec)


def test_the_memory_workload_serves_fixed_requests_and_its_genes_change_the_outcome(
    tmp_path: Path,
) -> None:
    """One request is one 1 MiB buffer of 256 pages; a 64-buffer pool holds 64 MiB more."""
    genes = load_regimes().config.domains["memory"].genes
    assert set(genes) == {"alloc", "pool"}
    fresh = memory_trial(tmp_path, {"alloc": "mmap", "pool": 0})
    pooled = memory_trial(tmp_path, {"alloc": "mmap", "pool": 64})
    for got in (fresh, pooled):
        assert got.failure is None, got.failure
        assert got.kpis.requests and got.kpis.errors == 0 and got.kpis.oom == 0
        assert got.kpis.p95_ms is not None and got.kpis.perf is not None
        # perf is requests x 1 MiB over the busy time, so it cannot exceed requests / budget.
        assert got.kpis.perf <= got.kpis.requests * 1.0 / 0.1 * 1.01
    assert fresh.kpis.peak_rss_mb is not None and pooled.kpis.peak_rss_mb is not None
    assert pooled.kpis.peak_rss_mb - fresh.kpis.peak_rss_mb >= 32  # the pool's buffers are live
    bad = memory_trial(tmp_path, {"alloc": "brk", "pool": 0})
    assert bad.failure is not None  # an unknown allocator is a failed trial, not a silent default
