"""The ``toolgen`` read model's queries: leaderboard, Pareto set, rates, epochs, runs.

The definitions (scope, ranking, lineage, Pareto, rates) are documented in
:mod:`labledger.projections.toolgen`; these functions read its tables only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.projections.base import Tx

DEFAULT_TOP = 5
TIE_BREAK = ("fitness desc", "median_ms asc (not measured last)", "log position asc")
"""The leaderboard's sort keys, in order (the last is unique: ranks are total)."""
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
OFFSPRING = "offspring"

_Row = sa.Row[tuple[object, ...]]


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """One leaderboard row: a tool's latest evaluation, its rank, tie-break keys, lineage."""

    spec_id: str
    rank: int
    tool_id: str
    run_id: str | None
    fitness: float
    epoch: int
    impl_style: str
    median_ms: float | None
    performance: float
    reference_ms: float | None
    peak_kib: float | None
    stability: float
    correctness: float
    evaluations: int
    position: int
    """The log position of the evaluation (the last tie-break key)."""
    genome: str | None
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


class ParetoPoint(msgspec.Struct, frozen=True, kw_only=True):
    """A measured tool of a spec, and whether any other one dominates it."""

    spec_id: str
    tool_id: str
    fitness: float
    median_ms: float
    peak_kib: float
    impl_style: str
    pareto: bool
    """True when no measured tool of the spec dominates it (the Pareto set)."""


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
    attempts_per_repair: float | None = None
    time_to_repair_s: float | None = None
    """Mean, over repaired handoffs, of their attempts' recorded durations summed."""


def latest_run(tx: Tx) -> str | None:
    """The run whose first event is the latest in the log (``None``: no run)."""
    r = tx.table("runs")
    row = tx.conn.execute(sa.select(r.c.run_id).order_by(r.c.first_position.desc())).first()
    return None if row is None else str(row.run_id)


def runs(tx: Tx) -> list[str]:
    """Every run the read model has seen, oldest first."""
    r = tx.table("runs")
    return [
        str(x.run_id) for x in tx.conn.execute(sa.select(r.c.run_id).order_by(r.c.first_position))
    ]


def _scoped(query: Any, table: sa.Table, run_id: str | None) -> Any:
    return query if run_id is None else query.where(table.c.run_id == run_id)


def leaderboard(
    tx: Tx, spec: str | None = None, top: int = DEFAULT_TOP, run_id: str | None = None
) -> list[Standing]:
    """The top ``top`` evaluated tools of each spec, ranked by :data:`TIE_BREAK`.

    Args:
        tx: a read of the ``toolgen`` projection (``engine.read("toolgen")``).
        spec: only this spec; ``None`` for every spec.
        top: how many rows per spec (>= 1).
        run_id: only this run's tools; ``None`` for every run.

    Returns:
        Rows grouped by spec (specs in code-point order), rank 1 first.
    """
    s = tx.table("standings")
    query = sa.select(s).order_by(
        s.c.fitness.desc(), s.c.median_ms.is_(None), s.c.median_ms, s.c.position
    )
    query = _scoped(query, s, run_id)
    if spec is not None:
        query = query.where(s.c.spec_id == spec)
    by_spec: dict[str, list[_Row]] = defaultdict(list)
    for row in tx.conn.execute(query):
        if len(by_spec[row.spec_id]) < top:
            by_spec[row.spec_id].append(row)
    tools = _tools(tx)
    return [
        _standing(row, rank, tools)
        for spec_id in sorted(by_spec)
        for rank, row in enumerate(by_spec[spec_id], start=1)
    ]


def _tools(tx: Tx) -> dict[str, _Row]:
    return {r.tool_id: r for r in tx.conn.execute(sa.select(tx.table("tools")))}


def _chain(tool_id: str, tools: dict[str, _Row]) -> list[str]:
    chain, seen = [tool_id], {tool_id}
    while (row := tools.get(chain[-1])) is not None and row.parent_tool_id is not None:
        if row.parent_tool_id in seen:  # a malformed log's cycle: stop, do not loop
            break
        chain.append(str(row.parent_tool_id))
        seen.add(row.parent_tool_id)
    return chain[::-1]


def _standing(row: _Row, rank: int, tools: dict[str, _Row]) -> Standing:
    tool = tools.get(str(row.tool_id))
    chain = _chain(str(row.tool_id), tools)
    return Standing(
        **row._mapping,
        rank=rank,
        genome=None if tool is None else tool.genome,
        lineage="original" if tool is None else tool.lineage,
        parent_tool_id=None if tool is None else tool.parent_tool_id,
        generation=len(chain) - 1,
        repair_attempt=None if tool is None else tool.repair_attempt,
        chain=chain,
    )


def dominates(a: ParetoPoint, b: ParetoPoint) -> bool:
    """``a`` is at least as good as ``b`` in fitness, median_ms and peak_kib, better in one."""
    no_worse = a.fitness >= b.fitness and a.median_ms <= b.median_ms and a.peak_kib <= b.peak_kib
    better = a.fitness > b.fitness or a.median_ms < b.median_ms or a.peak_kib < b.peak_kib
    return no_worse and better


def pareto(tx: Tx, spec: str | None = None, run_id: str | None = None) -> list[ParetoPoint]:
    """Every measured tool per spec, flagged when it is in the spec's Pareto set.

    Returns:
        Rows by spec (code-point order), then fitness descending, median_ms
        ascending, peak_kib ascending, tool id.
    """
    s = tx.table("standings")
    query = sa.select(s).where(s.c.median_ms.is_not(None), s.c.peak_kib.is_not(None))
    query = _scoped(query, s, run_id)
    if spec is not None:
        query = query.where(s.c.spec_id == spec)
    by_spec: dict[str, list[ParetoPoint]] = defaultdict(list)
    for r in tx.conn.execute(query):
        point = ParetoPoint(
            spec_id=r.spec_id,
            tool_id=r.tool_id,
            fitness=r.fitness,
            median_ms=r.median_ms,
            peak_kib=r.peak_kib,
            impl_style=r.impl_style,
            pareto=False,
        )
        by_spec[r.spec_id].append(point)
    found = []
    for spec_id in sorted(by_spec):
        points = by_spec[spec_id]
        for p in points:
            flag = not any(dominates(q, p) for q in points if q is not p)
            found.append(msgspec.structs.replace(p, pareto=flag))
    return sorted(found, key=lambda p: (p.spec_id, -p.fitness, p.median_ms, p.peak_kib, p.tool_id))


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


def median_ms_by_epoch(
    tx: Tx, spec: str | None = None, run_id: str | None = None
) -> list[EpochMedian]:
    """Performance per epoch: the median of the tools' ``median_ms`` in each (spec, epoch).

    Args:
        tx: a read of the ``toolgen`` projection.
        spec: only this spec; ``None`` for every spec.
        run_id: only this run; ``None`` for every run.

    Returns:
        One row per (spec, epoch) with at least one measured tool (tools that did
        not run, ``median_ms`` None, are left out), ordered by spec then epoch.
    """
    t = tx.table("epoch_ms")
    query = sa.select(t.c.spec_id, t.c.epoch, t.c.median_ms).where(t.c.median_ms.is_not(None))
    query = _scoped(query, t, run_id)
    if spec is not None:
        query = query.where(t.c.spec_id == spec)
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in tx.conn.execute(query):
        groups[(row.spec_id, row.epoch)].append(row.median_ms)
    return [
        EpochMedian(spec_id=s, epoch=e, tools=len(groups[(s, e)]), median_ms=median(groups[(s, e)]))
        for s, e in sorted(groups)
    ]


def rates(tx: Tx, run_id: str | None = None) -> list[Rates]:
    """Handoff, handoff success and repair success rates, attempts per repair and time
    to repair, per spec and overall.

    Args:
        tx: a read of the ``toolgen`` projection.
        run_id: only this run; ``None`` for every run.

    Returns:
        One row per spec (code-point order), then the overall row (``spec_id=None``).
    """
    s = tx.table("standings")
    query = _scoped(sa.select(s.c.tool_id, s.c.spec_id), s, run_id)
    evaluated = {r.tool_id: r.spec_id for r in tx.conn.execute(query)}
    synthesized = {tool_id: row.spec_id for tool_id, row in _tools(tx).items()}
    h = tx.table("handoffs")
    handoffs = list(tx.conn.execute(_scoped(sa.select(h), h, run_id)))
    spec_of_handoff = {
        h.handoff_id: evaluated.get(h.tool_id)
        or synthesized.get(h.tool_id)
        or PurePosixPath(h.spec_path).stem
        for h in handoffs
    }
    attempts: dict[str, list[_Row]] = defaultdict(list)
    for a in tx.conn.execute(sa.select(tx.table("attempts"))):
        if run_id is None or a.handoff_id in spec_of_handoff:
            attempts[a.handoff_id].append(a)
    counts = _counts(evaluated, {h.tool_id for h in handoffs}, spec_of_handoff, attempts)
    specs: list[str | None] = [*sorted(s for s in counts if s is not None), None]
    return [_rates(spec, counts[spec]) for spec in specs]


def _counts(
    evaluated: dict[str, str],
    handed_off: set[str],
    spec_of_handoff: dict[str, str],
    attempts: dict[str, list[_Row]],
) -> dict[str | None, dict[str, Any]]:
    counts: dict[str | None, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for tool_id, spec in evaluated.items():
        for key in (spec, None):
            counts[key]["tools_evaluated"] += 1
            counts[key]["tools_handed_off"] += tool_id in handed_off
    for handoff_id, spec in spec_of_handoff.items():
        outcomes = [a.outcome for a in attempts[handoff_id]]
        repaired = SUCCEEDED in outcomes
        for key in (spec, None):
            counts[key]["handoffs"] += 1
            counts[key]["handoffs_repaired"] += repaired
            if repaired:
                counts[key]["repaired_attempts"] += len(outcomes)
                counts[key]["repaired_seconds"] += sum(
                    a.duration_s or 0.0 for a in attempts[handoff_id]
                )
    for handoff_id, rows in attempts.items():
        for key in {spec_of_handoff.get(handoff_id), None}:
            counts[key]["repair_attempts"] += len(rows)
            for outcome in (SUCCEEDED, FAILED, PENDING):
                counts[key][f"repairs_{outcome}"] += sum(a.outcome == outcome for a in rows)
    return counts


def _ratio(part: float, whole: int) -> float | None:
    return part / whole if whole else None


def _rates(spec: str | None, counts: dict[str, Any]) -> Rates:
    c = dict(counts)  # missing counts take the struct's default, 0
    repaired_attempts = c.pop("repaired_attempts", 0)
    repaired_seconds = c.pop("repaired_seconds", 0.0)
    repaired = counts["handoffs_repaired"]
    return Rates(
        spec_id=spec,
        handoff_rate=_ratio(counts["tools_handed_off"], counts["tools_evaluated"]),
        handoff_success_rate=_ratio(repaired, counts["handoffs"]),
        repair_success_rate=_ratio(counts["repairs_succeeded"], counts["repair_attempts"]),
        attempts_per_repair=_ratio(repaired_attempts, repaired),
        time_to_repair_s=_ratio(repaired_seconds, repaired),
        **c,
    )
