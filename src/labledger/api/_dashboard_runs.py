"""The run selector every page carries, and the runs pages.

A page shows one run unless asked for more: ``?run=ID`` (repeatable) picks
runs, ``?run=all`` takes every run of the page's subsystem, and with no
``run`` the latest run is shown.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse

from labledger.api import _dashboard_charts as charts
from labledger.api import _queries as q
from labledger.api._deps import Reader, State
from labledger.api._html import Badge, event_link, figures, heading, link, render, table, text, when
from labledger.api._state import ApiState
from labledger.events.runs import RunStarted
from labledger.projections.runs import run_rows

router = APIRouter(include_in_schema=False)
RunParam = Annotated[list[str] | None, Query(max_length=64)]
TIMELINE_EVENTS = 500


class Chosen:
    """The runs a page shows and the selector that chose them."""

    def __init__(self, runs: list[dict[str, Any]], selector: dict[str, Any]) -> None:
        self.runs = runs
        self.selector = selector

    @property
    def ids(self) -> list[str]:
        """The chosen run ids."""
        return [r["run_id"] for r in self.runs]


def choose(
    state: ApiState,
    run: list[str] | None,
    action: str,
    subsystem: str | None = None,
    keep: list[tuple[str, str]] | None = None,
) -> Chosen:
    """The runs named by ``run`` (default: the latest) among ``subsystem``'s runs.

    Raises:
        HTTPException: 404 when a named run does not exist.
    """
    with state.read("runs") as tx:
        rows = run_rows(tx, subsystem=subsystem)
    by_id = {r["run_id"]: r for r in rows}
    everything = run is not None and "all" in run
    if everything:
        chosen = rows
    elif run:
        missing = [r for r in run if r not in by_id]
        if missing:
            raise HTTPException(404, f"no {subsystem or ''} run {missing[0]!r}".replace("  ", " "))
        chosen = [by_id[r] for r in dict.fromkeys(run)]
    else:
        chosen = rows[-1:]
    selector = {
        "action": action,
        "runs": list(reversed(rows)),
        "chosen": {r["run_id"] for r in chosen},
        "all": everything,
        "keep": keep or [],
        "multiple": False,
    }
    return Chosen(chosen, selector)


def _run_cells(r: dict[str, Any]) -> list[Any]:
    return [
        link(f"/ui/runs/{r['run_id']}", r["run_id"]),
        r["subsystem"],
        r["status"],
        r["outcome"],
        r["attempt"],
        when(r["started_at_us"]),
        when(r["last_heartbeat_at_us"]),
        r["events"],
        event_link(r["last_position"]),
    ]


RUN_HEADERS = (
    "run",
    "subsystem",
    "status",
    "outcome",
    "attempt",
    "started (UTC)",
    "last heartbeat (UTC)",
    "events",
    "last event",
)


@router.get("/ui/runs", response_model=None)
def runs_page(state: State, _: Reader, run: RunParam = None) -> HTMLResponse | RedirectResponse:
    """Runs, latest first; ``?run=ID`` opens one run, several (or ``all``) compare them."""
    with state.read("runs") as tx:
        rows = run_rows(tx)
    chosen = choose(state, run, "/ui/runs")
    if run is not None and len(chosen.runs) == 1:
        return RedirectResponse(f"/ui/runs/{quote(chosen.ids[0], safe='')}", status_code=303)
    sections = [
        text("Pick several runs in the selector (or ?run=A&run=B) to compare them side by side."),
        table("runs", RUN_HEADERS, [_run_cells(r) for r in reversed(rows)]),
    ]
    if run is not None and len(chosen.runs) > 1:
        sections = [heading("Side by side"), _comparison(state, chosen.runs), *sections]
    selector = chosen.selector | {"chosen": set(run or []), "multiple": True}
    return render(
        "runs", f"Runs ({len(rows)})", sections, head=state.store.head(), selector=selector
    )


def _started(state: ApiState, run: dict[str, Any]) -> dict[str, Any]:
    """The run's ``run.RunStarted`` payload as JSON (config, code version, host)."""
    found, _ = q.run_events(state.store, run, 1, 1, {RunStarted.TYPE})
    if not found:
        return {}
    data = msgspec.json.decode(found[0].data)
    return data if isinstance(data, dict) else {}


def _comparison(state: ApiState, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per field (envelope, then config), one column per run; differences marked."""
    started = [_started(state, r) for r in runs]
    fields: list[tuple[str, list[Any]]] = [
        (key, [r.get(key) for r in runs])
        for key in ("subsystem", "status", "outcome", "attempt", "events")
    ]
    fields.append(("started (UTC)", [when(r["started_at_us"]) for r in runs]))
    fields += [(key, [s.get(key) for s in started]) for key in ("code_version", "host")]
    if any(r.get("ended_at_us") for r in runs):  # the runs read model of #17 part 2
        fields.append(("duration (s)", [_duration_s(r) for r in runs]))
    keys = sorted({k for s in started for k in s.get("config", {})})
    fields += [
        (f"config.{k}", [_scalar(s.get("config", {}).get(k)) for s in started]) for k in keys
    ]
    metrics = [_json_column(r, "metrics") for r in runs]
    names = sorted({k for m in metrics for k in m})
    fields += [(f"metric.{k}", [_scalar(m.get(k)) for m in metrics]) for k in names]
    rows = []
    for name, values in fields:
        same = len({msgspec.json.encode(v) for v in values}) == 1
        rows.append([name, Badge("same", "idle") if same else Badge("differs", "warn"), *values])
    return table("comparison", ["field", "", *(r["run_id"] for r in runs)], rows)


def _duration_s(run: dict[str, Any]) -> float | None:
    start, end = run.get("started_at_us"), run.get("ended_at_us")
    return None if start is None or end is None else (end - start) / 1e6


def _json_column(run: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON text column of the runs read model as a dict ({} when absent or not an object)."""
    raw = run.get(name)
    if not isinstance(raw, str | bytes):
        return {}
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _scalar(value: Any) -> Any:
    return msgspec.json.encode(value).decode() if isinstance(value, list | dict) else value


@router.get("/ui/runs/{run_id}")
def run_page(state: State, _: Reader, run_id: Annotated[str, Path(max_length=256)]) -> HTMLResponse:
    """One run's timeline: events per stream over time, and its first events."""
    with state.read("runs") as tx:
        run = q.run_row(tx, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    events, more = q.run_events(state.store, run, 1, TIMELINE_EVENTS)
    t0 = events[0].recorded_at_us if events else 0
    per_stream: dict[str, list[charts.PointAt]] = defaultdict(list)
    for e in events:
        points = per_stream[e.stream]
        points.append(((e.recorded_at_us - t0) / 1e6, float(len(points) + 1), e.position))
    chart = charts.line_figure(
        f"Timeline of run {run_id}",
        sorted(per_stream.items()),
        "seconds since the run's first event (s)",
        "events appended (count)",
    )
    sections = [
        table("run", RUN_HEADERS, [_run_cells(run)]),
        figures(("timeline", chart)),
        heading("Events"),
        *([text(f"first {len(events)} events shown")] if more else []),
        table(
            "events",
            ["position", "recorded (UTC)", "stream", "type", "actor"],
            [
                [event_link(e.position), when(e.recorded_at_us), e.stream, e.type, e.actor]
                for e in events
            ],
        ),
    ]
    return render("runs", f"Run {run_id}", sections, head=state.store.head())
