"""ToolGen's pure parts (issue #6): budgets, scores, fitness, curriculum, specs as data,
and the budgeted evaluation of every template and seeded fault."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labledger.events.toolgen import Budgets, FitnessComponents, ImplStyle
from labledger.lab.toolgen import records, scoring, synth
from labledger.lab.toolgen.budgets import anneal_temp, budgets_for
from labledger.lab.toolgen.evaluate import evaluate
from labledger.lab.toolgen.plan import plan, plan_epoch, specs_for_epoch
from labledger.lab.toolgen.repair import patch_candidates
from labledger.lab.toolgen.specs import get_spec, load_specs

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


def test_performance_score_is_budget_over_actual_capped_at_one() -> None:
    assert scoring.performance_score(2000.0, 0.32) == 1.0
    assert scoring.performance_score(1000.0, 4000.0) == 0.25
    assert scoring.performance_score(1000.0, None) == 0.0
    assert scoring.performance_score(1000.0, 0.0) == 1.0


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


def test_every_epoch_hands_something_off_and_the_plan_is_deterministic() -> None:
    for seed in range(5):
        trials = plan(8, [TD, JF, PS], seed=seed, curriculum="all", fault_rate=0.0)
        assert trials == plan(8, [TD, JF, PS], seed=seed, curriculum="all", fault_rate=0.0)
        for epoch in range(8):
            assert sum(t.fault is not None for t in trials if t.epoch == epoch) == 1
    epoch = plan_epoch(0, [JF], seed=1, curriculum="seed", fault_rate=0.0)
    assert [t.style for t in epoch] == [ImplStyle.SET, ImplStyle.TRIE]  # lsh/suffixarray unfit


def test_specs_are_data_with_reasons_for_unfit_styles() -> None:
    specs = load_specs()
    assert {TD, JF, PS} <= set(specs)
    for spec in specs.values():
        assert spec.tests and spec.reference and spec.faults
        for style in ImplStyle:
            if style not in spec.fitting_styles:
                assert spec.styles[style].startswith("does not fit:")
        for style in spec.fitting_styles:
            assert spec.faults_for(style), f"{spec.id}/{style} has no seeded fault"
    assert get_spec(TD).fitting_styles == tuple(ImplStyle)


def test_render_stamps_spdx_and_the_sbom_describes_the_tool() -> None:
    budgets = budgets_for(4)
    fault = get_spec(TD).fault("weak_signature", ImplStyle.LSH)
    code = synth.render(TD, ImplStyle.LSH, 4, budgets, fault)
    assert code.startswith("# SPDX-License-Identifier: MIT\n")
    assert "1900 ms / 121.6 MB" in code
    doc = json.loads(
        synth.sbom(
            tool_id="t",
            spec_id=TD,
            style=ImplStyle.LSH,
            epoch=4,
            budgets=budgets,
            code=code,
            mutations=[fault.id],
        )
    )
    assert doc["license"] == "MIT" and doc["mutations"] == ["weak_signature"]
    assert doc["dependencies"] == [
        {"name": "zlib", "kind": "python-stdlib", "python": doc["dependencies"][0]["python"]}
    ]
    assert doc["constraints"] == {"timeout_ms": 1900.0, "memory_mb": 121.6}


def test_clean_templates_pass_and_every_seeded_fault_fails() -> None:
    budgets = budgets_for(0)
    for spec in load_specs().values():
        for style in spec.fitting_styles:
            for fault in (None, *spec.faults_for(style)):
                code = synth.render(spec.id, style, 0, budgets, fault)
                m = evaluate(code, spec, budgets, hash_seeds=(1, 2), timed_runs=2)
                label = f"{spec.id}/{style}/{fault.id if fault else 'clean'}"
                assert m.median_ms is not None, label
                if fault is None:
                    assert (m.correctness, m.stability, m.robustness) == (1.0, 1.0, 1.0), label
                    assert scoring.safety_score(code) == 1.0, label
                    assert scoring.documentation_score(code, spec.function) == 1.0, label
                else:
                    assert m.correctness < 1.0, label


def test_hash_order_fault_is_caught_as_a_flake() -> None:
    spec = get_spec(TD)
    code = synth.render(
        TD, ImplStyle.SET, 0, budgets_for(0), spec.fault("unordered", ImplStyle.SET)
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
    assert "MemoryError" in m.detail or "memory" in m.detail


def test_patch_list_fixes_off_by_one_faults() -> None:
    spec = get_spec(TD)
    code = synth.render(
        TD, ImplStyle.TRIE, 0, budgets_for(0), spec.fault("short_path", ImplStyle.TRIE)
    )
    fixed = patch_candidates(code, ImplStyle.TRIE)
    assert fixed[0].code == synth.render(TD, ImplStyle.TRIE, 0, budgets_for(0))
    assert records.hash_seeds("x") == records.hash_seeds("x") != records.hash_seeds("y")


def test_data_files_load_from_an_installed_layout(tmp_path: Path) -> None:
    # What a wheel installs: the package tree alone, without the repository around it.
    src = Path(__file__).resolve().parents[2] / "src" / "labledger"
    shutil.copytree(src, tmp_path / "labledger", ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "from labledger.lab.toolgen.specs import load_specs, patch_list, template_text\n"
        "from labledger.events.toolgen import ImplStyle\n"
        "specs = load_specs(); assert len(specs) >= 3 and patch_list()\n"
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
