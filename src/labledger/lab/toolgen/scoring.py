"""Scores and fitness (seed ``001_…``): pure functions, no I/O.

Fitness components, each in [0, 1]:

- **correctness**: the fraction of the spec's reference tests passed in *both*
  test runs (the two runs are separate subprocesses with different hash seeds).
- **safety**: a static AST check of the generated code: ``1 - 0.25`` per
  violation (an import outside the allowed standard modules, a call of
  ``eval``/``exec``/``compile``/``open``/``__import__``/…, a dunder attribute
  such as ``__globals__``), floored at 0.
- **performance**: a clipped log-ratio against the spec's reference
  implementation, timed on the same benchmark in the same child process, run
  for run alternating with the tool (so machine load slows both):
  ``clip(0.8 - 0.4 · log10(median_ms / reference_ms), 0, 1)``. As fast as the
  reference scores 0.8, each tenfold slower 0.4 less (100× slower: 0), and up
  to ~3.2× faster reaches 1; 0 when the tool did not run to the end. The seed's
  ``min(1, budget / median)`` saturated at 1 for every tool (medians of
  milliseconds against budgets of seconds); the budgets stay hard limits, as
  the child's timeout and memory limit.
- **robustness**: the fraction of generated and edge-case inputs on which the
  tool returns what the spec's reference implementation returns (an exception
  is a failure); 0 when the tool did not run.
- **documentation**: 0.5 for a module docstring plus 0.5 for a docstring on the
  spec's function.

``fitness = stability × Σ weight·component + diversity_bonus`` with the seed's
weights (correctness .40, safety .25, performance .15, robustness .10,
documentation .10): a flaky tool (stability 0.5) loses half its weighted score,
the seed's "penalizes fitness for flaky implementations".
"""

from __future__ import annotations

import ast
import math

from labledger.events.toolgen import FitnessComponents, ImplStyle

WEIGHTS: dict[str, float] = {
    "correctness": 0.40,
    "safety": 0.25,
    "performance": 0.15,
    "robustness": 0.10,
    "documentation": 0.10,
}
MAX_DIVERSITY_BONUS = 0.02
DIVERSITY_MIN_CORRECTNESS = 0.9
BASELINE_STYLE = ImplStyle.SET
SAFETY_PENALTY = 0.25

ALLOWED_IMPORTS = frozenset(
    {"bisect", "collections", "functools", "heapq", "itertools", "math", "re", "string", "zlib"}
)
FORBIDDEN_CALLS = frozenset(
    {"eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "breakpoint"}
)


PERFORMANCE_AT_REFERENCE = 0.8
PERFORMANCE_PER_DECADE = 0.4


def performance_score(reference_ms: float | None, median_ms: float | None) -> float:
    """``clip(0.8 - 0.4·log10(median_ms / reference_ms), 0, 1)``; 0 when the tool did
    not run (no median, or no paired reference), 1 for 0 ms (see the module docstring)."""
    if median_ms is None or reference_ms is None:
        return 0.0
    if median_ms <= 0:
        return 1.0
    ratio = math.log10(median_ms / reference_ms)
    return min(1.0, max(0.0, PERFORMANCE_AT_REFERENCE - PERFORMANCE_PER_DECADE * ratio))


def diversity_bonus(style: ImplStyle, correctness: float, temp: float) -> float:
    """Up to 0.02 for a non-baseline style with correctness >= 0.9, scaled by ``temp``
    (clamped to [0, 1]); 0 for the baseline ``set`` style."""
    if style == BASELINE_STYLE or correctness < DIVERSITY_MIN_CORRECTNESS:
        return 0.0
    return MAX_DIVERSITY_BONUS * min(1.0, max(0.0, temp))


def weighted(components: FitnessComponents) -> float:
    """``Σ weight·component`` with the seed's weights."""
    return sum(w * float(getattr(components, name)) for name, w in WEIGHTS.items())


def fitness(components: FitnessComponents, stability: float, bonus: float) -> float:
    """``stability × weighted(components) + bonus``."""
    return stability * weighted(components) + bonus


def safety_violations(code: str) -> list[str]:
    """What the static safety check objects to in ``code`` (empty when clean)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"syntax error: {exc.msg}"]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if not _allowed(a.name)]
        elif isinstance(node, ast.ImportFrom) and not _allowed(node.module or ""):
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS:
                found.append(f"call {node.func.id}()")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            found.append(f"attribute {node.attr}")
    return found


def _allowed(module: str) -> bool:
    return module.split(".", 1)[0] in ALLOWED_IMPORTS


def safety_score(code: str) -> float:
    """``1 - 0.25 × violations``, floored at 0 (see :func:`safety_violations`)."""
    return max(0.0, 1.0 - SAFETY_PENALTY * len(safety_violations(code)))


def documentation_score(code: str, function: str) -> float:
    """0.5 for a module docstring + 0.5 for a docstring on ``function``; 0 if unparsable."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0.0
    score = 0.5 if ast.get_docstring(tree) else 0.0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            score += 0.5 if ast.get_docstring(node) else 0.0
            break
    return score
