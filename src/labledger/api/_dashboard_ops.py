"""Dashboard pages for Esper, the audit trail and operations."""

from __future__ import annotations

from html import escape
from typing import Annotated

import msgspec
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from labledger.api import _queries as q
from labledger.api._deps import Reader, State
from labledger.api._html import link, page, table, when
from labledger.api._svg import line_chart
from labledger.projections import audit as audit_model
from labledger.projections.esper_training import completed, pending_count
from labledger.projections.runs import run_rows
from labledger.projections.seeds import slot_rows
from labledger.projections.status import status

router = APIRouter(include_in_schema=False)


@router.get("/ui/esper")
def esper_page(
    state: State, _: Reader, run: Annotated[str | None, Query(max_length=256)] = None
) -> HTMLResponse:
    """Esper: accuracy and loss per epoch with lifecycle events and commands marked,
    field reports, seed slots, and the training-set summary."""
    with state.read("runs") as tx:
        runs = run_rows(tx, subsystem="esper")
    chosen = next((r for r in runs if r["run_id"] == run), runs[-1] if runs else None)
    picker = " ".join(
        f'<a href="/ui/esper?run={escape(r["run_id"])}">{escape(r["run_id"])}</a>' for r in runs
    )
    body = f"<p>Esper runs: {picker or '<i>none yet</i>'}</p>"
    if chosen is not None:
        body += _run_section(state, chosen)
    with state.read("esper_training") as tx:
        rows, pending = completed(tx), pending_count(tx)
    rewards = [r.reward for r in rows]
    body += "<h2>Training set (Simic)</h2>" + table(
        ["transitions", "pending commands", "mean reward", "runs"],
        [
            [
                len(rows),
                pending,
                sum(rewards) / len(rewards) if rewards else None,
                len({r.run_id for r in rows}),
            ]
        ],
        "training-set",
    )
    body += '<p><a href="/api/esper/training-set/manifest">manifest</a> · '
    body += '<a href="/api/esper/training-set/download">download tensors</a></p>'
    return page("esper", "Esper", body)


def _run_section(state: State, run: dict[str, object]) -> str:
    series = q.esper_series(state.store, run)
    metrics, markers = series["metrics"], series["markers"]
    marks = [(float(m["epoch"]), m["label"]) for m in markers]
    charts = [
        line_chart(
            "accuracy per epoch",
            [("accuracy", [(m["epoch"], m["accuracy"] * 100) for m in metrics])],
            "epoch",
            "accuracy (%)",
            marks,
            css_class="accuracy-chart",
        ),
        line_chart(
            "loss per epoch",
            [("loss", [(m["epoch"], m["loss"]) for m in metrics])],
            "epoch",
            "training loss",
            marks,
            css_class="loss-chart",
        ),
    ]
    reports = table(
        ["command", "outcome", "loss delta", "accuracy delta", "window (epochs)", "position"],
        [
            [
                link(f"/ui/audit?command_id={r['command_id']}", r["command_id"]),
                r["outcome"],
                r["loss_delta"],
                r["accuracy_delta"],
                r["observation_window_epochs"],
                r["position"],
            ]
            for r in series["field_reports"]
        ],
        "field-reports",
    )
    with state.read("seeds") as tx:
        slots = slot_rows(tx, str(run["run_id"]))
    keys = list(slots[0]) if slots else []
    return (
        f"<h2>Run {escape(str(run['run_id']))}</h2><div class=charts>{''.join(charts)}</div>"
        f"<h3>Markers</h3>"
        + table(
            ["epoch", "event", "command", "position"],
            [[m["epoch"], m["label"], m["command_id"], m["position"]] for m in markers],
        )
        + f"<h3>Field reports</h3>{reports}<h3>Seed slots</h3>"
        + table(keys, [[s[k] for k in keys] for s in slots], "seeds")
    )


@router.get("/ui/audit")
def audit_page(
    state: State, _: Reader, command_id: Annotated[str | None, Query(max_length=256)] = None
) -> HTMLResponse:
    """Audit: search a command id for its whole decision chain; refused commands."""
    value = escape(command_id or "")
    body = (
        f'<form action="/ui/audit"><label>command id <input name="command_id" '
        f'value="{value}"></label> <button>show chain</button></form>'
    )
    with state.read("audit") as tx:
        links = audit_model.trail(tx, command_id) if command_id else []
        refused = audit_model.rejected(tx)
    if command_id:
        rows = [[lk["position"], lk["step"], lk.get("actor"), _summary(lk)] for lk in links]
        body += f"<h2>Chain of {value}</h2>" + (
            table(["position", "step", "actor", "what"], rows, "trail")
            if rows
            else "<p>no such command in the log</p>"
        )
    body += "<h2>Rejected commands</h2>" + table(
        ["position", "command", "reason", "detail", "key", "nonce"],
        [
            [
                r["position"],
                r.get("command_id"),
                r.get("reason"),
                r.get("detail"),
                r.get("key_id"),
                r.get("nonce"),
            ]
            for r in refused
        ],
        "rejected",
    )
    return page("audit", "Audit", body)


def _summary(link_: dict[str, object]) -> str:
    skip = {"step", "position", "actor", "run_id", "command_id"}
    return ", ".join(f"{k}={v}" for k, v in link_.items() if k not in skip and v is not None)


@router.get("/ui/ops")
def ops_page(state: State, _: Reader, verify: Annotated[bool, Query()] = False) -> HTMLResponse:
    """Operations: projection lag and stalls, verify status, head, nonce ledger size."""
    if verify or state.last_verify is None:
        state.verify()
    report = state.last_verify
    assert report is not None
    rows = [
        [
            s.name,
            s.state,
            s.code_version,
            s.built_version,
            s.checkpoint,
            s.head,
            s.lag_events,
            s.lag_seconds,
            s.stalled,
        ]
        for s in status(state.engine)
    ]
    nonces = state.store.nonce_stats()
    verdict = (
        '<span class="good">ok</span>'
        if report.ok
        else f'<span class="bad">FAILED: {escape(report.message)}</span>'
    )
    body = (
        f"<p>head position <b>{state.store.head()}</b> · verify: {verdict} "
        f"({report.events_checked} events, head hash {report.head_hash[:16]}…) · "
        f'<a href="/ui/ops?verify=true">verify again</a> · <a href="/metrics">metrics</a></p>'
        "<h2>Projections</h2>"
        + table(
            [
                "projection",
                "state",
                "code version",
                "built version",
                "checkpoint",
                "head",
                "lag (events)",
                "lag (s)",
                "stalled",
            ],
            rows,
            "projections",
        )
        + "<h2>Nonce ledger</h2>"
        + table(
            ["live nonces", "expired", "evicted early", "horizon"],
            [[nonces.size, nonces.expired, nonces.evicted, when(nonces.horizon_us or None)]],
        )
        + f"<p>verify report: <code>{escape(msgspec.json.encode(report).decode())}</code></p>"
    )
    return page("ops", "Operations", body)
