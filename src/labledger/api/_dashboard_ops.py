"""Dashboard pages for Esper, the audit trail and operations."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from labledger.api import _dashboard_charts as charts
from labledger.api import _queries as q
from labledger.api._dashboard_runs import RunParam, choose
from labledger.api._deps import Reader, State
from labledger.api._html import (
    Badge,
    event_link,
    figures,
    form,
    heading,
    link,
    render,
    table,
    text,
    when,
)
from labledger.api._metrics import health
from labledger.api._state import ApiState
from labledger.projections import audit as audit_model
from labledger.projections.esper_training import completed, pending_count
from labledger.projections.seeds import slot_rows
from labledger.projections.status import status

router = APIRouter(include_in_schema=False)
RECENT_DECISIONS = 100
TONES = {
    "current": "good",
    "idle": "idle",
    "not built": "idle",  # built on its first read
    "behind": "warn",
    "needs rebuild": "warn",
    "stalled": "bad",
}


@router.get("/ui/esper")
def esper_page(state: State, _: Reader, run: RunParam = None) -> HTMLResponse:
    """Esper: accuracy and loss per epoch with lifecycle events and commands marked,
    field reports, seed slots, and the training-set summary."""
    chosen = choose(state, run, "/ui/esper", "esper")
    sections: list[dict[str, Any]] = []
    for r in chosen.runs:
        sections += _run_sections(state, r)
    with state.read("esper_training") as tx:
        rows, pending = completed(tx), pending_count(tx)
    rewards = [r.reward for r in rows]
    summary = [
        len(rows),
        pending,
        sum(rewards) / len(rewards) if rewards else None,
        len({r.run_id for r in rows}),
    ]
    sections += [
        heading("Training set (Simic, every run)"),
        table(
            "training-set", ["transitions", "pending commands", "mean reward", "runs"], [summary]
        ),
        text(
            link("/api/esper/training-set/manifest", "manifest"),
            " · ",
            link("/api/esper/training-set/download", "download tensors"),
        ),
    ]
    return render("esper", "Esper", sections, head=state.store.head(), selector=chosen.selector)


def _run_sections(state: ApiState, run: dict[str, Any]) -> list[dict[str, Any]]:
    series = q.esper_series(state.store, run)
    metrics, markers = series["metrics"], series["markers"]
    marks = [(float(m["epoch"]), m["label"], m["position"]) for m in markers]
    rid = run["run_id"]
    accuracy = [(m["epoch"], m["accuracy"] * 100, m["position"]) for m in metrics]
    loss = [(m["epoch"], m["loss"], m["position"]) for m in metrics]
    figs = figures(
        (
            f"accuracy-{rid}",
            charts.line_figure(
                "accuracy per epoch", [("accuracy", accuracy)], "epoch", "accuracy (%)", marks
            ),
        ),
        (
            f"loss-{rid}",
            charts.line_figure("loss per epoch", [("loss", loss)], "epoch", "training loss", marks),
        ),
    )
    reports = [
        [
            link(f"/ui/audit?command_id={r['command_id']}", r["command_id"]),
            r["outcome"],
            r["loss_delta"],
            r["accuracy_delta"],
            r["observation_window_epochs"],
            event_link(r["position"]),
        ]
        for r in series["field_reports"]
    ]
    with state.read("seeds") as tx:
        slots = slot_rows(tx, str(rid))
    keys = list(slots[0]) if slots else []
    return [
        heading(f"Run {rid}"),
        figs,
        heading("Markers", 3),
        table(
            f"markers-{rid}",
            ["epoch", "event", "command", "event"],
            [[m["epoch"], m["label"], m["command_id"], event_link(m["position"])] for m in markers],
        ),
        heading("Field reports", 3),
        table(
            f"field-reports-{rid}",
            ["command", "outcome", "loss delta", "accuracy delta", "window (epochs)", "event"],
            reports,
        ),
        heading("Seed slots", 3),
        table(f"seeds-{rid}", keys, [[s[k] for k in keys] for s in slots]),
    ]


@router.get("/ui/audit")
def audit_page(
    state: State,
    _: Reader,
    run: RunParam = None,
    command_id: Annotated[str | None, Query(max_length=256)] = None,
) -> HTMLResponse:
    """Audit: the recent decisions (commands) with links to their chains, one chain, refusals."""
    keep = [("command_id", command_id)] if command_id else []
    chosen = choose(state, run, "/ui/audit", "esper", keep)  # decisions are Esper's commands
    sections = [
        form(
            "/ui/audit",
            "command id",
            "command_id",
            command_id or "",
            "show chain",
            [("run", i) for i in chosen.ids],
        ),
    ]
    with state.read("audit") as tx:
        links = audit_model.trail(tx, command_id) if command_id else []
        decisions = q.recent_commands(tx, chosen.ids, RECENT_DECISIONS)
        refused = audit_model.rejected(tx)
    if command_id:
        sections.append(heading(f"Chain of {command_id}"))
        rows = [
            [event_link(lk["position"]), lk["step"], lk.get("actor"), _summary(lk)] for lk in links
        ]
        sections.append(
            table("trail", ["event", "step", "actor", "what"], rows)
            if rows
            else text("no such command in the log")
        )
    sections += [
        heading(f"Recent decisions of {', '.join(chosen.ids) or 'no run'}"),
        table(
            "decisions",
            [
                "event",
                "command",
                "run",
                "operation",
                "slot",
                "policy",
                "risk",
                "coverage",
                "reason",
                "key",
            ],
            [
                [
                    event_link(d["position"]),
                    link(
                        f"/ui/audit?command_id={d['command_id']}&run={d['run_id']}", d["command_id"]
                    ),
                    d["run_id"],
                    d.get("operation"),
                    d.get("slot"),
                    d.get("policy_version"),
                    d.get("risk"),
                    d.get("coverage"),
                    d.get("reason"),
                    d.get("key_id"),
                ]
                for d in decisions
            ],
        ),
        heading("Rejected commands (every run)"),
        table(
            "rejected",
            ["event", "command", "reason", "detail", "key", "nonce"],
            [
                [
                    event_link(r["position"]),
                    r.get("command_id"),
                    r.get("reason"),
                    r.get("detail"),
                    r.get("key_id"),
                    r.get("nonce"),
                ]
                for r in refused
            ],
        ),
    ]
    return render("audit", "Audit", sections, head=state.store.head(), selector=chosen.selector)


def _summary(link_: dict[str, object]) -> str:
    skip = {"step", "position", "actor", "run_id", "command_id"}
    return ", ".join(f"{k}={v}" for k, v in link_.items() if k not in skip and v is not None)


@router.get("/ui/ops")
def ops_page(state: State, _: Reader, verify: Annotated[bool, Query()] = False) -> HTMLResponse:
    """Operations: projection health and lag, verify status, head, nonce ledger size."""
    if verify or state.last_verify is None:
        state.verify()
    report = state.last_verify
    assert report is not None
    rows = []
    for s in status(state.engine):
        word = health(s)
        rows.append(
            [
                s.name,
                Badge(word, TONES.get(word, "bad")),
                s.code_version,
                s.built_version,
                s.checkpoint,
                s.head,
                s.lag_events,
                s.lag_seconds,
            ]
        )
    nonces = state.store.nonce_stats()
    verdict = Badge("ok", "good") if report.ok else Badge(f"FAILED: {report.message}", "bad")
    sections = [
        text(
            f"head position {state.store.head()} · verify: ",
            verdict,
            f" ({report.events_checked} events, head hash {report.head_hash[:16]}…) · ",
            link("/ui/ops?verify=true", "verify again"),
            " · ",
            link("/metrics", "metrics"),
            text_id="verify",
        ),
        heading("Projections"),
        text(
            "idle: behind but nobody follows it (it catches up when read); stalled: "
            "behind and not moving while followed."
        ),
        table(
            "projections",
            [
                "projection",
                "health",
                "code version",
                "built version",
                "checkpoint",
                "head",
                "lag (events)",
                "lag (s)",
            ],
            rows,
        ),
        heading("Nonce ledger"),
        table(
            "nonce-ledger",
            ["live nonces", "expired", "evicted early", "horizon (UTC)"],
            [[nonces.size, nonces.expired, nonces.evicted, when(nonces.horizon_us or None)]],
        ),
        heading("Verify report", 3),
        {
            "kind": "code",
            "id": "verify-report",
            "text": msgspec.json.format(msgspec.json.encode(report)).decode(),
        },
    ]
    return render("ops", "Operations", sections, head=state.store.head())
