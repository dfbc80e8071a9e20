"""ToolGen's pure parts (issues #6, #15): budgets, scores, fitness, curriculum, specs as
data, code mutations, and the budgeted evaluation of every template."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labledger.events.toolgen import Budgets, FitnessComponents, Genome, ImplStyle
from labledger.lab.toolgen import mutate, records, scoring, synth
from labledger.lab.toolgen.budgets import anneal_temp, budgets_for
from labledger.lab.toolgen.evaluate import evaluate
from labledger.lab.toolgen.plan import schedule, specs_for_epoch
from labledger.lab.toolgen.specs import get_spec, load_specs, template_text

TD, JF, PS = "text_deduplicate", "json_flatten", "prefix_search"


@pytest.mark.parametrize(
    ("epoch", "timeout_ms", "memory_mb"),
    # The seed's annealing table, plus a clamp past epoch 40.
    [
        (0, 2000, 128),
        (10, 1750, 112),
        (20, 1500, 96),
        (30, 1250, 80),
        (40, 1000, 64),
        (55, 1000, 64),
    ],
)
def test_budgets_follow_the_seed_table(epoch: int, timeout_ms: float, memory_mb: float) -> None:
    assert budgets_for(epoch) == Budgets(timeout_ms=timeout_ms, memory_mb=memory_mb)


def test_budgets_are_linear_between_table_rows() -> None:
    assert budgets_for(1) == Budgets(timeout_ms=1975.0, memory_mb=126.4)
    assert budgets_for(2) == Budgets(timeout_ms=1950.0, memory_mb=124.8)
    assert [anneal_temp(e) for e in (0, 1, 20, 40, 80)] == [1.0, 0.9875, 0.75, 0.5, 0.5]


def test_performance_score_is_a_clipped_log_ratio_to_the_reference() -> None:
    # Issue #15: as fast as the reference 0.8, 0.4 less per tenfold slower, clipped.
    assert scoring.performance_score(2.0, 2.0) == pytest.approx(0.8)
    assert scoring.performance_score(2.0, 20.0) == pytest.approx(0.4)
    assert scoring.performance_score(2.0, 200.0) == pytest.approx(0.0)
    assert scoring.performance_score(2.0, 2000.0) == 0.0
    assert scoring.performance_score(2.0, 0.2) == 1.0
    assert scoring.performance_score(2.0, None) == 0.0
    assert scoring.performance_score(None, 1.0) == 0.0
    assert scoring.performance_score(2.0, 0.0) == 1.0
    # Medians of 0.4 ms and 21 ms no longer tie (the seed's formula gave both 1.0).
    assert scoring.performance_score(0.4, 0.4) - scoring.performance_score(0.4, 21.0) > 0.6


def test_diversity_bonus_needs_an_alternative_style_and_correctness() -> None:
    assert scoring.diversity_bonus(ImplStyle.SET, 1.0, 1.0) == 0.0
    assert scoring.diversity_bonus(ImplStyle.TRIE, 0.95, 1.0) == 0.02
    assert scoring.diversity_bonus(ImplStyle.LSH, 0.89, 1.0) == 0.0
    assert scoring.diversity_bonus(ImplStyle.SUFFIXARRAY, 0.9, 0.75) == pytest.approx(0.015)


def test_fitness_uses_the_seed_weights_and_penalises_flakes() -> None:
    c = FitnessComponents(
        correctness=1.0, safety=1.0, performance=1.0, robustness=0.5, documentation=1.0
    )
    # .40 + .25 + .15 + .10 * .5 + .10 = .95; halved for a flake, plus the bonus.
    assert scoring.fitness(c, 1.0, 0.0) == pytest.approx(0.95)
    assert scoring.fitness(c, 0.5, 0.02) == pytest.approx(0.495)
    assert sum(scoring.WEIGHTS.values()) == pytest.approx(1.0)


def test_safety_and_documentation_are_static_checks() -> None:
    bad = 'import os\nfrom subprocess import run\n\ndef f():\n    return open("x")\n'
    assert len(scoring.safety_violations(bad)) == 3
    assert scoring.safety_score(bad) == 0.25
    assert scoring.documentation_score(bad, "f") == 0.0
    documented = '"""Module."""\n\ndef f():\n    """F."""\n'
    assert scoring.documentation_score(documented, "f") == 1.0
    assert scoring.documentation_score('"""Module."""\n\ndef f():\n    pass\n', "f") == 0.5


def test_curriculum_is_the_seeds_schedule() -> None:
    specs = [TD, JF]
    chosen = [specs_for_epoch(e, specs)[0] for e in range(14)]
    assert chosen[:6] == [TD] * 6
    assert chosen[6:11] == [JF] * 5
    assert chosen[11:] == [JF, TD, JF]  # the seed: td on even epochs, jf on odd ones
    assert specs_for_epoch(3, specs, "all") == specs
    assert [specs_for_epoch(e, specs, "rotate")[0] for e in range(3)] == [TD, JF, TD]


def test_schedule_lists_each_generation_once() -> None:
    assert schedule(3, [TD, JF], "rotate") == [(0, TD), (1, JF), (2, TD)]
    assert schedule(2, [TD, JF], "all") == [(0, TD), (0, JF), (1, TD), (1, JF)]


def test_specs_are_data_with_reasons_for_unfit_styles() -> None:
    specs = load_specs()
    assert {TD, JF, PS} <= set(specs)
    for spec in specs.values():
        assert spec.tests and spec.reference
        for style in ImplStyle:
            if style not in spec.fitting_styles:
                assert spec.styles[style].startswith("does not fit:")
    assert get_spec(TD).fitting_styles == tuple(ImplStyle)


def test_render_stamps_spdx_and_the_sbom_describes_the_tool() -> None:
    budgets = budgets_for(4)
    genome = Genome(impl_style=ImplStyle.LSH, anneal_gene=1.2, mutations=["negate_compare@0"])
    code = synth.render(TD, genome, 4, budgets)
    assert code.startswith("# SPDX-License-Identifier: MIT\n")
    assert "if line in bucket:" in code  # the mutation, applied after the header
    assert "1900 ms / 121.6 MB" in code
    doc = json.loads(
        synth.sbom(
            tool_id="t",
            spec_id=TD,
            style=ImplStyle.LSH,
            epoch=4,
            budgets=budgets,
            code=code,
            mutations=genome.mutations,
            anneal_gene=genome.anneal_gene,
        )
    )
    assert doc["license"] == "MIT" and doc["mutations"] == ["negate_compare@0"]
    assert doc["anneal_gene"] == 1.2
    assert doc["dependencies"] == [
        {"name": "zlib", "kind": "python-stdlib", "python": doc["dependencies"][0]["python"]}
    ]
    assert doc["constraints"] == {"timeout_ms": 1900.0, "memory_mb": 121.6}


def test_clean_templates_pass_and_the_benchmark_is_timed_with_the_reference() -> None:
    budgets = budgets_for(0)
    for spec in load_specs().values():
        for style in spec.fitting_styles:
            genome = Genome(impl_style=style, anneal_gene=1.0, mutations=[])
            code = synth.render(spec.id, genome, 0, budgets)
            m = evaluate(code, spec, budgets, hash_seeds=(1, 2), timed_runs=2)
            label = f"{spec.id}/{style}"
            assert (m.correctness, m.stability, m.robustness) == (1.0, 1.0, 1.0), label
            assert scoring.safety_score(code) == 1.0, label
            assert scoring.documentation_score(code, spec.function) == 1.0, label
            if m.median_ms is not None:  # a slow style may meet the timeout: then no timing
                assert m.reference_ms is not None and m.reference_ms > 0, label
                assert m.peak_kib is not None and m.peak_kib > 0, label


def test_every_mutation_site_gives_code_that_compiles_and_differs() -> None:
    for spec in load_specs().values():
        for style in spec.fitting_styles:
            code = template_text(spec.id, style)
            for op in mutate.OPERATORS:
                for k in range(len(mutate.sites(code, op))):
                    mutated = mutate.apply(code, f"{op}@{k}")
                    compile(mutated, "tool.py", "exec")
                    assert mutated != code, f"{spec.id}/{style}/{op}@{k}"
    with pytest.raises(mutate.MutationError):
        mutate.apply(template_text(TD, ImplStyle.SET), "boundary@7")


def test_inverse_operators_undo_their_mutations() -> None:
    code = template_text(PS, ImplStyle.SUFFIXARRAY)
    for fault, fix in [
        ("alt_call@0", "alt_call@0"),  # bisect_left -> bisect_right -> back
        ("drop_last@0", "restore_last@0"),
    ]:
        assert mutate.apply(mutate.apply(code, fault), fix) == code
    trie = template_text(TD, ImplStyle.TRIE)
    assert mutate.apply(mutate.apply(trie, "negate_compare@0"), "negate_compare@0") == trie
    dropped = mutate.apply(template_text(JF, ImplStyle.SET), "drop_operand@1")
    assert "drop_operand" not in mutate.REPAIR_OPERATORS and dropped.count(" and value") == 1


def test_hash_order_dependence_is_caught_as_a_flake() -> None:
    spec = get_spec(TD)
    code = (
        '"""Dedupe."""\n\n\ndef text_deduplicate(lines):\n    """Order lost."""\n'
        "    return list(set(lines))\n"
    )
    results = {
        evaluate(code, spec, budgets_for(0), hash_seeds=(s, s + 1), timed_runs=1).stability
        for s in range(1, 9)
    }
    assert 0.5 in results


def test_budgets_are_enforced_in_the_subprocess() -> None:
    spec = get_spec(TD)
    tight = Budgets(timeout_ms=400.0, memory_mb=64.0)
    forever = "def text_deduplicate(lines):\n    while True:\n        pass\n"
    m = evaluate(forever, spec, tight, hash_seeds=(1, 2), timed_runs=1)
    assert (m.correctness, m.median_ms, m.robustness) == (0.0, None, 0.0)
    assert "timeout" in m.detail
    hog = "def text_deduplicate(lines):\n    return [bytearray(256 * 1024 * 1024)]\n"
    m = evaluate(hog, spec, tight, hash_seeds=(1, 2), timed_runs=1)
    assert m.correctness == 0.0 and m.median_ms is None
    said = [m.detail, *(str(f["got"]) for f in m.failures)]
    assert any("MemoryError" in text or "memory" in text for text in said)


def test_hash_seeds_are_derived() -> None:
    assert records.hash_seeds("x") == records.hash_seeds("x") != records.hash_seeds("y")


def test_data_files_load_from_an_installed_layout(tmp_path: Path) -> None:
    # What a wheel installs: the package tree alone, without the repository around it.
    src = Path(__file__).resolve().parents[2] / "src" / "labledger"
    shutil.copytree(src, tmp_path / "labledger", ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "from labledger.lab.toolgen.specs import load_specs, template_text\n"
        "from labledger.events.toolgen import ImplStyle\n"
        "specs = load_specs(); assert len(specs) >= 3\n"
        "print(template_text('json_flatten', ImplStyle.TRIE).splitlines()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith('"""json_flatten, trie style')
