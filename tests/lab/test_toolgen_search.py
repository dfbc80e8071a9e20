"""Issue #15: speed that discriminates, synthesis by variation, a RepairLab that
searches (and can fail), and meta-evolution that is a pure function of its seed.

RepairLab runs for real here: the failing bundle and its test output are blobs
in a real ledger (SQLite and PostgreSQL), every candidate is re-tested in a
budgeted subprocess, and every attempt is read back from the log.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from labledger.events import Event
from labledger.events.toolgen import (
    ChallengerEntered,
    Genome,
    HandoffRequested,
    ImplStyle,
    RepairAttempted,
    RepairFailed,
    RepairSucceeded,
    ToolEvaluated,
)
from labledger.events.typed import typed
from labledger.lab.toolgen import evolve, mutate, records, repair, synth
from labledger.lab.toolgen.budgets import budgets_for
from labledger.lab.toolgen.evaluate import evaluate
from labledger.lab.toolgen.repairlab import RepairLab
from labledger.lab.toolgen.specs import get_spec, template_text
from labledger.projections import ProjectionEngine
from labledger.projections.toolgen import ToolgenProjection, leaderboard, rates
from labledger.store import EventStore
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

TD, JF = "text_deduplicate", "json_flatten"


def _genome(style: ImplStyle, *mutations: str) -> Genome:
    return Genome(impl_style=style, anneal_gene=1.0, mutations=list(mutations))


def _scored(spec_id: str, genome: Genome, tool: str) -> ToolEvaluated:
    spec, budgets = get_spec(spec_id), budgets_for(0)
    code = synth.render(spec_id, genome, 0, budgets)
    m = evaluate(code, spec, budgets, hash_seeds=(3, 4), timed_runs=5)
    return records.evaluated(tool, spec, genome, 0, code, m)


def test_a_slow_correct_variant_ranks_below_a_fast_one_on_performance() -> None:
    fast = _scored(TD, _genome(ImplStyle.SET), "fast")
    # A list where the set was: the same answers, a linear lookup per line.
    slow = _scored(TD, _genome(ImplStyle.SET, "list_container@0"), "slow")
    assert fast.correctness == slow.correctness == 1.0
    assert fast.median_ms is not None and slow.median_ms is not None
    assert slow.median_ms > fast.median_ms
    assert fast.performance > slow.performance
    assert fast.fitness > slow.fitness
    assert fast.reference_ms is not None and slow.reference_ms is not None


def _hand_off(store: EventStore, spec_id: str, genome: Genome, run_id: str) -> HandoffRequested:
    """A failing tool's handoff as the tournament records it: code and test output as blobs."""
    spec, budgets = get_spec(spec_id), budgets_for(0)
    code = synth.render(spec_id, genome, 0, budgets)
    tool = records.tool_id(run_id, "e0-handmade")
    m = evaluate(code, spec, budgets, hash_seeds=records.hash_seeds(tool), timed_runs=3)
    assert m.correctness < 1.0, "the fault must fail the tests"
    scored = records.evaluated(tool, spec, genome, 0, code, m)
    code_sha = store.put_blob(code.encode())
    report = msgspec.json.encode({"failures": m.failures, "detail": m.detail})
    handoff = records.handoff(tool, spec, scored, code_sha, store.put_blob(report))
    stream = records.trials_stream(run_id)
    store.append(stream, [e.to_new_event(run_id=run_id) for e in (scored, handoff)])
    return handoff


def _answer(store: EventStore, run_id: str, **options: Any) -> RepairLab:
    worker = RepairLab(store, run_id=run_id, timed_runs=3, **options)
    for record in store.read_stream(records.trials_stream(run_id)):
        if record.type == HandoffRequested.TYPE:
            worker.answer(record)
    return worker


def _repair_events(store: EventStore, handoff: HandoffRequested) -> list[Event]:
    return [t.event for t in typed(store.read_stream(records.repair_stream(handoff.handoff_id)))]


def test_a_fault_outside_repairlabs_operators_is_not_repaired(backend: Backend) -> None:
    # Dropping ``k == 0 or`` loses a case; no inverse operator can write it back.
    genome = _genome(ImplStyle.SUFFIXARRAY, "drop_operand@0")
    with fresh_ledger(backend) as store:
        handoff = _hand_off(store, TD, genome, "out")
        code = store.get_blob(handoff.bundle_sha256 or "").decode()
        report = msgspec.json.decode(store.get_blob(handoff.report_sha256 or ""))
        searched = repair.candidates(code, ImplStyle.SUFFIXARRAY, report)
        assert len(searched) >= 3
        worker = _answer(store, "out")
        assert worker.answered == {handoff.handoff_id} and not worker.repaired
        events = _repair_events(store, handoff)
        tried = [e for e in events if isinstance(e, RepairAttempted)]
        failed = [e for e in events if isinstance(e, RepairFailed)]
        assert [e.attempt for e in tried] == [e.attempt for e in failed]
        assert [e.agent for e in tried] == [c.how for c in searched]  # every edit, in order
        assert not any(isinstance(e, RepairSucceeded | ChallengerEntered) for e in events)
        engine = ProjectionEngine(store, [ToolgenProjection()])
        engine.catch_up("toolgen")
        with engine.read("toolgen") as tx:
            overall = rates(tx, "out")[-1]
        assert (overall.handoffs, overall.handoffs_repaired) == (1, 0)
        assert overall.repair_attempts == overall.repairs_failed == len(searched)
        assert overall.repair_success_rate == 0.0 and overall.attempts_per_repair is None


def test_the_attempt_budget_bounds_the_search(backend: Backend) -> None:
    genome = _genome(ImplStyle.SUFFIXARRAY, "drop_operand@0")
    with fresh_ledger(backend) as store:
        handoff = _hand_off(store, TD, genome, "budget")
        _answer(store, "budget", max_attempts=2)
        tried = [e for e in _repair_events(store, handoff) if isinstance(e, RepairAttempted)]
        assert [e.attempt for e in tried] == [1, 2]


def test_an_inverse_mutation_fault_is_repaired(backend: Backend) -> None:
    # The last character of each line never enters the trie: restore_last undoes it.
    genome = _genome(ImplStyle.TRIE, "drop_last@1")
    with fresh_ledger(backend) as store:
        handoff = _hand_off(store, TD, genome, "inv")
        worker = _answer(store, "inv")
        assert worker.repaired == {handoff.handoff_id}
        events = _repair_events(store, handoff)
        won = next(e for e in events if isinstance(e, RepairSucceeded))
        tried = {e.attempt: e.agent for e in events if isinstance(e, RepairAttempted)}
        assert tried[won.attempt].startswith("restore_last@")
        clean = synth.render(TD, _genome(ImplStyle.TRIE), 0, budgets_for(0)).encode()
        assert store.get_blob(won.repaired_code_sha256) == clean
        entered = next(e for e in events if isinstance(e, ChallengerEntered))
        assert entered.parent_tool_id == handoff.tool_id
        engine = ProjectionEngine(store, [ToolgenProjection()])
        engine.catch_up("toolgen")
        with engine.read("toolgen") as tx:
            board = leaderboard(tx, TD, run_id="inv")
            overall = rates(tx, "inv")[-1]
        assert board[0].tool_id == entered.tool_id and board[0].lineage == "repairlab_fixed"
        assert overall.attempts_per_repair == won.attempt
        assert overall.time_to_repair_s is not None and overall.time_to_repair_s > 0


def _fake_fitness(genome: Genome) -> float:
    """A stand-in score, a pure function of the genome (the test needs no timing)."""
    digest = hashlib.sha256(msgspec.json.encode(genome)).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _population_sequence(seed: int, spec_id: str, generations: int) -> list[list[Genome]]:
    archive: list[evolve.Scored] = []
    sequence = []
    for epoch in range(generations):
        rng = evolve.rng_for(seed, spec_id, epoch)
        children, _ = evolve.next_generation(spec_id, archive, 6, rng, temp=1.0)
        sequence.append([g for g, _ in children])
        for n, (genome, _) in enumerate(children):
            archive.append(
                evolve.Scored(
                    tool_id=f"e{epoch}-m{n}",
                    genome=genome,
                    fitness=_fake_fitness(genome),
                    median_ms=1.0,
                    position=len(archive),
                )
            )
    return sequence


@pytest.mark.parametrize("spec_id", [TD, JF])
def test_meta_evolution_with_a_fixed_seed_is_deterministic(spec_id: str) -> None:
    first = _population_sequence(11, spec_id, 6)
    assert first == _population_sequence(11, spec_id, 6)
    assert first != _population_sequence(12, spec_id, 6)
    styles = {g.impl_style for generation in first for g in generation}
    assert len(styles) > 1  # the style gene moves
    assert any(g.mutations for generation in first for g in generation)
    for generation in first:
        for genome in generation:  # every genome renders: mutations fit their template
            synth.render(spec_id, genome, 0, budgets_for(0))
    assert template_text(spec_id, ImplStyle.SET)


def test_selection_breeds_from_the_elite_archive_by_the_leaderboard_keys() -> None:
    g = _genome(ImplStyle.SET)
    archive = [
        evolve.Scored(tool_id="slow", genome=g, fitness=0.9, median_ms=5.0, position=1),
        evolve.Scored(tool_id="fast", genome=g, fitness=0.9, median_ms=1.0, position=2),
        evolve.Scored(tool_id="weak", genome=g, fitness=0.5, median_ms=0.1, position=3),
        evolve.Scored(tool_id="late", genome=g, fitness=0.9, median_ms=1.0, position=4),
        evolve.Scored(tool_id="none", genome=g, fitness=0.95, median_ms=None, position=5),
    ]
    assert [s.tool_id for s in evolve.elites(archive)] == ["none", "fast", "late"]
    children, parents = evolve.next_generation(TD, archive, 8, evolve.rng_for(0, TD, 3), 1.0)
    assert parents == ["none", "fast", "late"]
    assert {parent for _, parent in children} <= set(parents)


def test_the_failing_test_output_orders_the_search() -> None:
    code = synth.render(TD, _genome(ImplStyle.SUFFIXARRAY), 0, budgets_for(0))
    plain = repair.candidates(code, ImplStyle.SUFFIXARRAY, {})
    # A traceback into one line puts that line's edits first.
    line = next(n for n, text in enumerate(code.splitlines(), 1) if "keep.append" in text) - 1
    traced = repair.candidates(code, ImplStyle.SUFFIXARRAY, {"failures": [{"line": line}]})
    assert sorted(c.how for c in traced) == sorted(c.how for c in plain)
    first_sites = {c.how for c in traced[:2]}
    assert all(
        mutate.sites(code, h.split("@")[0])[int(h.split("@")[1])] == line for h in first_sites
    )
    # A result of the wrong length puts boundary and off-by-one edits before the rest.
    short = {"failures": [{"raised": False, "got": ["a"], "expected": ["a", "b"], "line": None}]}
    lengthwise = repair.candidates(code, ImplStyle.SUFFIXARRAY, short)
    assert lengthwise[0].how.split("@")[0] in repair.LENGTH_OPERATORS
    assert repair.length_mismatch(short["failures"]) and not repair.length_mismatch([])
