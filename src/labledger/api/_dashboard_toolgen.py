"""The ToolGen page: one run's leaderboard (tie-break keys, lineage, genome, Pareto
flag), its Pareto chart, median_ms per epoch, and the handoff and repair rates.

The run scope comes from the ``toolgen`` read model itself (it stores each row's
run): ``?run=ID`` (repeatable) picks runs, ``?run=all`` takes every run, and with
no ``run`` the read model's latest run is shown. The selector lists the read
model's runs, with the runs read model's status where it has one (a log written
without ``run.RunStarted`` still has ToolGen runs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from labledger.api import _dashboard_charts as charts
from labledger.api._dashboard_runs import RunParam
from labledger.api._deps import Reader, State
from labledger.api._html import event_link, figures, heading, render, table, text
from labledger.projections.base import Tx
from labledger.projections.runs import run_rows
from labledger.projections.toolgen import (
    TIE_BREAK,
    ParetoPoint,
    Rates,
    Standing,
    latest_run,
    leaderboard,
    median_ms_by_epoch,
    pareto,
    rates,
    runs,
)

router = APIRouter(include_in_schema=False)
ACTION = "/ui/toolgen"
TOP = 10
"""Leaderboard rows per spec on the page."""
EVERY_TOOL = 1_000_000
"""A ``top`` that keeps every standing (the Pareto chart links each point to its evaluation)."""
BOARD_HEADERS = (
    "spec",
    "rank",
    "tool",
    "fitness",
    "performance",
    "median_ms (ms)",
    "reference_ms (ms)",
    "peak (KiB)",
    "position (evaluation)",
    "epoch",
    "genome",
    "stability",
    "pareto",
    "lineage",
    "parent",
    "generation",
    "repair attempt",
    "chain (root → tool)",
)
RATE_HEADERS = (
    "spec",
    "tools",
    "handed off",
    "handoff rate",
    "handoffs",
    "repaired",
    "handoff success",
    "repair attempts",
    "repairs ok",
    "repairs failed",
    "pending",
    "repair success",
    "attempts per repair",
    "time to repair (s)",
)


def ranked_by() -> str:
    """The leaderboard's sort keys as printed above it."""
    return "ranked by " + ", then ".join(TIE_BREAK)


def _scope(
    tx: Tx, rows: dict[str, dict[str, Any]], run: list[str] | None
) -> tuple[list[str | None], dict[str, Any]]:
    """The run ids to show (``None``: every run) and the page's run selector;
    ``rows`` are the runs read model's rows by run id (for their status).

    Raises:
        HTTPException: 404 when a named run is not one of the read model's runs.
    """
    known = runs(tx)
    everything = run is not None and "all" in run
    if everything:
        chosen: list[str | None] = [None]
    elif run:
        missing = [r for r in run if r not in known]
        if missing:
            raise HTTPException(404, f"no toolgen run {missing[0]!r}")
        chosen = list(dict.fromkeys(run))
    else:
        latest = latest_run(tx)
        chosen = [] if latest is None else [latest]
    listed = [
        rows.get(r, {"run_id": r, "subsystem": "toolgen", "status": "no run.RunStarted"})
        for r in reversed(known)
    ]
    selector = {
        "action": ACTION,
        "runs": listed,
        "chosen": {c for c in chosen if c is not None},
        "all": everything,
        "keep": [],
        "multiple": False,
    }
    return chosen, selector


AXES = {
    "median_ms": ("median run time (ms, log)", "%{x:.4g} ms"),
    "peak_kib": ("peak memory (KiB, log)", "%{x:.4g} KiB"),
}


def pareto_figure(
    points: Sequence[ParetoPoint], positions: dict[tuple[str, str], int], axis: str = "median_ms"
) -> dict[str, Any] | None:
    """Fitness against ``axis`` (``median_ms`` or ``peak_kib``, log x) per spec: every
    measured tool, its Pareto points marked (diamonds joined in x order), each linking
    to its evaluation. The set is over all three objectives, so a dominated point may
    sit above-left of the line here: it loses on the axis not drawn."""
    label, at = AXES[axis]
    by_spec: dict[str, list[ParetoPoint]] = defaultdict(list)
    for p in points:
        if getattr(p, axis) > 0:  # a log axis has no place for 0
            by_spec[p.spec_id].append(p)
    data: list[dict[str, Any]] = []
    for i, (spec, shown) in enumerate(sorted(by_spec.items())):
        color = charts.PALETTE[i % len(charts.PALETTE)]
        for front in (False, True):
            part = sorted((p for p in shown if p.pareto == front), key=lambda p: getattr(p, axis))
            if not part:
                continue
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers" if front else "markers",
                    "name": f"{spec}: Pareto set" if front else f"{spec}: dominated",
                    "x": [getattr(p, axis) for p in part],
                    "y": [charts.finite(p.fitness) for p in part],
                    "text": [
                        f"{p.tool_id} ({p.impl_style}, {p.median_ms:.4g} ms, {p.peak_kib:.4g} KiB)"
                        for p in part
                    ],
                    "customdata": [charts.href(positions[(p.spec_id, p.tool_id)]) for p in part],
                    "hovertemplate": f"%{{text}}: fitness %{{y:.4g}} at {at}"
                    + charts.CLICK_HINT
                    + "<extra></extra>",
                    "marker": {
                        "color": color,
                        "size": 11 if front else 7,
                        "symbol": "diamond" if front else "circle-open",
                    },
                    "line": {"color": color, "dash": "dot"},
                }
            )
    if not data:
        return None
    return {
        "data": data,
        "layout": {
            "title": {"text": f"Fitness against {axis} (Pareto set marked)", "x": 0.01},
            "xaxis": {"title": {"text": label}, "type": "log", "automargin": True},
            "yaxis": {"title": {"text": "fitness"}, "autorange": True, "automargin": True},
            "hovermode": "closest",
            "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "legend": {"orientation": "h", "y": -0.25},
        },
    }


def _board_row(s: Standing, front: set[tuple[str, str]]) -> list[Any]:
    return [
        s.spec_id,
        s.rank,
        s.tool_id,
        s.fitness,
        s.performance,
        s.median_ms,
        s.reference_ms,
        s.peak_kib,
        event_link(s.position),
        s.epoch,
        s.genome,
        s.stability,
        (s.spec_id, s.tool_id) in front,
        s.lineage,
        s.parent_tool_id,
        s.generation,
        s.repair_attempt,
        " → ".join(s.chain),
    ]


def _rate_row(r: Rates) -> list[Any]:
    return [
        r.spec_id or "(all)",
        r.tools_evaluated,
        r.tools_handed_off,
        r.handoff_rate,
        r.handoffs,
        r.handoffs_repaired,
        r.handoff_success_rate,
        r.repair_attempts,
        r.repairs_succeeded,
        r.repairs_failed,
        r.repairs_pending,
        r.repair_success_rate,
        r.attempts_per_repair,
        r.time_to_repair_s,
    ]


def _run_sections(tx: Tx, run_id: str | None, suffix: str) -> list[dict[str, Any]]:
    """One run's (``None``: every run's) tables and charts; ``suffix`` keeps element ids unique."""
    standings = leaderboard(tx, top=TOP, run_id=run_id)
    every = leaderboard(tx, top=EVERY_TOOL, run_id=run_id)
    points = pareto(tx, run_id=run_id)
    front = {(p.spec_id, p.tool_id) for p in points if p.pareto}
    positions = {(s.spec_id, s.tool_id): s.position for s in every}
    by_spec: dict[str, list[charts.PointAt]] = defaultdict(list)
    for m in median_ms_by_epoch(tx, run_id=run_id):
        by_spec[m.spec_id].append((float(m.epoch), m.median_ms, None))  # an aggregate: no event
    epochs = charts.line_figure(
        "median_ms per epoch (median over the spec's tools)",
        sorted(by_spec.items()),
        "epoch",
        "median run time (ms)",
    )
    return [
        heading("Leaderboard"),
        text(
            ranked_by() + f" (top {TOP} per spec; position: the evaluation's log position)",
            text_id=f"tie-break{suffix}",
        ),
        text("pareto: not dominated in (fitness, median_ms, peak_kib) among the spec's tools"),
        table(f"leaderboard{suffix}", BOARD_HEADERS, [_board_row(s, front) for s in standings]),
        heading("Pareto front"),
        text(
            "The Pareto set is over fitness, median_ms and peak_kib: a dominated point above "
            "the line in one chart loses on the other axis. Click a point for its evaluation."
        ),
        figures(
            (f"pareto-chart{suffix}", pareto_figure(points, positions)),
            (f"pareto-memory-chart{suffix}", pareto_figure(points, positions, "peak_kib")),
        ),
        heading("Performance per epoch"),
        figures((f"epochs-chart{suffix}", epochs)),
        heading("Handoff and repair rates"),
        table(f"rates{suffix}", RATE_HEADERS, [_rate_row(r) for r in rates(tx, run_id)]),
    ]


@router.get("/ui/toolgen")
def toolgen_page(state: State, _: Reader, run: RunParam = None) -> HTMLResponse:
    """ToolGen for the chosen runs (default: the latest): leaderboard, Pareto, epochs, rates."""
    with state.read("runs") as rtx:
        rows = {r["run_id"]: r for r in run_rows(rtx, subsystem="toolgen")}
    with state.read("toolgen") as tx:
        chosen, selector = _scope(tx, rows, run)
        sections: list[dict[str, Any]] = []
        for i, run_id in enumerate(chosen):
            suffix = "" if i == 0 else f"-{i}"
            sections += [
                heading(f"Run {run_id or '(all runs)'}"),
                *_run_sections(tx, run_id, suffix),
            ]
    if not chosen:
        sections = [text("No ToolGen run in the log yet.")]
    return render("toolgen", "ToolGen", sections, head=state.store.head(), selector=selector)
