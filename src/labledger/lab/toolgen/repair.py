"""RepairLab's agents: how a handed-off tool is repaired, tried in order.

1. ``patchlist`` — the failing code with each matching rule of the patch list
   (``repair_patches.yaml``: common fix patterns such as an off-by-one slice or
   ``enumerate(x, 1)``) applied alone, then all matching rules together.
2. ``template`` — the corrected template: the same style re-rendered clean.
3. ``restyle`` — another style that fits the spec (the baseline first).

Every candidate is re-tested in a fresh, budgeted subprocess (the reference
tests, then the full two-run evaluation); the first candidate with
correctness 1 and stability 1 is the repair. An attempt gives up when its
time bound passes. The candidate generators are pure; the test runs are the
only I/O, through ``evaluate``.
"""

from __future__ import annotations

import time

import msgspec

from labledger.events.toolgen import ImplStyle, RepairFailure
from labledger.lab.toolgen import synth
from labledger.lab.toolgen.budgets import budgets_for
from labledger.lab.toolgen.evaluate import Measurement, check, evaluate
from labledger.lab.toolgen.specs import Spec, patch_list

AGENTS = ("patchlist", "template", "restyle")


class Candidate(msgspec.Struct, frozen=True):
    """A proposed repair: code, its style, and how it was made."""

    code: str
    style: ImplStyle
    how: str


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one repair attempt."""

    repaired: Candidate | None
    measurement: Measurement | None = None
    failure: RepairFailure | None = None
    log: list[str]


def patch_candidates(code: str, style: ImplStyle) -> list[Candidate]:
    """Each applicable patch-list rule alone, then all of them together (no repeats)."""
    found: list[Candidate] = []
    combined, used = code, list[str]()
    for rule in patch_list():
        patched = rule.apply(code)
        if patched != code:
            found.append(Candidate(patched, style, f"patch {rule.id}"))
            combined, used = rule.apply(combined), [*used, rule.id]
    if len(used) > 1:
        found.append(Candidate(combined, style, f"patches {'+'.join(used)}"))
    return found


def template_candidates(spec: Spec, style: ImplStyle, epoch: int) -> list[Candidate]:
    """The corrected template: the same style rendered without any fault."""
    code = synth.render(spec.id, style, epoch, budgets_for(epoch))
    return [Candidate(code, style, f"clean {style.value} template")]


def restyle_candidates(spec: Spec, style: ImplStyle, epoch: int) -> list[Candidate]:
    """Clean templates of the other fitting styles, the baseline first."""
    return [
        Candidate(
            synth.render(spec.id, other, epoch, budgets_for(epoch)), other, f"restyle {other}"
        )
        for other in spec.fitting_styles
        if other != style
    ]


def candidates(agent: str, code: str, spec: Spec, style: ImplStyle, epoch: int) -> list[Candidate]:
    """The candidates ``agent`` proposes for the failing ``code``."""
    if agent == "patchlist":
        return patch_candidates(code, style)
    if agent == "template":
        return template_candidates(spec, style, epoch)
    if agent == "restyle":
        return restyle_candidates(spec, style, epoch)
    raise ValueError(f"unknown repair agent {agent!r}")


def attempt(
    agent: str,
    code: str,
    spec: Spec,
    style: ImplStyle,
    epoch: int,
    *,
    seeds: tuple[int, int],
    timed_runs: int,
    timeout_s: float,
) -> Outcome:
    """Try ``agent``'s candidates until one passes or ``timeout_s`` passes.

    Args:
        agent: one of ``AGENTS``.
        code: the failing tool's source.
        spec, style, epoch: what the tool implements and under which budgets.
        seeds: hash seeds of the re-test runs (derived from the challenger's id).
        timed_runs: benchmark repetitions of the accepted candidate.
        timeout_s: the attempt's time bound; checked before each candidate.
    """
    deadline = time.monotonic() + timeout_s
    budgets = budgets_for(epoch)
    log: list[str] = [f"agent {agent}: {spec.id}/{style.value} epoch {epoch}"]
    for candidate in candidates(agent, code, spec, style, epoch):
        if time.monotonic() > deadline:
            log.append(f"time bound of {timeout_s:g} s passed")
            return Outcome(repaired=None, failure=RepairFailure.TIMEOUT, log=log)
        passed = check(candidate.code, spec, budgets, seeds[0])
        log.append(f"{candidate.how}: {passed:.3f} of the reference tests")
        if passed < 1.0:
            continue
        m = evaluate(candidate.code, spec, budgets, hash_seeds=seeds, timed_runs=timed_runs)
        log.append(f"{candidate.how}: correctness {m.correctness:.3f}, stability {m.stability}")
        if m.correctness == 1.0 and m.stability == 1.0:
            return Outcome(repaired=candidate, measurement=m, log=log)
    log.append("no candidate passed")
    return Outcome(repaired=None, failure=RepairFailure.TESTS_FAILED, log=log)
