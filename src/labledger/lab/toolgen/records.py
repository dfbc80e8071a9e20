"""Events from typed state: stream names, ids, and the tournament's records.

Pure functions. Event ids are ``uuid5`` of the run (or handoff) and the item's
identity (:mod:`labledger.lab.runs`), so a batch re-sent after an unknown
outcome (a crash between commit and acknowledgement) is recognised by the store
as already appended, never written twice.
"""

from __future__ import annotations

import hashlib
import uuid

from labledger.events.toolgen import (
    Budgets,
    FitnessComponents,
    Genome,
    HandoffMetrics,
    HandoffRequested,
    ToolEvaluated,
    ToolSynthesized,
)
from labledger.lab.runs import RunKind
from labledger.lab.toolgen import scoring
from labledger.lab.toolgen.budgets import anneal_temp, budgets_for
from labledger.lab.toolgen.evaluate import Measurement
from labledger.lab.toolgen.specs import Spec

_NAMESPACE = uuid.UUID("6f0e3c2a-7d4b-5a51-9c1e-2b7f0a9d4e11")
"""The UUIDv5 namespace of every ToolGen and RepairLab event id (fixed forever)."""
HANDOFF_REASON = "toolgen_incorrect"

# ToolGen's lifecycle has its own stream, ``run-<run>``. It is appended with
# ANY: the exact-version guard against a second writer sits on the trials
# stream, where a duplicate would count. Heartbeats are numbered from 1.
TOOLGEN_RUNS = RunKind("run", _NAMESPACE, actor="toolgen", first_heartbeat_seq=1, exact=False)
"""A tournament's lifecycle stream ``run-<run>``; its trial ids use the same names."""
TRIALS = RunKind("toolgen", _NAMESPACE, actor="toolgen")
"""The tournament's trials stream ``toolgen-<run>``: one atomic batch per trial."""
REPAIRS = RunKind("repairlab", _NAMESPACE, actor="repairlab")
"""RepairLab's stream per handoff ``repairlab-<handoff>``; ids are keyed by the handoff."""


def run_stream(run_id: str) -> str:
    """The run's lifecycle stream (RunStarted, Heartbeat, RunResumed, RunFinished)."""
    return TOOLGEN_RUNS.stream(run_id)


def trials_stream(run_id: str) -> str:
    """The tournament's stream: one atomic batch per trial."""
    return TRIALS.stream(run_id)


def repair_stream(handoff_id: str) -> str:
    """RepairLab's stream for one handoff: attempts, outcomes, the challenger."""
    return REPAIRS.stream(handoff_id)


def tool_id(run_id: str, trial_key: str) -> str:
    """The id of the tool a trial synthesizes."""
    return f"tg-{run_id}-{trial_key}"


def handoff_id(tool: str) -> str:
    """The id of the handoff of ``tool`` (a tool is handed off at most once)."""
    return f"ho-{tool}"


def generation_events_key(epoch: int, spec_id: str) -> str:
    """The identity of one (epoch, spec) generation's plan."""
    return f"e{epoch}-{spec_id}"


def challenger_id(parent: str, attempt: int) -> str:
    """The id of the challenger a successful repair attempt produces."""
    return f"{parent}-fix{attempt}"


def hash_seeds(label: str) -> tuple[int, int]:
    """Two ``PYTHONHASHSEED`` values derived from ``label`` (distinct, in [1, 2**32 - 1])."""
    digest = hashlib.sha256(label.encode()).digest()
    first = int.from_bytes(digest[:4], "big") % (2**32 - 2) + 1
    second = int.from_bytes(digest[4:8], "big") % (2**32 - 2) + 1
    return first, second if second != first else first % (2**32 - 2) + 1


def temperature(epoch: int, genome: Genome) -> float:
    """A tool's effective annealing temperature: the epoch's, times its gene."""
    return anneal_temp(epoch) * genome.anneal_gene


def synthesized(
    tool: str, spec_id: str, genome: Genome, epoch: int, code_sha: str, sbom_sha: str
) -> ToolSynthesized:
    """The ``ToolSynthesized`` record of a generated tool under the epoch's budgets."""
    return ToolSynthesized(
        tool_id=tool,
        spec_id=spec_id,
        impl_style=genome.impl_style,
        epoch=epoch,
        anneal_temp=temperature(epoch, genome),
        budgets=budgets_for(epoch),
        code_sha256=code_sha,
        sbom_sha256=sbom_sha,
    )


def evaluated(
    tool: str,
    spec: Spec,
    genome: Genome,
    epoch: int,
    code: str,
    m: Measurement,
) -> ToolEvaluated:
    """Score a measurement: performance, the five components, diversity bonus, fitness.

    Args:
        tool, spec, genome, epoch: what was measured, and under which budgets.
        code: its source (safety and documentation are static checks of it).
        m: the measurement (with the reference's paired median).
    """
    budgets: Budgets = budgets_for(epoch)
    style = genome.impl_style
    performance = scoring.performance_score(m.reference_ms, m.median_ms)
    components = FitnessComponents(
        correctness=m.correctness,
        safety=scoring.safety_score(code),
        performance=performance,
        robustness=m.robustness,
        documentation=scoring.documentation_score(code, spec.function),
    )
    bonus = scoring.diversity_bonus(style, m.correctness, temperature(epoch, genome))
    return ToolEvaluated(
        tool_id=tool,
        spec_id=spec.id,
        impl_style=style,
        epoch=epoch,
        correctness=m.correctness,
        median_ms=m.median_ms,
        budget_ms=budgets.timeout_ms,
        performance=performance,
        stability=m.stability,
        diversity_bonus=bonus,
        components=components,
        fitness=scoring.fitness(components, m.stability, bonus),
        reference_ms=m.reference_ms,
        peak_kib=m.peak_kib,
    )


def handoff(
    tool: str, spec: Spec, ev: ToolEvaluated, code_sha: str, report_sha: str
) -> HandoffRequested:
    """The handoff of a tool whose correctness is below 1 (the seed's handoff file),
    with its failing test output (``report_sha``)."""
    return HandoffRequested(
        handoff_id=handoff_id(tool),
        tool_id=tool,
        spec_path=spec.path,
        bundle_dir=f"blobs/{code_sha}",
        bundle_sha256=code_sha,
        epoch=ev.epoch,
        impl_style=ev.impl_style,
        reason=HANDOFF_REASON,
        metrics=HandoffMetrics(correctness=ev.correctness, fitness=ev.fitness),
        report_sha256=report_sha,
    )
