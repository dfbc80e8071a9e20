"""Dashboard pages for runs, D-REAM and ToolGen (server-rendered HTML with SVG charts)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse, RedirectResponse

from labledger.api import _queries as q
from labledger.api._deps import Reader, State
from labledger.api._html import link, page, table, when
from labledger.api._svg import ci_chart, line_chart
from labledger.lab.dream import report
from labledger.projections.dream import current_baselines
from labledger.projections.runs import run_rows
from labledger.projections.toolgen import leaderboard, median_ms_by_epoch, rates

router = APIRouter(include_in_schema=False)
TIMELINE_EVENTS = 500
CHARTED = (("perf", "perf (domain unit, higher is better)"), ("p95_ms", "p95 latency (ms)"))


@router.get("/")
def home() -> RedirectResponse:
    """The dashboard starts at the runs."""
    return RedirectResponse("/ui/runs")


@router.get("/ui/runs")
def runs_page(state: State, _: Reader) -> HTMLResponse:
    """Runs: status, subsystem, heartbeats, event counts."""
    with state.read("runs") as tx:
        rows = run_rows(tx)
    body = table(
        [
            "run",
            "subsystem",
            "status",
            "outcome",
            "attempt",
            "started",
            "last heartbeat",
            "heartbeat seq",
            "events",
            "last position",
        ],
        [
            [
                link(f"/ui/runs/{r['run_id']}", r["run_id"]),
                r["subsystem"],
                r["status"],
                r["outcome"],
                r["attempt"],
                when(r["started_at_us"]),
                when(r["last_heartbeat_at_us"]),
                r["last_heartbeat_seq"],
                r["events"],
                r["last_position"],
            ]
            for r in reversed(rows)
        ],
        "runs",
    )
    return page("runs", f"Runs ({len(rows)})", body)


@router.get("/ui/runs/{run_id}")
def run_page(state: State, _: Reader, run_id: Annotated[str, Path(max_length=256)]) -> HTMLResponse:
    """One run's timeline: events per stream over time, and its first events."""
    with state.read("runs") as tx:
        run = q.run_row(tx, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    events, more = q.run_events(state.store, run, 1, TIMELINE_EVENTS)
    t0 = events[0].recorded_at_us if events else 0
    per_stream: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        pts = per_stream[e.stream]
        pts.append(((e.recorded_at_us - t0) / 1e6, float(len(pts) + 1)))
    chart = line_chart(
        f"Timeline of run {run_id}",
        sorted(per_stream.items()),
        "seconds since the run's first event (s)",
        "events appended (count)",
        css_class="timeline",
    )
    rows = [[e.position, when(e.recorded_at_us), e.stream, e.type, e.actor] for e in events]
    note = f"<p>first {len(events)} events shown</p>" if more else ""
    body = (
        table(
            ["status", "subsystem", "attempt", "events", "outcome"],
            [[run["status"], run["subsystem"], run["attempt"], run["events"], run["outcome"]]],
        )
        + chart
        + note
        + table(["position", "recorded", "stream", "type", "actor"], rows)
    )
    return page("runs", f"Run {run_id}", body)


def _pack_series(packs: list[Any], regimes: list[str], metric: str) -> list[Any]:
    series = []
    for pack in packs:
        by_regime = {r["regime"]: r for r in pack["regimes"]}
        means = pack["aggregate"]["means"].get(metric, {})
        vals: list[tuple[float, float, float] | None] = []
        for regime in regimes:
            ci = by_regime.get(regime, {}).get("ci95", {}).get(metric)
            mean = means.get(regime)
            vals.append(None if mean is None or not ci else (mean, ci[0], ci[1]))
        series.append((pack["cand_id"].rsplit(".", 1)[-1], vals))
    return series


def _domain_section(domain: str, packs: list[Any], baselines: dict[Any, Any]) -> str:
    regimes = list(dict.fromkeys(r["regime"] for p in packs for r in p["regimes"]))
    charts = []
    for metric, label in CHARTED:
        base = [baselines.get((domain, r), {}).get("kpis", {}).get(metric) for r in regimes]
        charts.append(
            ci_chart(
                f"{domain}: {metric} of the best candidates vs baseline",
                regimes,
                _pack_series(packs, regimes, metric),
                label,
                base,
                css_class="baselines-chart",
            )
        )
    rows = [
        [
            p["cand_id"],
            p["generation"],
            p["aggregate"]["score_v2"],
            p["aggregate"].get("baseline_score_v2"),
            p["aggregate"].get("improves_over_baseline"),
            p["safe"],
            len(p["caps_exceeded"]),
        ]
        for p in packs
    ]
    return f"<h2>Domain {domain}</h2><div class=charts>{''.join(charts)}</div>" + table(
        [
            "candidate",
            "generation",
            "score_v2",
            "baseline score_v2",
            "improves",
            "safe",
            "caps exceeded",
        ],
        rows,
        f"candidates-{domain}",
    )


@router.get("/ui/dream")
def dream_page(state: State, _: Reader) -> HTMLResponse:
    """D-REAM: baselines per (domain, regime); best candidates with ci95 against them."""
    with state.read("dream_baselines") as tx:
        lines = current_baselines(tx)
    with state.read("dream_candidates") as tx:
        best = report.best_candidates(tx, None, 4)
    baselines = {(b["domain"], b["regime"]): b for b in lines if b["baseline_id"]}
    base_rows = [
        [
            b["domain"],
            b["regime"],
            b["baseline_id"],
            b.get("cand_id"),
            b.get("kpis", {}).get("perf"),
            b.get("kpis", {}).get("p95_ms"),
            b.get("trials"),
            b["refreshes"],
            b["refresh_pending"],
        ]
        for b in lines
    ]
    body = "<h2>Baselines</h2>" + table(
        [
            "domain",
            "regime",
            "baseline",
            "candidate",
            "perf",
            "p95_ms (ms)",
            "trials",
            "refreshes",
            "refresh pending at",
        ],
        base_rows,
        "baselines",
    )
    body += "".join(_domain_section(d, packs, baselines) for d, packs in best.items())
    return page("dream", "D-REAM", body)


@router.get("/ui/toolgen")
def toolgen_page(state: State, _: Reader) -> HTMLResponse:
    """ToolGen: leaderboard per spec with lineage, median_ms per epoch, handoff/repair rates."""
    with state.read("toolgen") as tx:
        standings, epochs, rate_rows = leaderboard(tx), median_ms_by_epoch(tx), rates(tx)
    by_spec: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for m in epochs:
        by_spec[m.spec_id].append((float(m.epoch), m.median_ms))
    chart = line_chart(
        "median_ms per epoch (median over the spec's tools)",
        sorted(by_spec.items()),
        "epoch",
        "median run time (ms)",
        css_class="epochs-chart",
    )
    rows = [
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
    board = table(
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
        rows,
        "leaderboard",
    )
    rate_table = table(
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
        [
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
        ],
        "rates",
    )
    body = f"<h2>Leaderboard</h2>{board}<h2>Performance per epoch</h2>{chart}"
    return page("toolgen", "ToolGen", body + f"<h2>Handoff and repair rates</h2>{rate_table}")
