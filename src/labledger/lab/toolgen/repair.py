"""RepairLab's search: edit candidates for a failing tool, ordered by its test output.

The candidates are every single edit of RepairLab's operator set
(:data:`mutate.REPAIR_OPERATORS`: the inverses of ToolGen's faulting mutations)
at every site of the failing code. RepairLab never sees the clean template:
it has the failing bundle and its test output only. The output orders the
search (a stable sort, so ties keep source order):

1. sites on a line the failing tests' tracebacks point at come first;
2. then by what the failing assertions' values suggest: a result of the wrong
   *length* (an item lost or gained) points at boundaries and off-by-ones
   (``boundary``, ``off_by_one_*``, ``restore_last``); one of the right length
   but wrong content or order at swapped or negated comparisons and
   alternative calls;
3. then source order.

Duplicate candidates (two edits giving the same code) are tried once. Each
candidate is re-tested in a fresh, budgeted subprocess (the reference tests,
then the full two-run evaluation); it repairs the tool when correctness and
stability are both 1. The candidate list is a pure function of (code, test
output), so a resumed RepairLab finds attempt *n* to be the same edit.
"""

from __future__ import annotations

from typing import Any

import msgspec

from labledger.events.toolgen import ImplStyle
from labledger.lab.toolgen import mutate
from labledger.lab.toolgen.budgets import budgets_for
from labledger.lab.toolgen.evaluate import Measurement, check, evaluate
from labledger.lab.toolgen.specs import Spec

LENGTH_OPERATORS = frozenset({"boundary", "off_by_one_up", "off_by_one_down", "restore_last"})


class Candidate(msgspec.Struct, frozen=True):
    """A proposed repair: code, its style, and the edit that made it (``operator@site``)."""

    code: str
    style: ImplStyle
    how: str


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of trying one candidate."""

    repaired: bool
    passed: float
    """Fraction of the reference tests the candidate passed."""
    measurement: Measurement | None = None
    detail: str


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, list | dict | str) else None


def length_mismatch(failures: list[dict[str, Any]]) -> bool:
    """Whether a failing assertion got a result of another length than expected."""
    for f in failures:
        got, expected = _sized(f.get("got")), _sized(f.get("expected"))
        if not f.get("raised") and got is not None and expected is not None and got != expected:
            return True
    return False


def candidates(code: str, style: ImplStyle, report: dict[str, Any]) -> list[Candidate]:
    """Every single edit of RepairLab's operators on ``code``, ordered by ``report``.

    Args:
        code: the failing tool's source.
        style: its style (a repair keeps it).
        report: the handoff's test output (``failures``: per failing test
            ``raised``, ``got``, ``expected``, ``line``).
    """
    failures: list[dict[str, Any]] = list(report.get("failures", []))
    lines = {f["line"] for f in failures if f.get("line")}
    by_length = length_mismatch(failures)
    ranked: list[tuple[tuple[int, int, int], str]] = []
    for op in mutate.REPAIR_OPERATORS:
        value_hint = 0 if (op in LENGTH_OPERATORS) == by_length else 1
        for k, line in enumerate(mutate.sites(code, op)):
            ranked.append(((0 if line in lines else 1, value_hint, line), f"{op}@{k}"))
    ranked.sort(key=lambda item: item[0])
    found: list[Candidate] = []
    seen = {code}
    for _, edit in ranked:
        fixed = mutate.apply(code, edit)
        if fixed not in seen:
            seen.add(fixed)
            found.append(Candidate(fixed, style, edit))
    return found


def attempt(
    candidate: Candidate,
    spec: Spec,
    epoch: int,
    *,
    seeds: tuple[int, int],
    timed_runs: int,
) -> Outcome:
    """Re-test ``candidate`` under the epoch's budgets: the quick test, then in full.

    Args:
        candidate: the edit to try.
        spec, epoch: what the tool implements and under which budgets.
        seeds: hash seeds of the re-test runs (derived from the challenger's id).
        timed_runs: benchmark repetitions of a candidate that passes.
    """
    budgets = budgets_for(epoch)
    passed = check(candidate.code, spec, budgets, seeds[0])
    if passed < 1.0:
        return Outcome(
            repaired=False, passed=passed, detail=f"{candidate.how}: {passed:.3f} of the tests"
        )
    m = evaluate(candidate.code, spec, budgets, hash_seeds=seeds, timed_runs=timed_runs)
    ok = m.correctness == 1.0 and m.stability == 1.0
    detail = f"{candidate.how}: correctness {m.correctness:.3f}, stability {m.stability}"
    return Outcome(repaired=ok, passed=passed, measurement=m if ok else None, detail=detail)
