"""toolgen: the ToolGen ⇄ RepairLab tournament (seed ``001_…``) as read models.

Tables (all plain facts taken from events; every number the lab asks for is
computed by the query functions below, so live catch-up and a rebuild hold
identical rows):

- ``tools``: identity and lineage of each synthesized tool or challenger.
- ``standings``: each evaluated tool's *latest* evaluation (the leaderboard).
- ``epoch_ms``: (spec, epoch, tool) → ``median_ms`` of its latest evaluation
  in that epoch (performance per epoch).
- ``handoffs`` and ``attempts``: RepairLab's queue and each repair attempt.

Only ids, numbers and enum values are stored: free text (a handoff's reason,
an agent's name, a failure's detail) is left in the log, where it may hold
characters a PostgreSQL ``text`` column refuses (NUL).

Definitions (the documented choices):

- **Re-evaluation**: a tool's latest ``ToolEvaluated`` replaces the earlier
  ones on the leaderboard (spec, epoch, style, median_ms, stability, fitness
  all come from it; ``evaluations`` counts them). In ``epoch_ms`` it replaces
  only the value of the same (spec, epoch): a re-run in a later epoch under a
  tighter budget is a new measurement of that epoch, the old epoch keeps its own.
- **Ranking** within a spec: fitness descending, then ``median_ms`` ascending
  (a tool that did not run, ``None``, after every measured one), then the log
  position of the evaluation the standing comes from, ascending — the first to
  post a score keeps the higher rank. Positions are unique, so ranks are total.
- **Lineage**: ``original`` unless a ``ChallengerEntered`` names the tool; then
  its lineage, parent and handoff, and the repair attempt that produced it
  (the highest succeeded attempt of that handoff whose repaired code matches
  the challenger's, else the highest succeeded one) as known at entry.
  ``chain`` walks parent links to the root; ``generation`` is the number of links.
- **Handoff rate** (per tool, not per evaluation): evaluated tools handed off
  at least once / evaluated tools. Flake re-runs neither dilute nor inflate it.
- **Handoff success rate**: handoffs with a succeeded attempt / handoffs.
- **Repair success rate**: succeeded attempts / attempts (pending included);
  an attempt's outcome is its latest ``RepairSucceeded``/``RepairFailed``.
- A handoff's spec is its tool's (latest evaluation, else synthesis) and, for a
  tool the log has not described, the file stem of ``spec_path``. Attempts of
  an unknown handoff count only in the overall row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.events import Event
from labledger.events.toolgen import (
    ChallengerEntered,
    HandoffRequested,
    RepairAttempted,
    RepairFailed,
    RepairSucceeded,
    ToolEvaluated,
    ToolSynthesized,
)
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx

DEFAULT_TOP = 5

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class ToolgenProjection(Projection):
    """Leaderboards, handoff/repair rates and performance per epoch of ToolGen."""

    name = "toolgen"
    version = 1
    handles = (
        ToolSynthesized,
        ToolEvaluated,
        ChallengerEntered,
        HandoffRequested,
        RepairAttempted,
        RepairSucceeded,
        RepairFailed,
    )
    description = "ToolGen leaderboard per spec, lineage, handoff/repair rates, median_ms/epoch"

    def define(self, tables: TableSet) -> None:
        text, integer, big, double = sa.Text, sa.Integer, sa.BigInteger, sa.Double
        tables.add(
            "tools",
            sa.Column("tool_id", text, primary_key=True),
            sa.Column("spec_id", text, nullable=False),
            sa.Column("impl_style", text, nullable=False),
            sa.Column("epoch", big, nullable=False),
            sa.Column("lineage", text, nullable=False),
            sa.Column("parent_tool_id", text),
            sa.Column("handoff_id", text),
            sa.Column("repair_attempt", big),
            sa.Column("first_position", big, nullable=False),
        )
        tables.add(
            "standings",
            sa.Column("tool_id", text, primary_key=True),
            sa.Column("spec_id", text, nullable=False),
            sa.Column("impl_style", text, nullable=False),
            sa.Column("epoch", big, nullable=False),
            sa.Column("fitness", double, nullable=False),
            sa.Column("median_ms", double),
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
            sa.Column("median_ms", double),
        )
        tables.add(
            "handoffs",
            sa.Column("handoff_id", text, primary_key=True),
            sa.Column("tool_id", text, nullable=False),
            sa.Column("spec_path", text, nullable=False),
            sa.Column("epoch", big, nullable=False),
        )
        tables.add(
            "attempts",
            sa.Column("handoff_id", text, primary_key=True),
            sa.Column("attempt", big, primary_key=True),
            sa.Column("outcome", text, nullable=False),
            sa.Column("repaired_code_sha256", text),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event, position = item.event, item.record.position
        match event:
            case ToolSynthesized():
                _synthesized(tx, event, position)
            case ChallengerEntered():
                _challenger(tx, event, position)
            case ToolEvaluated():
                _evaluated(tx, event, position)
            case HandoffRequested():
                tx.upsert(
                    "handoffs",
                    {"handoff_id": event.handoff_id},
                    tool_id=event.tool_id,
                    spec_path=event.spec_path,
                    epoch=event.epoch,
                )
            case RepairAttempted():
                key = {"handoff_id": event.handoff_id, "attempt": event.attempt}
                if tx.get("attempts", **key) is None:  # a repeated start keeps the outcome
                    tx.insert("attempts", **key, outcome=PENDING)
            case RepairSucceeded():
                _outcome(tx, event.handoff_id, event.attempt, SUCCEEDED, event.repaired_code_sha256)
            case RepairFailed():
                _outcome(tx, event.handoff_id, event.attempt, FAILED, None)
            case _:
                pass


def _synthesized(tx: Tx, e: ToolSynthesized, position: int) -> None:
    identity = {"spec_id": e.spec_id, "impl_style": e.impl_style.value, "epoch": e.epoch}
    # A later synthesis updates the identity but never erases a challenger's lineage.
    if not tx.update("tools", {"tool_id": e.tool_id}, **identity):
        tx.insert(
            "tools", tool_id=e.tool_id, lineage="original", first_position=position, **identity
        )


def _challenger(tx: Tx, e: ChallengerEntered, position: int) -> None:
    values = {
        "spec_id": e.spec_id,
        "impl_style": e.impl_style.value,
        "epoch": e.epoch,
        "lineage": e.lineage.value,
        "parent_tool_id": e.parent_tool_id,
        "handoff_id": e.handoff_id,
        "repair_attempt": _producing_attempt(tx, e.handoff_id, e.code_sha256),
    }
    if not tx.update("tools", {"tool_id": e.tool_id}, **values):
        tx.insert("tools", tool_id=e.tool_id, first_position=position, **values)


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


def _evaluated(tx: Tx, e: ToolEvaluated, position: int) -> None:
    before = tx.get("standings", tool_id=e.tool_id)
    tx.upsert(
        "standings",
        {"tool_id": e.tool_id},
        spec_id=e.spec_id,
        impl_style=e.impl_style.value,
        epoch=e.epoch,
        fitness=e.fitness,
        median_ms=e.median_ms,
        stability=e.stability,
        correctness=e.correctness,
        evaluations=1 if before is None else before.evaluations + 1,
        position=position,
    )
    key = {"spec_id": e.spec_id, "epoch": e.epoch, "tool_id": e.tool_id}
    tx.upsert("epoch_ms", key, median_ms=e.median_ms)


def _outcome(tx: Tx, handoff_id: str, attempt: int, outcome: str, sha: str | None) -> None:
    key = {"handoff_id": handoff_id, "attempt": attempt}
    tx.upsert("attempts", key, outcome=outcome, repaired_code_sha256=sha)


# -- queries ---------------------------------------------------------------------


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """One leaderboard row: a tool's latest evaluation, its rank and its lineage."""

    spec_id: str
    rank: int
    tool_id: str
    fitness: float
    epoch: int
    impl_style: str
    median_ms: float | None
    stability: float
    correctness: float
    evaluations: int
    lineage: str
    parent_tool_id: str | None
    generation: int
    repair_attempt: int | None
    chain: list[str]
    """Tool ids from the root original to this tool, following parent links."""


class EpochMedian(msgspec.Struct, frozen=True, kw_only=True):
    """The median of the measured tools' ``median_ms`` in one (spec, epoch)."""

    spec_id: str
    epoch: int
    tools: int
    median_ms: float


class Rates(msgspec.Struct, frozen=True, kw_only=True):
    """Handoff and repair counts and rates of one spec (``spec_id=None``: overall).

    A rate is ``None`` when its denominator is zero.
    """

    spec_id: str | None
    tools_evaluated: int = 0
    tools_handed_off: int = 0
    handoff_rate: float | None = None
    handoffs: int = 0
    handoffs_repaired: int = 0
    handoff_success_rate: float | None = None
    repair_attempts: int = 0
    repairs_succeeded: int = 0
    repairs_failed: int = 0
    repairs_pending: int = 0
    repair_success_rate: float | None = None


def leaderboard(tx: Tx, spec: str | None = None, top: int = DEFAULT_TOP) -> list[Standing]:
    """The top ``top`` evaluated tools of each spec, ranked as the module docstring says.

    Args:
        tx: a read of the ``toolgen`` projection (``engine.read("toolgen")``).
        spec: only this spec; ``None`` for every spec.
        top: how many rows per spec (>= 1).

    Returns:
        Rows grouped by spec (specs in code-point order), rank 1 first.
    """
    s = tx.table("standings")
    query = sa.select(s).order_by(
        s.c.fitness.desc(), s.c.median_ms.is_(None), s.c.median_ms, s.c.position
    )
    if spec is not None:
        query = query.where(s.c.spec_id == spec)
    by_spec: dict[str, list[sa.Row[tuple[object, ...]]]] = defaultdict(list)
    for row in tx.query(query):
        if len(by_spec[row.spec_id]) < top:
            by_spec[row.spec_id].append(row)
    tools = _tools(tx)
    return [
        _standing(row, rank, tools)
        for spec_id in sorted(by_spec)
        for rank, row in enumerate(by_spec[spec_id], start=1)
    ]


def _tools(tx: Tx) -> dict[str, sa.Row[tuple[object, ...]]]:
    return {r.tool_id: r for r in tx.query(sa.select(tx.table("tools")))}


def _chain(tool_id: str, tools: dict[str, sa.Row[tuple[object, ...]]]) -> list[str]:
    chain, seen = [tool_id], {tool_id}
    while (row := tools.get(chain[-1])) is not None and row.parent_tool_id is not None:
        if row.parent_tool_id in seen:  # a malformed log's cycle: stop, do not loop
            break
        chain.append(str(row.parent_tool_id))
        seen.add(row.parent_tool_id)
    return chain[::-1]


def _standing(
    row: sa.Row[tuple[object, ...]], rank: int, tools: dict[str, sa.Row[tuple[object, ...]]]
) -> Standing:
    tool = tools.get(str(row.tool_id))
    chain = _chain(str(row.tool_id), tools)
    measured = {k: v for k, v in row._mapping.items() if k != "position"}
    return Standing(
        **measured,
        rank=rank,
        lineage="original" if tool is None else tool.lineage,
        parent_tool_id=None if tool is None else tool.parent_tool_id,
        generation=len(chain) - 1,
        repair_attempt=None if tool is None else tool.repair_attempt,
        chain=chain,
    )


def median(values: Iterable[float]) -> float:
    """The median; the mean of the middle two for an even count, halved first so
    two values near the float maximum do not overflow to infinity."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return ordered[mid - 1] / 2 + ordered[mid] / 2


def median_ms_by_epoch(tx: Tx, spec: str | None = None) -> list[EpochMedian]:
    """Performance per epoch: the median of the tools' ``median_ms`` in each (spec, epoch).

    Args:
        tx: a read of the ``toolgen`` projection.
        spec: only this spec; ``None`` for every spec.

    Returns:
        One row per (spec, epoch) with at least one measured tool (tools that did
        not run, ``median_ms`` None, are left out), ordered by spec then epoch.
    """
    t = tx.table("epoch_ms")
    query = sa.select(t.c.spec_id, t.c.epoch, t.c.median_ms).where(t.c.median_ms.is_not(None))
    if spec is not None:
        query = query.where(t.c.spec_id == spec)
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in tx.query(query):
        groups[(row.spec_id, row.epoch)].append(row.median_ms)
    return [
        EpochMedian(spec_id=s, epoch=e, tools=len(groups[(s, e)]), median_ms=median(groups[(s, e)]))
        for s, e in sorted(groups)
    ]


def rates(tx: Tx) -> list[Rates]:
    """Handoff rate, handoff success rate and repair success rate, per spec and overall.

    Args:
        tx: a read of the ``toolgen`` projection.

    Returns:
        One row per spec (code-point order), then the overall row (``spec_id=None``).
    """
    s = tx.table("standings")
    evaluated = {r.tool_id: r.spec_id for r in tx.query(sa.select(s.c.tool_id, s.c.spec_id))}
    synthesized = {tool_id: row.spec_id for tool_id, row in _tools(tx).items()}
    handoffs = list(tx.query(sa.select(tx.table("handoffs"))))
    spec_of_handoff = {
        h.handoff_id: evaluated.get(h.tool_id)
        or synthesized.get(h.tool_id)
        or PurePosixPath(h.spec_path).stem
        for h in handoffs
    }
    outcomes: dict[str, list[str]] = defaultdict(list)
    for a in tx.query(sa.select(tx.table("attempts"))):
        outcomes[a.handoff_id].append(a.outcome)
    handed_off = {h.tool_id for h in handoffs}
    counts: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for tool_id, spec in evaluated.items():
        for key in (spec, None):
            counts[key]["tools_evaluated"] += 1
            counts[key]["tools_handed_off"] += tool_id in handed_off
    for handoff_id, spec in spec_of_handoff.items():
        for key in (spec, None):
            counts[key]["handoffs"] += 1
            counts[key]["handoffs_repaired"] += SUCCEEDED in outcomes[handoff_id]
    for handoff_id, results in outcomes.items():
        for key in {spec_of_handoff.get(handoff_id), None}:
            counts[key]["repair_attempts"] += len(results)
            for outcome in (SUCCEEDED, FAILED, PENDING):
                counts[key][f"repairs_{outcome}"] += results.count(outcome)
    specs: list[str | None] = [*sorted(s for s in counts if s is not None), None]
    return [_rates(spec, counts[spec]) for spec in specs]


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _rates(spec: str | None, counts: dict[str, int]) -> Rates:
    c: dict[str, Any] = dict(counts)  # missing counts take the struct's default, 0
    return Rates(
        spec_id=spec,
        handoff_rate=_ratio(counts["tools_handed_off"], counts["tools_evaluated"]),
        handoff_success_rate=_ratio(counts["handoffs_repaired"], counts["handoffs"]),
        repair_success_rate=_ratio(counts["repairs_succeeded"], counts["repair_attempts"]),
        **c,
    )
