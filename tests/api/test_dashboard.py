"""The dashboard's pages over HTTP on both backends (issue #17), without a browser:
escaping (#18), no inline scripts, run selection, the event browser, static files,
health words, metrics, and the OpenAPI response schemas."""

from __future__ import annotations

import json
import math
import random
import re
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from labledger.api import _routes_schemas as m
from labledger.api._dashboard_dream import candidates, history, importance
from labledger.api._metrics import health
from labledger.events import Event
from labledger.events.dream import (
    GenerationCompleted,
    Provenance,
    Regime,
    SensorProvenance,
    TrialKpis,
    TrialRecorded,
)
from labledger.events.runs import RunStarted, Subsystem
from labledger.events.toolgen import (
    GenerationPlanned,
    Genome,
    Member,
    RepairAttempted,
    RepairFailed,
    RepairFailure,
    RepairSucceeded,
    ToolEvaluated,
)
from labledger.lab.dream.promote import promote
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.dream import candidate_pack
from labledger.projections.status import ProjectionStatus
from labledger.store import EventStore
from tests.api._lab import KEY_ID, fill_esper, ring
from tests.api._served import XSS, XSS_RUN, xss_run
from tests.projections import test_toolgen as tg

PAGES = ("runs", "dream", "toolgen", "esper", "audit", "events", "ops")


@pytest.fixture
def filled(store: EventStore) -> EventStore:
    fill_esper(store, ring())
    store.append(f"dream-{XSS_RUN}", xss_run())
    return store


def _scripts(html: str) -> list[str]:
    return re.findall(r"<script[^>]*>", html)


def test_pages_render_with_no_inline_script(client: TestClient, filled: EventStore) -> None:
    for page in (*PAGES, f"runs/{XSS_RUN}", "events/1", f"events?stream=dream-{XSS_RUN}"):
        response = client.get(f"/ui/{page}")
        assert response.status_code == 200, page
        for tag in _scripts(response.text):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (page, tag)


def test_plotly_is_loaded_only_by_pages_with_charts(client: TestClient, filled: EventStore) -> None:
    assert "/static/plotly.min.js" in client.get("/ui/esper").text
    assert "/static/plotly.min.js" not in client.get("/ui/runs").text
    assert "/static/dashboard.js" in client.get("/ui/runs").text


def test_markup_in_stored_data_is_escaped_issue_18(client: TestClient, filled: EventStore) -> None:
    html = client.get(f"/ui/dream?run={XSS_RUN}").text
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(document.domain)&gt;" in html
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        assert "<" not in block  # no string can close the data block early
    event_page = client.get("/ui/events/3").text
    assert XSS not in event_page


def test_a_page_shows_the_latest_run_unless_asked(client: TestClient, filled: EventStore) -> None:
    started = RunStarted(subsystem=Subsystem.ESPER, config={}, code_version="t", host="h")
    filled.append("run-esper-2", [started.to_new_event(run_id="esper-2")])
    latest = client.get("/ui/esper").text
    assert "Run esper-2" in latest and "Run esper-1" not in latest
    assert "Run esper-1" in client.get("/ui/esper?run=esper-1").text
    both = client.get("/ui/esper?run=esper-1&run=esper-2").text
    assert "Run esper-1" in both and "Run esper-2" in both
    assert "Run esper-1" in client.get("/ui/esper?run=all").text
    missing = client.get("/ui/esper?run=nope")
    assert missing.status_code == 404 and "nope" in missing.text
    assert '<option value="esper-2" selected>' in latest


def test_the_event_browser_shows_json_and_neighbours(
    client: TestClient, filled: EventStore
) -> None:
    streams = client.get("/ui/events").text
    assert "esper-esper-1" in streams and f"dream-{XSS_RUN}" in streams
    page = client.get("/ui/events/2").text
    assert "esper.SystemStateReported" in page and "&#34;epoch&#34;: 0" in page
    assert 'href="/ui/events/1"' in page and 'href="/ui/events/3"' in page
    assert 'href="/ui/runs/esper-1"' in page
    assert client.get(f"/ui/events/{filled.head() + 1}").status_code == 404
    assert client.get("/ui/events/0").status_code == 422
    assert client.get("/ui/events?stream=nope").status_code == 404


def test_static_files_are_local_and_bounded(client: TestClient) -> None:
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "plotly.js" in plotly.text[:500]
    assert client.get("/static/dashboard.js").status_code == 200
    for bad in ("nope.js", "..%2F_app.py", "%2e%2e%2f_html.py"):
        assert client.get(f"/static/{bad}").status_code == 404, bad


def _status(state: str, followed: bool = False) -> ProjectionStatus:
    fields: dict[str, Any] = dict(code_version=1, built_version=1, checkpoint=1, head=5)
    if "followed" in ProjectionStatus.__struct_fields__:  # projections/status.py (h-user, #17)
        fields["followed"] = followed
    return ProjectionStatus(
        name="p", lag_events=4, lag_seconds=1.0, stalled=state == "stalled", state=state, **fields
    )


def test_nobody_following_is_idle_not_stalled() -> None:
    assert health(_status("stalled")) == "idle"
    assert health(_status("idle")) == "idle"
    assert health(_status("behind")) == "behind" and health(_status("current")) == "current"
    if "followed" in ProjectionStatus.__struct_fields__:
        assert health(_status("stalled", followed=True)) == "stalled"


def test_ops_page_never_shows_a_healthy_word_as_bad(client: TestClient, filled: EventStore) -> None:
    html = client.get("/ui/ops").text
    assert 'class="badge bad"' not in html
    assert re.search(r'<span class="badge (good|warn|idle)">(current|behind|not built|idle)', html)


def test_metrics_bound_the_type_label_and_count_http(
    client: TestClient, auth: dict[str, str], filled: EventStore
) -> None:
    note = {"type": "lab.Uncatalogued", "data": {}}
    state = {
        "type": "run.RunStarted",
        "data": {"subsystem": "esper", "config": {}, "code_version": "t", "host": "h"},
    }
    assert client.post("/api/streams/n/events", json=[note], headers=auth).status_code in (200, 201)
    client.post("/api/streams/r/events", json=[state], headers=auth)
    client.get("/ui/events/1")
    client.get("/ui/events/2")
    text = client.get("/metrics").text
    assert 'labledger_api_events_appended_total{type="other"} 1.0' in text
    assert "lab.Uncatalogued" not in text
    assert (
        'labledger_http_requests_total{method="GET",route="/ui/events/{position}",status="200"} 2.0'
        in text
    )
    assert 'labledger_build_info{python="' in text and 'version="' in text
    assert "process_cpu_seconds_total" in text or "python_gc_objects_collected_total" in text
    assert 'labledger_projection_stalled{projection="runs"} 0.0' in text


def test_openapi_success_responses_have_real_schemas(
    client: TestClient, filled: EventStore
) -> None:
    doc = client.get("/openapi.json").json()
    for path in (
        "/api/dream/baselines",
        "/api/toolgen/leaderboard",
        "/api/esper/seeds",
        "/api/projections",
        "/healthz",
    ):
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]
        assert "$ref" in str(schema), path
    checks: list[tuple[str, Any]] = [
        ("/api/dream/baselines", list[m.BaselineLine]),
        ("/api/dream/candidates", dict[str, list[m.CandidatePack]]),
        ("/api/toolgen/leaderboard", list[m.Standing]),
        ("/api/toolgen/rates", list[m.Rates]),
        ("/api/esper/seeds", list[m.SeedSlot]),
        ("/api/esper/training-set", m.TrainingSetSummary),
        ("/api/audit/commands/esper-1-cmd-1", list[m.AuditLink]),
        ("/api/audit/rejected", list[m.Rejection]),
        ("/api/projections", list[m.ProjectionState]),
        ("/api/nonces", m.NonceReport),
        ("/healthz", m.Health),
    ]
    for path, model in checks:
        body = client.get(path).json()
        TypeAdapter(model).validate_python(body)


def _trial(cand: str, gen: int, perf: float, genome: dict[str, Any]) -> dict[str, Any]:
    kpis = {"perf": perf, "p95_ms": 1.0, "watts": None, "temp_peak_c": None, "errors": 0, "oom": 0}
    return {
        "run_id": "r",
        "domain": "d",
        "regime": "idle",
        "cand_id": cand,
        "generation": gen,
        "genome": genome,
        "kpis": kpis,
        "position": 10 * gen + int(perf),
    }


def test_history_is_best_so_far_and_importance_finds_the_gene_that_matters() -> None:
    trials = [
        _trial("a", 0, 3.0, {"x": 3, "noise": 1, "mode": "p"}),
        _trial("b", 0, 1.0, {"x": 1, "noise": 2, "mode": "q"}),
        _trial("c", 1, 2.0, {"x": 2, "noise": 1, "mode": "p"}),
        _trial("d", 1, 4.0, {"x": 4, "noise": 2, "mode": "q"}),
        _trial("e", 2, 0.5, {"x": 0.5, "noise": 1, "mode": "q"}),
    ]
    cands = candidates(trials, capped={("d", "d")})
    rows = history(cands)
    assert [r[0] for r in rows] == [0, 1, 2]
    best = [r[2] for r in rows]
    assert best == sorted(best) and best[1] == best[2]  # never falls, and capped d is −inf
    assert math.isinf(next(c["score"] for c in cands if c["cand_id"] == "d"))
    weights = {g["gene"]: g for g in importance(cands)}
    assert weights["x"]["explained"] == pytest.approx(1.0, abs=0.02)
    assert weights["x"]["n"] == 4  # the unsafe candidate has no score to explain
    assert weights["noise"]["explained"] < 0.5
    assert 0.0 <= weights["mode"]["explained"] <= 1.0 and weights["mode"]["method"].startswith("η²")


def test_runs_open_one_or_compare_several(client: TestClient, filled: EventStore) -> None:
    one = client.get("/ui/runs?run=esper-1", follow_redirects=False)
    assert one.status_code == 303 and one.headers["location"] == "/ui/runs/esper-1"
    page = client.get(f"/ui/runs?run=esper-1&run={XSS_RUN}").text
    assert '<table id="comparison"' in page
    row = re.search(r"<tr><td>subsystem</td>(.*?)</tr>", page, re.S)
    assert row is not None and "differs" in row.group(1) and "esper" in row.group(1)
    assert re.search(r"<tr><td>code_version</td><td><span class=\"badge idle\">same", page)
    assert client.get("/ui/runs?run=nope").status_code == 404


def test_run_metrics_columns_are_read_leniently() -> None:
    """The runs read model's JSON columns (#17 part 2) may be absent, null or not objects."""
    from labledger.api._dashboard_runs import _duration_s, _json_column

    assert _json_column({"metrics": '{"loss": 0.25}'}, "metrics") == {"loss": 0.25}
    for bad in ({}, {"metrics": None}, {"metrics": "[1]"}, {"metrics": "{not json"}):
        assert _json_column(bad, "metrics") == {}
    assert _duration_s({"started_at_us": 1_000_000, "ended_at_us": 3_500_000}) == 2.5
    assert _duration_s({"started_at_us": 1_000_000}) is None


def test_the_audit_page_lists_the_latest_esper_runs_decisions(
    client: TestClient, filled: EventStore
) -> None:
    page = client.get("/ui/audit").text  # the XSS D-REAM run is newer, but has no decisions
    assert "Recent decisions of esper-1" in page
    assert 'href="/ui/audit?command_id=esper-1-cmd-1&amp;run=esper-1"' in page
    chain = client.get("/ui/audit?command_id=esper-1-cmd-1").text
    assert '<table id="trail"' in chain and "field_report" in chain


# -- the ToolGen page (issue #15's read models) -----------------------------------------


def _tg_evaluated(tool: str, fitness: float, median_ms: float, peak_kib: float) -> ToolEvaluated:
    return msgspec.structs.replace(
        tg.evaluated(tool, tg.TD, tg.SET, 0, fitness=fitness, median_ms=median_ms),
        peak_kib=peak_kib,
    )


def _repair(attempt: int, ok: bool, duration_s: float) -> list[Event]:
    edit = f"restore_last@{attempt - 1}"  # the edit tried: a challenger's genome appends it
    tried = RepairAttempted(handoff_id="h1", attempt=attempt, agent=edit, timeout_s=60.0)
    done: Event = (
        RepairSucceeded(
            handoff_id="h1",
            attempt=attempt,
            repaired_code_sha256=tg.sha("A-fixed"),
            duration_s=duration_s,
        )
        if ok
        else RepairFailed(
            handoff_id="h1",
            attempt=attempt,
            failure=RepairFailure.TIMEOUT,
            exit_code=None,
            duration_s=duration_s,
        )
    )
    return [tried, done]


def _fill_toolgen(store: EventStore) -> dict[str, int]:
    """Run tg-1 (with run.RunStarted): B ties A on fitness and is faster at the same peak,
    so B dominates A and ranks above it; C is slower-fitness but the fastest (Pareto);
    A is handed off, repaired on the second attempt, and A-r1 re-enters and leads.
    C is bred from B. Run tg-2 (no run.RunStarted, the latest): Z alone.
    Returns each tool's evaluation position."""
    started = RunStarted(subsystem=Subsystem.TOOLGEN, config={}, code_version="t", host="h")
    bred = GenerationPlanned(
        epoch=0,
        spec_id=tg.TD,
        members=[
            Member(
                tool_id="A",
                genome=Genome(impl_style=tg.SET, anneal_gene=1.0, mutations=["drop_last@0"]),
            ),
            Member(tool_id="B", genome=Genome(impl_style=tg.SET, anneal_gene=0.8, mutations=[])),
            Member(
                tool_id="C",
                genome=Genome(impl_style=tg.SET, anneal_gene=1.2, mutations=[]),
                parent_tool_id="B",
            ),
        ],
        parents=["B"],
    )
    tg1: list[tuple[str, Event]] = [
        ("run-tg-1", started),
        ("toolgen", bred),
        ("toolgen", _tg_evaluated("A", 0.9, 0.5, 100.0)),
        ("toolgen", _tg_evaluated("B", 0.9, 0.3, 100.0)),
        ("toolgen", _tg_evaluated("C", 0.5, 0.1, 200.0)),
        ("toolgen", tg.handoff("h1", "A", tg.SET, 0)),
        *(("repairlab", e) for e in _repair(1, False, 10.0) + _repair(2, True, 5.0)),
        ("toolgen", tg.challenger("A-r1", "A", "h1", 1, tg.sha("A-fixed"))),
        ("toolgen", _tg_evaluated("A-r1", 0.95, 0.4, 90.0)),
    ]
    positions = {}
    for stream, event in tg1:
        position = store.append(stream, [event.to_new_event(run_id="tg-1")]).last_position
        if isinstance(event, ToolEvaluated):
            positions[event.tool_id] = position
    z = _tg_evaluated("Z", 0.4, 2.0, 50.0).to_new_event(run_id="tg-2")
    positions["Z"] = store.append("toolgen", [z]).last_position
    return positions


def _rows(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert body is not None, table_id
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    ]


def _figure(html: str, figure_id: str) -> dict[str, Any]:
    block = re.search(
        rf'<script type="application/json" id="{figure_id}-data">(.*?)</script>', html
    )
    assert block is not None, figure_id
    found: dict[str, Any] = json.loads(block.group(1))
    return found


def test_the_toolgen_page_is_scoped_to_a_run_issue_15(
    client: TestClient, store: EventStore
) -> None:
    positions = _fill_toolgen(store)
    latest = client.get("/ui/toolgen").text
    assert "Run tg-2" in latest and "Run tg-1" not in latest
    assert [r[2] for r in _rows(latest, "leaderboard")] == ["Z"]
    assert '<option value="tg-2" selected>' in latest  # listed though it has no run.RunStarted
    assert "cannot be scoped" not in latest and "every ToolGen run" not in latest
    first = client.get("/ui/toolgen?run=tg-1").text
    assert [r[2] for r in _rows(first, "leaderboard")] == ["A-r1", "B", "A", "C"]
    assert '<option value="tg-1" selected>' in first
    everything = client.get("/ui/toolgen?run=all").text
    assert "Run (all runs)" in everything
    assert {r[2] for r in _rows(everything, "leaderboard")} == {"A-r1", "A", "B", "C", "Z"}
    both = client.get("/ui/toolgen?run=tg-1&run=tg-2").text
    assert [r[2] for r in _rows(both, "leaderboard-1")] == ["Z"]
    missing = client.get("/ui/toolgen?run=nope")
    assert missing.status_code == 404 and "nope" in missing.text
    assert positions["Z"] > positions["A-r1"]


def test_the_toolgen_leaderboard_prints_its_keys_pareto_and_lineage_issue_15(
    client: TestClient, store: EventStore
) -> None:
    positions = _fill_toolgen(store)
    page = client.get("/ui/toolgen?run=tg-1").text
    keys = re.search(r'<p id="tie-break">(.*?)</p>', page)
    assert keys is not None and keys.group(1).startswith(
        "ranked by fitness desc, then median_ms asc (not measured last), then log position asc"
    )
    headers = re.findall(r"<th>(.*?)</th>", page.split('<table id="leaderboard"')[1])
    board = {r[2]: dict(zip(headers, r, strict=False)) for r in _rows(page, "leaderboard")}
    assert {t: board[t]["pareto"] for t in board} == {
        "A-r1": "true",
        "B": "true",
        "A": "false",  # B is as fit, faster, no larger
        "C": "true",
    }
    winner = board["A-r1"]
    assert (winner["lineage"], winner["parent"], winner["generation"]) == (
        "repairlab_fixed",
        "A",
        "1",
    )
    assert (winner["chain (root → tool)"], winner["repair attempt"]) == ("A → A-r1", "2")
    assert winner["position (evaluation)"] == str(positions["A-r1"])
    assert (board["A"]["genome"], board["A"]["lineage"]) == ("set x1 +drop_last@0", "original")
    assert winner["genome"] == "set x1 +drop_last@0 +restore_last@1"  # the second attempt's edit
    assert (board["C"]["lineage"], board["C"]["chain (root → tool)"]) == ("offspring", "B → C")
    rates = {r[0]: r for r in _rows(page, "rates")}
    rate_headers = re.findall(r"<th>(.*?)</th>", page.split('<table id="rates"')[1])
    overall = dict(zip(rate_headers, rates["(all)"], strict=False))
    assert (overall["attempts per repair"], overall["time to repair (s)"]) == ("2", "15")
    assert (overall["repair attempts"], overall["repairs ok"], overall["repairs failed"]) == (
        "2",
        "1",
        "1",
    )


def test_the_toolgen_pareto_chart_marks_the_front_and_links_events_issue_15(
    client: TestClient, store: EventStore
) -> None:
    positions = _fill_toolgen(store)
    page = client.get("/ui/toolgen?run=tg-1").text
    fig = _figure(page, "pareto-chart")
    assert fig["layout"]["xaxis"]["type"] == "log"
    traces = {t["name"]: t for t in fig["data"]}
    front, rest = traces[f"{tg.TD}: Pareto set"], traces[f"{tg.TD}: dominated"]
    assert front["x"] == [0.1, 0.3, 0.4] and front["y"] == [0.5, 0.9, 0.95]  # C, B, A-r1
    assert front["customdata"] == [f"/ui/events/{positions[t]}" for t in ("C", "B", "A-r1")]
    assert front["marker"]["symbol"] != rest["marker"]["symbol"]
    assert (rest["x"], rest["customdata"]) == ([0.5], [f"/ui/events/{positions['A']}"])
    memory = {t["name"]: t for t in _figure(page, "pareto-memory-chart")["data"]}
    assert memory[f"{tg.TD}: Pareto set"]["x"] == [90.0, 100.0, 200.0]  # A-r1, B, C


def _dream_trials(cand: str, gen: int, perf: float, n: int, seed: int) -> list[TrialRecorded]:
    rng = random.Random(seed)
    return [
        TrialRecorded(
            domain="cpu",
            regime=regime,
            cand_id=cand,
            generation=gen,
            trial=t,
            genome={"threads": 2, "who": cand},
            kpis=TrialKpis(
                perf=rng.gauss(perf, perf * 0.03),
                p95_ms=rng.gauss(1.0, 0.03),
                watts=None,
                temp_peak_c=None,
                errors=0,
                oom=0,
                requests=100,
            ),
            sensors=SensorProvenance(watts=Provenance.ABSENT, temp_peak_c=Provenance.ABSENT),
            units={"perf": "MiB/s hashed", "p95_ms": "ms"},
        )
        for regime in (Regime.IDLE, Regime.NORMAL)
        for t in range(n)
    ]


def _decided_run(store: EventStore) -> None:
    """Run dr1: baseline B, G (+20 % perf, 10 trials: improves), T (+20 %, 3 trials), L (-20 %)."""
    started = RunStarted(subsystem=Subsystem.DREAM, config={}, code_version="t", host="h")
    events = [started, *_dream_trials("B", 0, 100.0, 10, 1)]
    events.append(
        GenerationCompleted(
            domain="cpu",
            generation=0,
            candidates=1,
            regimes=[Regime.IDLE, Regime.NORMAL],
            trials_per_regime=10,
            best_cand_id=None,
            packs=[],
            best_fitness=None,
        )
    )
    events += _dream_trials("G", 1, 120.0, 10, 2) + _dream_trials("T", 1, 120.0, 3, 4)
    events += _dream_trials("L", 1, 80.0, 10, 5)
    store.append("dream-dr1", [e.to_new_event(run_id="dr1", actor="dream") for e in events])


def _cells(html: str, table_id: str) -> list[list[str]]:
    if f'id="{table_id}-empty"' in html:
        return []
    body = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', html, re.S)
    assert body is not None, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in row] for row in cells if row]


def test_the_dream_page_shows_each_decision_and_the_promoted_configuration(
    client: TestClient, store: EventStore
) -> None:
    _decided_run(store)
    html = client.get("/ui/dream?run=dr1").text
    assert "Ranked by score_v2_raw" in html  # the page says which score ranks which table
    rows = {r[3]: r for r in _cells(html, "decisions")}
    assert set(rows) == {"B", "G", "T", "L"}
    ranked = sorted(rows.values(), key=lambda r: int(r[2]))
    assert [r[3] for r in ranked][2:] == ["B", "L"]  # +20 % (G, T), baseline, -20 %
    scores = [float(r[5]) for r in ranked]
    assert scores == sorted(scores, reverse=True)  # ranked by score_v2, best first
    g_diff, g_ci = float(rows["G"][6]), rows["G"][7]
    lo, hi = (float(v) for v in g_ci.strip("[]").split(","))
    assert lo <= g_diff <= hi and lo > 0.01
    assert (rows["G"][8], rows["G"][9]) == ("10", "true")
    assert (rows["T"][8], rows["T"][9]) == ("3", "inconclusive") and "needs 5" in rows["T"][10]
    assert rows["L"][9] == "false" and float(rows["L"][7].strip("[]").split(",")[1]) < 0
    assert _cells(html, "promoted") == [] and "No configuration has been promoted" in html

    engine = ProjectionEngine(store, all_projections())
    engine.catch_up("dream_candidates")
    with engine.read("dream_candidates") as tx:
        pack = candidate_pack(tx, "cpu", "G")
    assert pack is not None
    promote(store, pack, promoted_by="alice", reason="faster <b>")
    html = client.get("/ui/dream?run=dr1").text
    (line,) = _cells(html, "promoted")
    genome = "{&#34;threads&#34;: 2, &#34;who&#34;: &#34;G&#34;}"
    assert line[:5] == ["cpu", "G", genome, "alice", KEY_ID]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[5])
    assert line[7] == pack["aggregate"]["improvement"]["score_formula"]
    assert (line[8], line[9], line[10]) == (rows["G"][6], g_ci, "10") and line[11]
    assert line[12] == "faster &lt;b&gt;"
