"""The dashboard's entry, its static files and the ToolGen page.

Pages are Jinja2 templates (``templates/``) with autoescape; the charts are
plotly figures drawn by ``static/dashboard.js`` with the plotly.js shipped
inside the installed ``plotly`` package (no CDN: the lab's network is
closed, and the CSP allows scripts from this origin only).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from labledger.api import _dashboard_charts as charts
from labledger.api import _dashboard_dream, _dashboard_events, _dashboard_runs
from labledger.api._dashboard_runs import RunParam, choose
from labledger.api._deps import Reader, State
from labledger.api._html import figures, heading, render, static_file, table, text
from labledger.errors import UsageError
from labledger.projections.toolgen import leaderboard, median_ms_by_epoch, rates

router = APIRouter(include_in_schema=False)
MEDIA = {".js": "text/javascript", ".css": "text/css"}


@router.get("/")
def home() -> RedirectResponse:
    """The dashboard starts at the runs."""
    return RedirectResponse("/ui/runs")


@router.get("/static/{name}")
def static(name: Annotated[str, Path(max_length=64)]) -> FileResponse:
    """The dashboard's script and stylesheet, and plotly.js from the plotly package."""
    try:
        path = static_file(name)
    except UsageError as exc:
        raise HTTPException(404, str(exc)) from None
    media = MEDIA.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


@router.get("/ui/toolgen")
def toolgen_page(state: State, _: Reader, run: RunParam = None) -> HTMLResponse:
    """ToolGen: leaderboard per spec with lineage, median_ms per epoch, handoff/repair rates."""
    chosen = choose(state, run, "/ui/toolgen", "toolgen")
    with state.read("toolgen") as tx:
        standings, epochs, rate_rows = leaderboard(tx), median_ms_by_epoch(tx), rates(tx)
    by_spec: dict[str, list[charts.PointAt]] = defaultdict(list)
    for m in epochs:
        by_spec[m.spec_id].append((float(m.epoch), m.median_ms, None))  # an aggregate: no event
    chart = charts.line_figure(
        "median_ms per epoch (median over the spec's tools)",
        sorted(by_spec.items()),
        "epoch",
        "median run time (ms)",
    )
    board = [
        [
            s.spec_id,
            s.rank,
            s.tool_id,
            s.fitness,
            s.epoch,
            s.impl_style,
            s.median_ms,
            s.stability,
            s.lineage,
            " ← ".join(reversed(s.chain[:-1])) or None,
            s.repair_attempt,
        ]
        for s in standings
    ]
    rate_table = [
        [
            r.spec_id or "(all)",
            r.tools_evaluated,
            r.tools_handed_off,
            r.handoff_rate,
            r.handoff_success_rate,
            r.repair_attempts,
            r.repairs_succeeded,
            r.repair_success_rate,
        ]
        for r in rate_rows
    ]
    sections = [
        text(
            "ToolGen's read model does not record which run a tool came from yet, "
            "so these tables cover every ToolGen run in the log."
        ),
        heading("Leaderboard"),
        table(
            "leaderboard",
            [
                "spec",
                "rank",
                "tool",
                "fitness",
                "epoch",
                "style",
                "median_ms (ms)",
                "stability",
                "lineage",
                "challenger of",
                "repair attempt",
            ],
            board,
        ),
        heading("Performance per epoch"),
        figures(("epochs-chart", chart)),
        heading("Handoff and repair rates"),
        table(
            "rates",
            [
                "spec",
                "tools",
                "handed off",
                "handoff rate",
                "handoff success",
                "repair attempts",
                "repairs ok",
                "repair success",
            ],
            rate_table,
        ),
    ]
    return render("toolgen", "ToolGen", sections, head=state.store.head(), selector=chosen.selector)


for _module in (_dashboard_runs, _dashboard_dream, _dashboard_events):
    router.include_router(_module.router)
