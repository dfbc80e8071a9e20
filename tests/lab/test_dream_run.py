"""D-REAM runs end to end on both backends (issue #6): the log, the read models, resume.

A toy workload prints KPIs that are a known function of its genome and budget,
so budgets, scores, fitness, selection and baselines can be computed by hand.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

import labledger
from labledger import EventStore
from labledger.cli.main import run as cli
from labledger.events import Event
from labledger.events.dream import GenerationCompleted, SafetyCapExceeded, TrialRecorded
from labledger.events.runs import Heartbeat, RunFinished, RunResumed, RunStarted
from labledger.events.typed import Typed, typed
from labledger.lab.dream import evolve
from labledger.lab.dream import state as st
from labledger.lab.dream.config import Evolution
from labledger.lab.dream.runner import RunRequest, start_run
from labledger.lab.dream.sensors import NoSensors
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.dream import candidate_pack, current_baselines
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

TOY = """
import argparse, json, time
p = argparse.ArgumentParser()
for name in ("--genome", "--mode", "--workdir", "--budget-ms", "--seed"):
    p.add_argument(name)
a = p.parse_args()
g, budget = json.loads(a.genome), float(a.budget_ms)
time.sleep(budget * SLEEP / 1000)
print(json.dumps({"perf": 10.0 * g["x"] + g["y"] + budget / 100,
                  "p95_ms": g["x"] + budget / 1000, "errors": int(g["x"] == 3), "oom": 0}))
"""
REGIMES = """
schema: dream.regimes.v1
policy: {trials: 10, retries: 1, timeout_s: 30, budget_ms: BUDGET, heartbeat_every: 3}
evolution: {mutation_rate: 0.5, elite: 1, tournament: 2}
regimes:
  idle:   {scale: 0.25}
  normal: {scale: 1.0}
  stress: {scale: 1.5}
  mixed:  {scale: 1.0, mode: alternate}
domains:
  toy: {script: toy.py, perf_unit: toy ops/s, genes: {x: [1, 2, 3], y: [0, 5]}}
"""
CAPS = "schema: dream.caps.v1\ndefaults: {errors: {max: 0}, oom: {max: 0}}\n"
SCALES = {"idle": 0.25, "normal": 1.0, "stress": 1.5, "mixed": 1.0}
NAMES = ("dream_candidates", "dream_baselines", "runs")


def toy_files(tmp: Path, budget: int, sleep: float) -> tuple[Path, Path]:
    (tmp / "toy.py").write_text(TOY.replace("SLEEP", str(sleep)))
    (tmp / "regimes.yaml").write_text(REGIMES.replace("BUDGET", str(budget)))
    (tmp / "caps.yaml").write_text(CAPS)
    return tmp / "regimes.yaml", tmp / "caps.yaml"


@pytest.fixture
def store(backend: Backend) -> Iterator[EventStore]:
    with fresh_ledger(backend) as s:
        yield s


def stream(store: EventStore, run_id: str) -> list[Typed[Event]]:
    return list(typed(store.read_stream(st.DREAM_RUNS.stream(run_id))))


E = TypeVar("E", bound=Event)


def of(items: list[Typed[Event]], cls: type[E]) -> list[E]:
    return [i.event for i in items if isinstance(i.event, cls)]


def engine(store: EventStore) -> ProjectionEngine:
    eng = ProjectionEngine(store, [p for p in all_projections() if p.name in NAMES])
    for name in NAMES:
        eng.catch_up(name)
    return eng


def hand_score(genome: dict[str, Any], budgets: dict[str, int], ref: dict[str, Any]) -> float:
    """score_v2 by hand, normalised by the baseline genome ``ref`` per regime (issue #14).

    mean over regimes of perf / perf_ref − 0.2 · mean over regimes of p95 / p95_ref;
    the toy reports no CPU time, so there is no power term.
    """
    if genome["x"] == 3:
        return -math.inf  # errors = 1 > cap 0: unsafe

    def perf(g: dict[str, Any], b: int) -> float:
        return 10.0 * g["x"] + g["y"] + b / 100

    def p95(g: dict[str, Any], b: int) -> float:
        return g["x"] + b / 1000

    bs = list(budgets.values())
    gain = sum(perf(genome, b) / perf(ref, b) for b in bs) / 4
    return gain - 0.2 * sum(p95(genome, b) / p95(ref, b) for b in bs) / 4


def test_a_run_fills_the_read_models_with_hand_computed_numbers(
    store: EventStore, tmp_path: Path
) -> None:
    regimes, caps = toy_files(tmp_path, budget=8, sleep=0)
    request = RunRequest(
        domain="toy",
        generations=2,
        population=4,
        trials=2,
        seed=11,
        regimes_path=regimes,
        caps_path=caps,
        run_id="t1",
    )
    summary = start_run(store, request, sensors=NoSensors(), workdir=tmp_path)
    items = stream(store, "t1")
    budgets = {"idle": 2, "normal": 8, "stress": 12, "mixed": 8}  # round(8 · scale)
    (started,) = of(items, RunStarted)
    assert started.config["budgets_ms"] == budgets
    assert started.manifest is not None and started.manifest.rng_seed == 11
    trials = [i for i in items if isinstance(i.event, TrialRecorded)]
    for item in trials:
        ev = item.event
        assert isinstance(ev, TrialRecorded)
        b = budgets[ev.regime.value]
        meta = msgspec.json.decode(item.record.metadata)
        assert meta["budget_ms"] == b and meta["workload"] == "toy.py"
        assert ev.kpis.perf == 10.0 * ev.genome["x"] + ev.genome["y"] + b / 100  # type: ignore[operator]
        assert (ev.kpis.watts, ev.kpis.temp_peak_c) == (None, None)  # unmeasurable: absent
    # The population: generation 0 from the seed, generation 1 from hand-computed fitness.
    space = {"x": [1, 2, 3], "y": [0, 5]}
    gen0 = evolve.initial_population(space, 4, evolve.rng_for(11, 0))
    first_safe = next(i for i, g in enumerate(gen0) if g["x"] != 3)
    ref = gen0[first_safe]  # the baseline every generation is scored by
    scores0 = [hand_score(g, budgets, ref) for g in gen0]
    evo = Evolution(mutation_rate=0.5, elite=1, tournament=2)
    gen1 = evolve.next_population(gen0, scores0, space, 4, evo, evolve.rng_for(11, 1))
    eng = engine(store)
    completed = of(items, GenerationCompleted)
    assert [c.generation for c in completed] == [0, 1]
    for gen, genomes, done in ((0, gen0, completed[0]), (1, gen1, completed[1])):
        scores = [hand_score(g, budgets, ref) for g in genomes]
        best = evolve.best_index(scores)
        assert done.best_cand_id == (None if best is None else st.cand_id("t1", gen, best))
        with eng.read("dream_candidates") as tx:
            for i, genome in enumerate(genomes):
                pack = candidate_pack(tx, "toy", st.cand_id("t1", gen, i))
                assert pack is not None and pack["genome"] == genome
                check_pack(pack, scores[i], len(of(items, SafetyCapExceeded)))
    assert summary.generations[1].best_score == pytest.approx(
        max(hand_score(g, budgets, ref) for g in gen1)
    )
    assert completed[1].best_fitness == summary.generations[1].best_score
    assert completed[1].packs == [st.cand_id("t1", 1, i) for i in range(4)]
    # Baselines: the first successful candidate of generation 0, per regime.
    with eng.read("dream_baselines") as tx:
        lines = current_baselines(tx, "toy")
    g = gen0[first_safe]
    for line in lines:
        b = budgets[line["regime"]]
        assert line["cand_id"] == st.cand_id("t1", 0, first_safe)
        assert line["kpis"]["perf"] == pytest.approx(10.0 * g["x"] + g["y"] + b / 100)
        assert line["kpis"]["p95_ms"] == pytest.approx(g["x"] + b / 1000)
        assert "watts" not in line["kpis"]
    expected = sum(1 if g["x"] == 3 else 8 for g in gen0 + gen1)  # a capped candidate stops
    assert len(trials) == expected == summary.trials_in_log
    assert len(of(items, Heartbeat)) == expected // 3
    assert of(items, RunFinished)[0].outcome.value == "succeeded"


def check_pack(pack: dict[str, Any], score: float, caps: int) -> None:
    agg = pack["aggregate"]
    if math.isinf(score):
        assert caps > 0
        assert (pack["safe"], agg["score_v2"]) == (False, "-inf")
        assert [r["trials"] for r in pack["regimes"]] == [1]
        return
    assert pack["safe"] is True
    assert agg["score_v2"] == pytest.approx(score, rel=1e-12)
    assert agg["score_terms"] == {"perf": "perf", "latency": "p95_ms", "power": None}
    assert agg["improves_over_baseline"] == "inconclusive"  # 2 trials decide nothing
    assert [r["trials"] for r in pack["regimes"]] == [2, 2, 2, 2]
    assert all(r["ci95"]["perf"] is not None for r in pack["regimes"])


def test_sigkill_midway_then_resume_loses_and_repeats_no_trial(
    store: EventStore, tmp_path: Path
) -> None:
    regimes, caps = toy_files(tmp_path, budget=40, sleep=1)
    args = [
        "--db",
        store.url,
        "dream",
        "run",
        "--domain",
        "toy",
        "--generations",
        "2",
        "--population",
        "3",
        "--trials",
        "2",
        "--seed",
        "5",
        "--regimes",
        str(regimes),
        "--caps",
        str(caps),
    ]
    src = str(Path(labledger.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labledger", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        run_id = wait_for_trials(store, proc, 9)
        eng = engine(store)  # the read models follow the live run part of the way
    finally:  # a failure above must not leave the run going into the next test
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    before = [i for i in stream(store, run_id) if isinstance(i.event, TrialRecorded)]
    assert not of(stream(store, run_id), RunFinished)
    assert cli(["--db", store.url, "dream", "run", "--resume", run_id]) == 0
    items = stream(store, run_id)
    keys = [(e.generation, e.cand_id, e.regime.value, e.trial) for e in of(items, TrialRecorded)]
    assert len(keys) == len(set(keys))  # nothing duplicated
    for item in before:  # nothing lost or re-measured: the dead attempt's trials stand
        assert item in [i for i in items if isinstance(i.event, TrialRecorded)]
    (resumed,) = of(items, RunResumed)
    assert (resumed.attempt, resumed.resumes_attempt) == (1, 0)
    at = next(n for n, i in enumerate(items) if isinstance(i.event, RunResumed))
    assert resumed.checkpoint_position == items[at - 1].position  # the dead attempt's last event
    plan = expected_keys(run_id, items)
    assert set(keys) == plan
    assert of(items, RunFinished)[0].attempt == 1
    for name in NAMES:
        eng.catch_up(name)
        live = eng.state_hash(name)
        eng.rebuild(name)
        assert eng.state_hash(name) == live, name
    assert cli(["--db", store.url, "dream", "run", "--resume", run_id]) == 2  # finished


def wait_for_trials(store: EventStore, proc: subprocess.Popen[bytes], n: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for info in store.streams("dream-"):
            items = stream(store, info.stream.removeprefix("dream-"))
            if len(of(items, TrialRecorded)) >= n:
                return info.stream.removeprefix("dream-")
        time.sleep(0.02)
    raise AssertionError("the run recorded too few trials in time")


def expected_keys(run_id: str, items: list[Typed[Event]]) -> set[tuple[int, str, str, int]]:
    """Every (generation, candidate, regime, trial) the run had to measure, by hand."""
    capped = {e.cand_id for e in of(items, SafetyCapExceeded)}
    genomes = {(e.generation, e.cand_id): e.genome for e in of(items, TrialRecorded)}
    keys = set()
    for (gen, cand), genome in genomes.items():
        if cand in capped:
            keys.add((gen, cand, "idle", 0))
            assert genome["x"] == 3
            continue
        keys |= {(gen, cand, r, t) for r in SCALES for t in range(2)}
    assert {c for _, c in genomes} == {st.cand_id(run_id, g, i) for g in (0, 1) for i in range(3)}
    return keys
