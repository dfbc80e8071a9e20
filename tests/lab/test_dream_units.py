"""D-REAM lab, the pure parts and the I/O edges: config, evolve, caps, KPI parsing, sensors."""

from __future__ import annotations

import importlib.machinery
import json
import math
import random
import sys
import types
from pathlib import Path

import pytest

from labledger.errors import UsageError
from labledger.events.dream import CapMetric, Regime, TrialKpis
from labledger.lab.dream import evolve, measure
from labledger.lab.dream import state as st
from labledger.lab.dream.config import (
    DomainSpec,
    Evolution,
    load_caps,
    load_regimes,
    workloads_dir,
)
from labledger.lab.dream.measure import parse_fio, parse_kpis
from labledger.lab.dream.sensors import HostSensors, Meter, NoSensors, watts_between


def test_shipped_config_loads_with_every_regime_and_the_required_domains() -> None:
    regimes, caps = load_regimes(), load_caps()
    assert regimes.shipped and caps.shipped
    assert set(regimes.config.regimes) == set(Regime)
    assert {"cpu", "memory", "storage", "python_runtime", "gpu"} <= set(regimes.config.domains)
    assert regimes.config.domains["gpu"].requires == "cuda"
    assert regimes.config.policy.trials == 10
    for spec in regimes.config.domains.values():
        assert (workloads_dir() / spec.script).is_file()  # package data is found
    assert (workloads_dir() / regimes.config.background.fallback).is_file()
    assert len(regimes.sha256) == 64
    gpu = caps.config.for_domain("gpu")
    assert gpu.temp_peak_c is not None and gpu.temp_peak_c.max == 83
    assert gpu.oom is not None and gpu.oom.max == 0  # inherited from defaults
    # Caps that any machine can check (issue #14).
    cpu = caps.config.for_domain("cpu")
    assert cpu.p95_ms is not None and cpu.peak_rss_mb is not None and cpu.error_rate is not None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("schema: dream.regimes.v1\nregimes: {}\ndomains: {}\n", "not defined"),
        ("schema: nope\n", "schema"),
        ("schema: dream.regimes.v1\nregimes: [\n", "regimes.yaml"),
    ],
)
def test_bad_regimes_files_are_usage_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "regimes.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=needle):
        load_regimes(path)


def test_budgets_are_the_base_budget_times_the_regime_scale() -> None:
    scales = {"idle": 0.25, "normal": 1.0, "stress": 1.5, "mixed": 1.0}
    assert st.budgets_ms(200, scales) == {"idle": 50, "normal": 200, "stress": 300, "mixed": 200}
    assert st.budgets_ms(2, {"idle": 0.1}) == {"idle": 1}  # never below 1 ms


SPACE = {"threads": [1, 2, 4, 8], "algo": ["a", "b"]}


def test_evolution_is_seeded_and_keeps_the_elite() -> None:
    first = evolve.initial_population(SPACE, 5, evolve.rng_for(3, 0))
    assert first == evolve.initial_population(SPACE, 5, evolve.rng_for(3, 0))
    assert all(g["threads"] in SPACE["threads"] and g["algo"] in SPACE["algo"] for g in first)
    scores = [1.0, 5.0, -math.inf, 2.0, 5.0]
    evo = Evolution(mutation_rate=0.5, elite=2, tournament=2)
    nxt = evolve.next_population(first, scores, SPACE, 5, evo, evolve.rng_for(3, 1))
    assert nxt == evolve.next_population(first, scores, SPACE, 5, evo, evolve.rng_for(3, 1))
    assert nxt[:2] == [first[1], first[4]]  # best two, ties to the lower index
    assert len(nxt) == 5
    assert evolve.best_index(scores) == 1
    assert evolve.best_index([-math.inf, -math.inf]) is None


def test_fitness_treats_unsafe_and_unscored_as_minus_infinity() -> None:
    assert evolve.fitness(2.5) == 2.5
    assert evolve.fitness("-inf") == -math.inf
    assert evolve.fitness(None) == -math.inf


def test_mutation_steps_to_a_neighbouring_choice() -> None:
    rng = random.Random(0)
    for _ in range(50):
        child = evolve.mutate({"threads": 2, "algo": "a"}, SPACE, 1.0, rng)
        assert child["threads"] in (1, 4)
        assert child["algo"] == "b"


def kpis(**values: float | None) -> TrialKpis:
    base: dict[str, float | None] = dict.fromkeys(
        ("perf", "p95_ms", "watts", "temp_peak_c", "errors", "oom")
    )
    return TrialKpis(**(base | values))  # type: ignore[arg-type]


def test_caps_compare_measured_kpis_only() -> None:
    caps = load_caps().config.for_domain("cpu")
    assert st.breaches(kpis(perf=1.0), caps) == []  # nothing measured, nothing exceeded
    found = st.breaches(kpis(temp_peak_c=93.5, errors=2, requests=100, oom=0, watts=10.0), caps)
    assert [(b.metric, b.observed) for b in found] == [
        (CapMetric.TEMP_PEAK_C, 93.5),
        (CapMetric.ERROR_RATE, 0.02),
    ]
    assert found[0].cap.sensor == "cpu"


def test_absent_kpis_stay_absent_and_host_readings_fill_in() -> None:
    line = json.dumps({"perf": 3.0, "p95_ms": None, "errors": 0, "oom": 0})
    got = parse_kpis("noise\n" + line + "\n", watts=None, temp=None)
    assert got == kpis(perf=3.0, errors=0, oom=0)
    assert parse_kpis(line, watts=12.5, temp=40.0).watts == 12.5
    own = json.dumps({"perf": 3.0, "watts": 99.0})
    assert parse_kpis(own, watts=12.5, temp=None).watts == 99.0  # the device's own reading wins
    for bad in ("", '{"perf": "fast"}', '{"errors": 1.5}', '{"p95_ms": -1}', "[1]"):
        with pytest.raises(ValueError):
            parse_kpis(bad, watts=None, temp=None)


def test_rapl_and_thermal_readings_from_sysfs(tmp_path: Path) -> None:
    pkg = tmp_path / "powercap" / "intel-rapl:0"
    sub = tmp_path / "powercap" / "intel-rapl:0:0"  # a sub-zone: not counted twice
    for zone, energy in ((pkg, 1_000_000), (sub, 5)):
        zone.mkdir(parents=True)
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text("2000000\n")
    for i, (kind, milli) in enumerate([("x86_pkg_temp", 55000), ("SODIMM", 41000)]):
        zone = tmp_path / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{milli}\n")
    sensors = HostSensors(tmp_path / "powercap", tmp_path / "thermal")
    assert sensors.energy_uj() == {"intel-rapl:0": 1_000_000}
    assert sensors.temperature_c("cpu") == 55.0
    assert sensors.temperature_c("dimm") == 41.0
    assert sensors.temperature_c("gpu") is None
    meter = Meter(sensors, "cpu", 0.0)
    (pkg / "energy_uj").write_text("500000\n")  # wrapped: 1.5 J later
    assert meter.stop(0.5) == (pytest.approx(3.0), 55.0)
    assert watts_between({}, {}, {}, 1.0) is None
    assert Meter(NoSensors(), "cpu", 0.0).stop(1.0) == (None, None)


def test_fio_json_becomes_kpis() -> None:
    def side(bw: float, p95_ns: float) -> dict[str, object]:
        return {"bw": bw, "clat_ns": {"percentile": {"95.000000": p95_ns}}}

    job = {"read": side(1024.0, 2e6), "write": side(3072.0, 5e6), "error": 0}
    assert parse_fio(json.dumps({"jobs": [job]})) == {
        "perf": 4.0,
        "p95_ms": 5.0,
        "errors": 0,
        "oom": 0,
    }


def test_gpu_is_skipped_without_torch_or_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DomainSpec(script="gpu.py", perf_unit="TFLOP/s", genes={"size": [1]}, requires="cuda")
    fake = types.ModuleType("torch")
    fake.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert "no CUDA device" in (measure.unavailable(spec) or "")
    monkeypatch.setattr(measure.importlib.util, "find_spec", lambda name: None)
    assert measure.unavailable(spec) == "torch is not installed"
    cpu = DomainSpec(script="cpu.py", perf_unit="x", genes={"threads": [1]})
    assert measure.unavailable(cpu) is None


def test_trial_ids_are_deterministic_per_trial() -> None:
    a = st.DREAM_RUNS.event_id("r1", "trial", 0, "r1.gen0_ind0", "idle", 2)
    assert a == st.DREAM_RUNS.event_id("r1", "trial", 0, "r1.gen0_ind0", "idle", 2)
    assert a != st.DREAM_RUNS.event_id("r1", "trial", 0, "r1.gen0_ind0", "idle", 3)
    assert st.cand_id("r1", 2, 3) == "r1.gen2_ind3"


def toy_spec(tmp_path: Path, line: str, **kw: object) -> measure.TrialSpec:
    script = tmp_path / "toy.py"
    script.write_text(f"print({line!r})\n")
    fields: dict[str, object] = {
        "genome": {},
        "budget_ms": 10,
        "mode": "steady",
        "background": 0,
        "timeout_s": 30.0,
        "workdir": tmp_path,
        "seed": 0,
        "min_requests": 20,
    }
    return measure.TrialSpec(script=script, **(fields | kw))  # type: ignore[arg-type]


def test_a_zero_work_trial_is_a_failed_trial(tmp_path: Path) -> None:
    """Issue #14: perf 0 with no errors used to be a valid trial."""
    bg = load_regimes().config.background
    idle = json.dumps({"perf": 0.0, "p95_ms": None, "errors": 0, "oom": 0, "requests": 0})
    got = measure.measure(toy_spec(tmp_path, idle), 1, NoSensors(), bg)
    assert got.failure == "the trial did no work" and got.attempts == 2
    few = json.dumps({"perf": 5.0, "p95_ms": 1.0, "errors": 0, "oom": 0, "requests": 3})
    got = measure.measure(toy_spec(tmp_path, few), 0, NoSensors(), bg)
    assert got.failure is not None and "only 3 requests" in got.failure
    assert got.kpis.perf == 5.0  # recorded as measured, but it counts in nothing


def test_absent_sensors_have_provenance_and_power_is_modelled(tmp_path: Path) -> None:
    line = json.dumps(
        {"perf": 5.0, "p95_ms": 1.0, "errors": 0, "oom": 0, "requests": 50, "cpu_s": 0.5}
    )
    got = measure.measure(
        toy_spec(tmp_path, line), 0, NoSensors(), load_regimes().config.background
    )
    assert got.failure is None
    assert got.kpis.watts is None and got.kpis.temp_peak_c is None  # absent, never 0
    assert got.sensors.watts.value == "absent" and got.sensors.temp_peak_c.value == "absent"
    assert got.kpis.watts_modelled is not None and got.kpis.watts_modelled > 0
    assert got.sensors.watts_modelled.value == "modelled" and got.sensors.watts_model


def test_a_cap_fires_from_a_real_workload_made_to_exceed_it(tmp_path: Path) -> None:
    """The real cpu workload under a p95 ceiling it cannot meet, and an RSS cap below its own."""
    regimes = load_regimes()
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
    got = measure.measure(spec, 0, NoSensors(), regimes.config.background)
    assert got.failure is None and got.kpis.requests and got.kpis.peak_rss_mb
    text = "schema: dream.caps.v1\ndefaults: {p95_ms: {max: 0.000001}, peak_rss_mb: {max: 1}}\n"
    (tmp_path / "caps.yaml").write_text(text)
    caps = load_caps(tmp_path / "caps.yaml").config.for_domain("cpu")
    fired = {b.metric for b in st.breaches(got.kpis, caps)}
    assert fired == {CapMetric.P95_MS, CapMetric.PEAK_RSS_MB}
