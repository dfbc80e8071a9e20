"""toolgen: the ToolGen ⇄ RepairLab tournament (seed ``001_…``) as read models.

Tables (all plain facts taken from events; every number the lab asks for is
computed by the query functions below, so live catch-up and a rebuild hold
identical rows):

- ``tools``: identity, run, genome and lineage of each tool: bred
  (``GenerationPlanned``: ``original`` for a first generation, ``offspring``
  with its parent after that), synthesized, or entered as a challenger.
- ``standings``: each evaluated tool's *latest* evaluation (the leaderboard),
  with its performance, the reference's paired median and peak memory.
- ``epoch_ms``: (spec, epoch, tool) → ``median_ms`` of its latest evaluation
  in that epoch (performance per epoch).
- ``handoffs`` and ``attempts``: RepairLab's queue and each repair attempt
  (with its recorded duration).
- ``runs``: each run's first position (the latest run is the default scope).

Only ids, numbers and enum values are stored: free text (a handoff's reason,
an agent's name, a failure's detail) is left in the log, where it may hold
characters a PostgreSQL ``text`` column refuses (NUL).

Definitions (the documented choices):

- **Re-evaluation**: a tool's latest ``ToolEvaluated`` replaces the earlier
  ones on the leaderboard (spec, epoch, style, median_ms, stability, fitness
  all come from it; ``evaluations`` counts them). In ``epoch_ms`` it replaces
  only the value of the same (spec, epoch): a re-run in a later epoch under a
  tighter budget is a new measurement of that epoch, the old epoch keeps its own.
- **Scope**: every query takes ``run_id`` (``None``: all runs). A row's run is
  the envelope's ``run_id`` of the event that created it; a repair attempt
  belongs to its handoff's run.
- **Ranking** within a spec (:data:`TIE_BREAK`): fitness descending, then
  ``median_ms`` ascending (a tool that did not run, ``None``, after every
  measured one), then the log position of the evaluation the standing comes
  from, ascending — the first to post a score keeps the higher rank. Positions
  are unique, so ranks are total.
- **Lineage**: ``original`` unless a ``GenerationPlanned`` names a parent
  (``offspring``) or a ``ChallengerEntered`` names the tool; then its lineage,
  parent and handoff, and the repair attempt that produced it (the highest
  succeeded attempt of that handoff whose repaired code matches the
  challenger's, else the highest succeeded one) as known at entry; a
  challenger's genome is its parent's with that attempt's edit appended.
  ``chain``
  walks parent links to the root; ``generation`` is the number of links.
- **Pareto set** of a spec: the measured tools (``median_ms`` and
  ``peak_kib`` known) that no other measured tool of the spec dominates —
  at least as good in fitness (higher), ``median_ms`` (lower) and ``peak_kib``
  (lower), and better in one.
- **Handoff rate** (per tool, not per evaluation): evaluated tools handed off
  at least once / evaluated tools. Flake re-runs neither dilute nor inflate it.
- **Handoff success rate**: handoffs with a succeeded attempt / handoffs.
- **Repair success rate**: succeeded attempts / attempts (pending included);
  an attempt's outcome is its latest ``RepairSucceeded``/``RepairFailed``.
- **Attempts per repair**: attempts of the repaired handoffs / repaired
  handoffs (the search stops at its first success). **Time to repair**: the
  mean over repaired handoffs of their attempts' recorded ``duration_s``, summed.
- A handoff's spec is its tool's (latest evaluation, else synthesis) and, for a
  tool the log has not described, the file stem of ``spec_path``. Attempts of
  an unknown handoff count only in the overall row.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from labledger.events import Event
from labledger.events.toolgen import (
    ChallengerEntered,
    GenerationPlanned,
    HandoffRequested,
    RepairAttempted,
    RepairFailed,
    RepairSucceeded,
    ToolEvaluated,
    ToolSynthesized,
)
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx
from labledger.projections.toolgen_read import (
    DEFAULT_TOP,
    FAILED,
    OFFSPRING,
    PENDING,
    SUCCEEDED,
    TIE_BREAK,
    EpochMedian,
    ParetoPoint,
    Rates,
    Standing,
    latest_run,
    leaderboard,
    median,
    median_ms_by_epoch,
    pareto,
    rates,
    runs,
)

__all__ = [
    "DEFAULT_TOP",
    "TIE_BREAK",
    "EpochMedian",
    "ParetoPoint",
    "Rates",
    "Standing",
    "ToolgenProjection",
    "genome_text",
    "latest_run",
    "leaderboard",
    "median",
    "median_ms_by_epoch",
    "pareto",
    "rates",
    "runs",
]


class ToolgenProjection(Projection):
    """Leaderboards, handoff/repair rates and performance per epoch of ToolGen."""

    name = "toolgen"
    version = 2
    handles = (
        GenerationPlanned,
        ToolSynthesized,
        ToolEvaluated,
        ChallengerEntered,
        HandoffRequested,
        RepairAttempted,
        RepairSucceeded,
        RepairFailed,
    )
    description = (
        "ToolGen leaderboard per spec with lineage and tie-break keys, Pareto set, "
        "handoff/repair rates, median_ms/epoch, per run"
    )

    def define(self, tables: TableSet) -> None:
        text, integer, big, double = sa.Text, sa.Integer, sa.BigInteger, sa.Double
        tables.add(
            "tools",
            sa.Column("tool_id", text, primary_key=True),
            sa.Column("run_id", text),
            sa.Column("spec_id", text, nullable=False),
            sa.Column("impl_style", text, nullable=False),
            sa.Column("epoch", big, nullable=False),
            sa.Column("genome", text),
            sa.Column("lineage", text, nullable=False),
            sa.Column("parent_tool_id", text),
            sa.Column("handoff_id", text),
            sa.Column("repair_attempt", big),
            sa.Column("first_position", big, nullable=False),
        )
        tables.add(
            "standings",
            sa.Column("tool_id", text, primary_key=True),
            sa.Column("run_id", text),
            sa.Column("spec_id", text, nullable=False),
            sa.Column("impl_style", text, nullable=False),
            sa.Column("epoch", big, nullable=False),
            sa.Column("fitness", double, nullable=False),
            sa.Column("median_ms", double),
            sa.Column("performance", double, nullable=False),
            sa.Column("reference_ms", double),
            sa.Column("peak_kib", double),
            sa.Column("stability", double, nullable=False),
            sa.Column("correctness", double, nullable=False),
            sa.Column("evaluations", integer, nullable=False),
            sa.Column("position", big, nullable=False),
        )
        tables.add(
            "epoch_ms",
            sa.Column("spec_id", text, primary_key=True),
            sa.Column("epoch", big, primary_key=True),
            sa.Column("tool_id", text, primary_key=True),
            sa.Column("run_id", text),
            sa.Column("median_ms", double),
        )
        tables.add(
            "handoffs",
            sa.Column("handoff_id", text, primary_key=True),
            sa.Column("run_id", text),
            sa.Column("tool_id", text, nullable=False),
            sa.Column("spec_path", text, nullable=False),
            sa.Column("epoch", big, nullable=False),
        )
        tables.add(
            "attempts",
            sa.Column("handoff_id", text, primary_key=True),
            sa.Column("attempt", big, primary_key=True),
            sa.Column("outcome", text, nullable=False),
            sa.Column("edit", text),
            sa.Column("repaired_code_sha256", text),
            sa.Column("duration_s", double),
        )
        tables.add(
            "runs",
            sa.Column("run_id", text, primary_key=True),
            sa.Column("first_position", big, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event, position, run = item.event, item.record.position, item.record.run_id
        if run is not None and tx.get("runs", run_id=run) is None:
            tx.insert("runs", run_id=run, first_position=position)
        match event:
            case GenerationPlanned():
                _generation(tx, event, position, run)
            case ToolSynthesized():
                _synthesized(tx, event, position, run)
            case ChallengerEntered():
                _challenger(tx, event, position, run)
            case ToolEvaluated():
                _evaluated(tx, event, position, run)
            case HandoffRequested():
                tx.upsert(
                    "handoffs",
                    {"handoff_id": event.handoff_id},
                    run_id=run,
                    tool_id=event.tool_id,
                    spec_path=event.spec_path,
                    epoch=event.epoch,
                )
            case RepairAttempted():
                key = {"handoff_id": event.handoff_id, "attempt": event.attempt}
                # A repeated start keeps the outcome; the edit tried is the latest start's.
                if not tx.update("attempts", key, edit=event.agent):
                    tx.insert("attempts", **key, outcome=PENDING, edit=event.agent)
            case RepairSucceeded():
                sha = event.repaired_code_sha256
                _outcome(tx, event.handoff_id, event.attempt, SUCCEEDED, sha, event.duration_s)
            case RepairFailed():
                _outcome(tx, event.handoff_id, event.attempt, FAILED, None, event.duration_s)
            case _:
                pass


def genome_text(style: str, gene: float, mutations: Iterable[str]) -> str:
    """A genome as one readable string: ``style ×gene +mutation +mutation``."""
    return " ".join([f"{style} x{gene:g}", *(f"+{m}" for m in mutations)])


def _generation(tx: Tx, e: GenerationPlanned, position: int, run: str | None) -> None:
    for m in e.members:
        g = m.genome
        values = {
            "run_id": run,
            "spec_id": e.spec_id,
            "impl_style": g.impl_style.value,
            "epoch": e.epoch,
            "genome": genome_text(g.impl_style.value, g.anneal_gene, g.mutations),
            "lineage": "original" if m.parent_tool_id is None else OFFSPRING,
            "parent_tool_id": m.parent_tool_id,
        }
        if not tx.update("tools", {"tool_id": m.tool_id}, **values):
            tx.insert("tools", tool_id=m.tool_id, first_position=position, **values)


def _synthesized(tx: Tx, e: ToolSynthesized, position: int, run: str | None) -> None:
    identity = {"spec_id": e.spec_id, "impl_style": e.impl_style.value, "epoch": e.epoch}
    # A later synthesis updates the identity but never erases a bred or repaired lineage.
    if not tx.update("tools", {"tool_id": e.tool_id}, **identity):
        tx.insert(
            "tools",
            tool_id=e.tool_id,
            run_id=run,
            lineage="original",
            first_position=position,
            **identity,
        )


def _challenger(tx: Tx, e: ChallengerEntered, position: int, run: str | None) -> None:
    values = {
        "run_id": run,
        "spec_id": e.spec_id,
        "impl_style": e.impl_style.value,
        "epoch": e.epoch,
        "lineage": e.lineage.value,
        "parent_tool_id": e.parent_tool_id,
        "handoff_id": e.handoff_id,
    }
    attempt = _producing_attempt(tx, e.handoff_id, e.code_sha256)
    values["repair_attempt"] = attempt
    values["genome"] = _repaired_genome(tx, e.parent_tool_id, e.handoff_id, attempt)
    if not tx.update("tools", {"tool_id": e.tool_id}, **values):
        tx.insert("tools", tool_id=e.tool_id, first_position=position, **values)


def _repaired_genome(tx: Tx, parent: str, handoff_id: str, attempt: int | None) -> str | None:
    """The parent's genome with the repairing edit appended, when both are known."""
    row = tx.get("tools", tool_id=parent)
    tried = None if attempt is None else tx.get("attempts", handoff_id=handoff_id, attempt=attempt)
    if row is None or row.genome is None or tried is None or tried.edit is None:
        return None
    return f"{row.genome} +{tried.edit}"


def _producing_attempt(tx: Tx, handoff_id: str, code_sha256: str) -> int | None:
    t = tx.table("attempts")
    rows = tx.query(
        sa.select(t.c.attempt, t.c.repaired_code_sha256).where(
            t.c.handoff_id == handoff_id, t.c.outcome == SUCCEEDED
        )
    ).all()
    matching = [r.attempt for r in rows if r.repaired_code_sha256 == code_sha256]
    chosen = matching or [r.attempt for r in rows]
    return max(chosen) if chosen else None


def _evaluated(tx: Tx, e: ToolEvaluated, position: int, run: str | None) -> None:
    before = tx.get("standings", tool_id=e.tool_id)
    tx.upsert(
        "standings",
        {"tool_id": e.tool_id},
        run_id=run,
        spec_id=e.spec_id,
        impl_style=e.impl_style.value,
        epoch=e.epoch,
        fitness=e.fitness,
        median_ms=e.median_ms,
        performance=e.performance,
        reference_ms=e.reference_ms,
        peak_kib=e.peak_kib,
        stability=e.stability,
        correctness=e.correctness,
        evaluations=1 if before is None else before.evaluations + 1,
        position=position,
    )
    key = {"spec_id": e.spec_id, "epoch": e.epoch, "tool_id": e.tool_id}
    tx.upsert("epoch_ms", key, run_id=run, median_ms=e.median_ms)


def _outcome(
    tx: Tx, handoff_id: str, attempt: int, outcome: str, sha: str | None, duration_s: float
) -> None:
    key = {"handoff_id": handoff_id, "attempt": attempt}
    tx.upsert("attempts", key, outcome=outcome, repaired_code_sha256=sha, duration_s=duration_s)
