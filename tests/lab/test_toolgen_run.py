"""ToolGen ⇄ RepairLab end to end on both backends (issues #6, #15).

A small tournament fills the ``toolgen`` read model; its numbers are checked
against values computed here by hand from the seed's formulas and issue #15's
performance score. A run killed with SIGKILL midway and resumed loses and
duplicates no trial, breeds each generation once, answers every handoff once,
and its read model equals a rebuild from zero.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from labledger.cli.main import run
from labledger.events import Event
from labledger.events.runs import RunFinished, RunResumed
from labledger.events.toolgen import (
    ChallengerEntered,
    GenerationPlanned,
    HandoffRequested,
    ImplStyle,
    Lineage,
    RepairAttempted,
    RepairFailed,
    RepairSucceeded,
    ToolEvaluated,
    ToolSynthesized,
)
from labledger.events.typed import typed
from labledger.lab.toolgen import TournamentConfig, run_toolgen
from labledger.lab.toolgen.records import tool_id, trials_stream
from labledger.projections import ProjectionEngine
from labledger.projections.toolgen import ToolgenProjection, leaderboard, rates
from labledger.store import EventStore
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

TD, JF = "text_deduplicate", "json_flatten"
SMALL = TournamentConfig(
    epochs=3, specs=(TD, JF), seed=7, timed_runs=3, curriculum="rotate", population=4
)
# Hand values: linear from (2000 ms, 128 MB, temp 1.0) at epoch 0 by (-25 ms, -1.6 MB,
# -0.0125) per epoch; a genome's gene multiplies the temperature.
BUDGETS = {0: (2000.0, 128.0), 1: (1975.0, 126.4), 2: (1950.0, 124.8)}
TEMPS = {0: 1.0, 1: 0.9875, 2: 0.975}


def _events(store: EventStore) -> list[tuple[Any, Event]]:
    return [(t.record, t.event) for t in typed(store.read_all())]


def _of(store: EventStore, cls: type[Any]) -> list[Any]:
    return [e for _, e in _events(store) if isinstance(e, cls)]


def _hand_performance(ev: ToolEvaluated) -> float:
    if ev.median_ms is None or ev.reference_ms is None:
        return 0.0
    return min(1.0, max(0.0, 0.8 - 0.4 * math.log10(ev.median_ms / ev.reference_ms)))


def _hand_fitness(ev: ToolEvaluated, temp: float) -> tuple[float, float, float]:
    c = ev.components
    performance = _hand_performance(ev)
    bonus = 0.0
    if ev.impl_style != ImplStyle.SET and ev.correctness >= 0.9:
        bonus = 0.02 * min(1.0, temp)
    weighted = (
        0.40 * c.correctness
        + 0.25 * c.safety
        + 0.15 * performance
        + 0.10 * c.robustness
        + 0.10 * c.documentation
    )
    return performance, bonus, ev.stability * weighted + bonus


def _genes(store: EventStore) -> dict[str, float]:
    """Each tool's annealing gene: bred tools from their generation, challengers their parent's."""
    genes = {
        m.tool_id: m.genome.anneal_gene for g in _of(store, GenerationPlanned) for m in g.members
    }
    for c in _of(store, ChallengerEntered):
        genes[c.tool_id] = genes[c.parent_tool_id]
    return genes


def _check_numbers(store: EventStore) -> None:
    genes = _genes(store)
    for made in _of(store, ToolSynthesized):
        assert (made.budgets.timeout_ms, made.budgets.memory_mb) == BUDGETS[made.epoch]
        assert made.anneal_temp == pytest.approx(TEMPS[made.epoch] * genes[made.tool_id])
        assert store.get_blob(made.code_sha256).startswith(b"# SPDX-License-Identifier: MIT\n")
        assert b'"license":"MIT"' in store.get_blob(made.sbom_sha256)
    for ev in _of(store, ToolEvaluated):
        performance, bonus, fitness = _hand_fitness(ev, TEMPS[ev.epoch] * genes[ev.tool_id])
        assert ev.budget_ms == BUDGETS[ev.epoch][0]
        assert ev.performance == pytest.approx(performance, abs=1e-12)
        assert ev.components.performance == ev.performance
        assert ev.components.correctness == ev.correctness
        assert ev.components.documentation == 1.0
        assert ev.diversity_bonus == pytest.approx(bonus, abs=1e-12)
        assert ev.fitness == pytest.approx(fitness, abs=1e-12)
        assert ev.stability in (0.5, 1.0)
        assert (ev.median_ms is None) == (ev.reference_ms is None)
        assert ev.peak_kib is None or ev.median_ms is not None


def _check_read_model(store: EventStore) -> None:
    engine = ProjectionEngine(store, [ToolgenProjection()])
    engine.catch_up("toolgen")
    evaluated = {e.tool_id: e for e in _of(store, ToolEvaluated)}
    challengers = {c.tool_id: c for c in _of(store, ChallengerEntered)}
    handoffs = _of(store, HandoffRequested)
    with engine.read("toolgen") as tx:
        board = leaderboard(tx, top=100)
        overall = rates(tx)[-1]
    assert {s.tool_id for s in board} == set(evaluated)
    for s in board:
        ev = evaluated[s.tool_id]
        assert (s.fitness, s.median_ms, s.stability, s.epoch) == (
            ev.fitness,
            ev.median_ms,
            ev.stability,
            ev.epoch,
        )
        if s.tool_id in challengers:
            assert s.lineage == Lineage.REPAIRLAB_FIXED.value
            assert s.chain[-2:] == [challengers[s.tool_id].parent_tool_id, s.tool_id]
        else:
            assert s.lineage == ("original" if s.parent_tool_id is None else "offspring")
        assert s.genome is not None
    for spec in (TD, JF):
        ranked = [s.fitness for s in board if s.spec_id == spec]
        assert ranked == sorted(ranked, reverse=True)
    handed = {h.tool_id for h in handoffs}
    assert handed == {t for t, e in evaluated.items() if e.correctness < 1}
    assert overall.tools_evaluated == len(evaluated)
    assert overall.handoff_rate == pytest.approx(len(handed) / len(evaluated))
    repaired = {s.handoff_id for s in _of(store, RepairSucceeded)}
    if handoffs:
        assert overall.handoff_success_rate == pytest.approx(len(repaired) / len(handoffs))
    before = engine.state_hash("toolgen")
    engine.rebuild("toolgen")
    assert engine.state_hash("toolgen") == before


def _planned(store: EventStore) -> list[str]:
    return [m.tool_id for g in _of(store, GenerationPlanned) for m in g.members]


def test_a_run_fills_the_read_models_with_hand_computed_numbers(
    backend: Backend, tmp_path: Path
) -> None:
    with fresh_ledger(backend) as store:
        summary = anyio.run(lambda: run_toolgen(store, "small", SMALL))
        assert summary.trials == summary.trials_run == SMALL.total_trials() == 12
        generations = _of(store, GenerationPlanned)
        assert [(g.epoch, g.spec_id) for g in generations] == [(0, TD), (1, JF), (2, TD)]
        assert generations[2].parents and all(  # epoch 2 is bred from epoch 0's archive
            m.parent_tool_id in generations[2].parents for m in generations[2].members
        )
        made = _of(store, ToolSynthesized)
        assert sorted(m.tool_id for m in made) == sorted(_planned(store))
        failing = {e.tool_id for e in _of(store, ToolEvaluated) if e.correctness < 1}
        originals = {m.tool_id for m in made}
        assert {h.tool_id for h in _of(store, HandoffRequested)} == failing & originals
        assert summary.handoffs == len(failing & originals) >= summary.repaired
        _check_numbers(store)
        _check_read_model(store)
        assert len(_of(store, RunFinished)) == 1
        png = tmp_path / "perf.png"
        assert run(["--db", store.url, "toolgen", "plot", "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        front = tmp_path / "pareto.png"
        assert (
            run(["--db", store.url, "toolgen", "plot", "--kind", "pareto", "--out", str(front)])
            == 0
        )
        assert front.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _spawn(url: str, run_id: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "labledger", "--db", url, "toolgen", "run", "--epochs", "6"]
    argv += ["--specs", f"{TD},{JF}", "--seed", "3", "--timed-runs", "3"]
    argv += ["--curriculum", "rotate", "--population", "3", "--run-id", run_id]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_midway_then_resume_loses_and_duplicates_nothing(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        proc = _spawn(store.url, "killed")
        deadline = time.monotonic() + 60
        while store.stream_version(trials_stream("killed")) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_at_kill = store.stream_version(trials_stream("killed"))
        engine = ProjectionEngine(store, [ToolgenProjection()])
        engine.catch_up("toolgen")  # the read model follows the dead run's partial log
        assert run(["--db", store.url, "toolgen", "run", "--resume", "killed"]) == 0

        config = TournamentConfig(
            epochs=6, specs=(TD, JF), seed=3, timed_runs=3, curriculum="rotate", population=3
        )
        generations = Counter((g.epoch, g.spec_id) for g in _of(store, GenerationPlanned))
        assert list(generations) == config.generations() and set(generations.values()) == {1}
        planned = _planned(store)
        assert len(planned) == config.total_trials()
        assert planned[0] == tool_id("killed", "e0-text_deduplicate-m0")
        made = Counter(m.tool_id for m in _of(store, ToolSynthesized))
        assert sorted(made) == sorted(planned) and set(made.values()) == {1}
        assert done_at_kill < store.stream_version(trials_stream("killed"))  # killed midway
        originals = Counter(e.tool_id for e in _of(store, ToolEvaluated) if "-fix" not in e.tool_id)
        assert set(originals) == set(planned) and set(originals.values()) == {1}
        attempts = Counter((a.handoff_id, a.attempt) for a in _of(store, RepairAttempted))
        assert not attempts or set(attempts.values()) == {1}
        concluded = Counter(
            (e.handoff_id, e.attempt)
            for e in _of(store, RepairFailed) + _of(store, RepairSucceeded)
        )
        assert set(concluded) == set(attempts) and (not concluded or set(concluded.values()) == {1})
        succeeded = Counter(s.handoff_id for s in _of(store, RepairSucceeded))
        handoffs = {h.handoff_id for h in _of(store, HandoffRequested)}
        assert set(succeeded) <= handoffs and (not succeeded or set(succeeded.values()) == {1})
        assert [r.attempt for r in _of(store, RunResumed)] == [1]
        assert len(_of(store, RunFinished)) == 1
        assert store.verify().ok
        _check_numbers_relaxed(store)
        engine.catch_up("toolgen")
        live = engine.state_hash("toolgen")
        engine.rebuild("toolgen")
        assert engine.state_hash("toolgen") == live


def _check_numbers_relaxed(store: EventStore) -> None:
    genes = _genes(store)
    for ev in _of(store, ToolEvaluated):
        temp = (1.0 - 0.5 * min(ev.epoch, 40) / 40) * genes[ev.tool_id]
        assert ev.fitness == pytest.approx(_hand_fitness(ev, temp)[2], abs=1e-12)
