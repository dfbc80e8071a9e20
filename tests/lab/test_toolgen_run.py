"""ToolGen ⇄ RepairLab end to end on both backends (issue #6).

A small tournament fills the ``toolgen`` read model; its numbers are checked
against values computed here by hand from the seed's formulas. A run killed
with SIGKILL midway and resumed loses and duplicates no trial, answers every
handoff once, and its read model equals a rebuild from zero.
"""

from __future__ import annotations

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
    HandoffRequested,
    ImplStyle,
    Lineage,
    RepairAttempted,
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
SMALL = TournamentConfig(epochs=3, specs=(TD, JF), seed=7, timed_runs=3, curriculum="rotate")
# Hand values: linear from (2000 ms, 128 MB, temp 1.0) at epoch 0 by (-25 ms, -1.6 MB,
# -0.0125) per epoch.
BUDGETS = {0: (2000.0, 128.0), 1: (1975.0, 126.4), 2: (1950.0, 124.8)}
TEMPS = {0: 1.0, 1: 0.9875, 2: 0.975}


def _events(store: EventStore) -> list[tuple[Any, Event]]:
    return [(t.record, t.event) for t in typed(store.read_all())]


def _of(store: EventStore, cls: type[Any]) -> list[Any]:
    return [e for _, e in _events(store) if isinstance(e, cls)]


def _hand_fitness(ev: ToolEvaluated) -> tuple[float, float, float]:
    c = ev.components
    performance = min(1.0, ev.budget_ms / ev.median_ms) if ev.median_ms is not None else 0.0
    bonus = 0.0
    if ev.impl_style != ImplStyle.SET and ev.correctness >= 0.9:
        bonus = 0.02 * TEMPS[ev.epoch]
    weighted = (
        0.40 * c.correctness
        + 0.25 * c.safety
        + 0.15 * performance
        + 0.10 * c.robustness
        + 0.10 * c.documentation
    )
    return performance, bonus, ev.stability * weighted + bonus


def _check_numbers(store: EventStore) -> None:
    for made in _of(store, ToolSynthesized):
        assert (made.budgets.timeout_ms, made.budgets.memory_mb) == BUDGETS[made.epoch]
        assert made.anneal_temp == TEMPS[made.epoch]
        assert store.get_blob(made.code_sha256).startswith(b"# SPDX-License-Identifier: MIT\n")
        assert b'"license":"MIT"' in store.get_blob(made.sbom_sha256)
    for ev in _of(store, ToolEvaluated):
        performance, bonus, fitness = _hand_fitness(ev)
        assert ev.budget_ms == BUDGETS[ev.epoch][0]
        assert ev.performance == pytest.approx(performance, abs=1e-12)
        assert ev.components.performance == ev.performance
        assert ev.components.correctness == ev.correctness
        assert (ev.components.safety, ev.components.documentation) == (1.0, 1.0)
        assert ev.diversity_bonus == pytest.approx(bonus, abs=1e-12)
        assert ev.fitness == pytest.approx(fitness, abs=1e-12)
        assert ev.stability in (0.5, 1.0)


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
            assert s.chain == [challengers[s.tool_id].parent_tool_id, s.tool_id]
        else:
            assert s.lineage == "original"
    for spec in (TD, JF):
        ranked = [s.fitness for s in board if s.spec_id == spec]
        assert ranked == sorted(ranked, reverse=True)
    handed = {h.tool_id for h in handoffs}
    assert handed == {t for t, e in evaluated.items() if e.correctness < 1}
    assert overall.tools_evaluated == len(evaluated)
    assert overall.handoff_rate == pytest.approx(len(handed) / len(evaluated))
    repaired = {s.handoff_id for s in _of(store, RepairSucceeded)}
    assert overall.handoff_success_rate == pytest.approx(len(repaired) / len(handoffs))
    before = engine.state_hash("toolgen")
    engine.rebuild("toolgen")
    assert engine.state_hash("toolgen") == before


def test_a_run_fills_the_read_models_with_hand_computed_numbers(
    backend: Backend, tmp_path: Path
) -> None:
    with fresh_ledger(backend) as store:
        summary = anyio.run(lambda: run_toolgen(store, "small", SMALL))
        planned = SMALL.trials()
        assert summary.trials == summary.trials_run == len(planned) == 10  # 4 + 2 + 4 styles
        made = _of(store, ToolSynthesized)
        assert sorted(m.tool_id for m in made) == sorted(tool_id("small", t.key) for t in planned)
        faulty = {tool_id("small", t.key) for t in planned if t.fault is not None}
        assert {h.tool_id for h in _of(store, HandoffRequested)} == faulty
        assert len(faulty) >= 3  # at least one per epoch
        assert summary.handoffs == len(faulty) == summary.repaired
        _check_numbers(store)
        _check_read_model(store)
        assert len(_of(store, RunFinished)) == 1
        png = tmp_path / "perf.png"
        assert run(["--db", store.url, "toolgen", "plot", "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _spawn(url: str, run_id: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "labledger", "--db", url, "toolgen", "run", "--epochs", "6"]
    argv += ["--specs", f"{TD},{JF}", "--seed", "3", "--timed-runs", "3"]
    argv += ["--curriculum", "rotate", "--run-id", run_id]
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
            epochs=6, specs=(TD, JF), seed=3, timed_runs=3, curriculum="rotate"
        )
        planned = [tool_id("killed", t.key) for t in config.trials()]
        made = Counter(m.tool_id for m in _of(store, ToolSynthesized))
        assert sorted(made) == sorted(planned) and set(made.values()) == {1}
        assert done_at_kill < store.stream_version(trials_stream("killed"))  # killed midway
        originals = Counter(e.tool_id for e in _of(store, ToolEvaluated) if "-fix" not in e.tool_id)
        assert set(originals) == set(planned) and set(originals.values()) == {1}
        attempts = Counter((a.handoff_id, a.attempt) for a in _of(store, RepairAttempted))
        assert set(attempts.values()) == {1}
        handoffs = {h.handoff_id for h in _of(store, HandoffRequested)}
        succeeded = Counter(s.handoff_id for s in _of(store, RepairSucceeded))
        assert set(succeeded) == handoffs and set(succeeded.values()) == {1}
        assert [r.attempt for r in _of(store, RunResumed)] == [1]
        assert len(_of(store, RunFinished)) == 1
        assert store.verify().ok
        _check_numbers_relaxed(store)
        engine.catch_up("toolgen")
        live = engine.state_hash("toolgen")
        engine.rebuild("toolgen")
        assert engine.state_hash("toolgen") == live


def _check_numbers_relaxed(store: EventStore) -> None:
    for ev in _of(store, ToolEvaluated):
        assert ev.fitness == pytest.approx(_hand_fitness_any(ev), abs=1e-12)


def _hand_fitness_any(ev: ToolEvaluated) -> float:
    temp = 1.0 - 0.5 * min(ev.epoch, 40) / 40
    bonus = 0.02 * temp if ev.impl_style != ImplStyle.SET and ev.correctness >= 0.9 else 0.0
    c = ev.components
    weighted = (
        0.40 * c.correctness
        + 0.25 * c.safety
        + 0.15 * c.performance
        + 0.10 * c.robustness
        + 0.10 * c.documentation
    )
    return ev.stability * weighted + bonus
