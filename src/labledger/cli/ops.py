"""Operator verbs: ``runs``, ``doctor`` (one health report with what to do) and ``anchor``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from labledger.cli import output
from labledger.cli._engine import caught_up, engine_for
from labledger.errors import LabledgerError, UsageError
from labledger.projections.runs import run_rows
from labledger.projections.status import status
from labledger.store import HEAD_REVISION, EventStore

LOW_DISK_BYTES = 1 << 30


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    check: str
    level: str  # ok | warning | error
    detail: str
    action: str = ""


def _schema(store: EventStore) -> Finding:
    found = store.schema_revision()
    if found == HEAD_REVISION:
        return Finding(check="schema", level="ok", detail=f"revision {found} (head)")
    return Finding(
        check="schema",
        level="error",
        detail=f"revision {found}, code needs {HEAD_REVISION}",
        action=f"labledger --db '{store.url}' init",
    )


def _integrity(store: EventStore) -> list[Finding]:
    report = store.verify()
    kept = store.keeps_anchor
    if report.ok:
        return [
            Finding(
                check="integrity",
                level="ok",
                detail=f"{report.events_checked} events, head {report.head}, "
                f"head hash {report.head_hash[:16]}…",
            ),
            Finding(
                check="anchor",
                level="ok" if kept else "warning",
                detail="log matches its head anchor"
                if kept
                else "no head anchor is kept for this store",
                action="" if kept else "set LABLEDGER_ANCHOR=PATH to keep one",
            ),
        ]
    if report.problem is not None and report.problem.value == "anchor":
        return [
            Finding(check="integrity", level="ok", detail="records and chain are intact"),
            Finding(
                check="anchor",
                level="error",
                detail=report.message,
                action="restore from a backup (labledger restore), or accept the log "
                "as it is: labledger anchor accept",
            ),
        ]
    return [
        Finding(
            check="integrity",
            level="error",
            detail=report.message,
            action="restore from a backup (labledger restore); `labledger verify` "
            "names the first bad position",
        )
    ]


def _projections(store: EventStore) -> list[Finding]:
    out = []
    for row in status(engine_for(store)):
        if row.state in ("current",):
            level, action = "ok", ""
        elif row.state in ("stalled", "needs rebuild"):
            level = "error" if row.state == "stalled" else "warning"
            action = (
                f"labledger project rebuild {row.name}"
                if row.state == "needs rebuild"
                else f"labledger project run {row.name} (and check its runner's log)"
            )
        else:
            level, action = "warning", f"labledger project run {row.name}"
        out.append(
            Finding(
                check=f"projection {row.name}",
                level=level,
                detail=f"{row.state}: checkpoint {row.checkpoint} of {row.head}, "
                f"lag {row.lag_events} events / {row.lag_seconds:.1f}s",
                action=action,
            )
        )
    return out


def _nonces(store: EventStore) -> Finding:
    stats = store.nonce_stats()
    level = "warning" if stats.evicted else "ok"
    return Finding(
        check="nonce ledger",
        level=level,
        detail=f"{stats.size} live nonces, {stats.expired} expired, {stats.evicted} evicted early",
        action="raise max_nonces or shorten freshness windows: evictions raise the replay horizon"
        if stats.evicted
        else "",
    )


def _disk(store: EventStore) -> Finding:
    usage = store.disk()
    if usage.free_bytes is None:
        return Finding(
            check="disk",
            level="ok",
            detail=f"database size {usage.database_bytes:,} bytes "
            "(server-side free space is the DBA's to watch)",
        )
    level = "warning" if usage.free_bytes < LOW_DISK_BYTES else "ok"
    return Finding(
        check="disk",
        level=level,
        detail=f"{usage.free_bytes:,} bytes free on {usage.where}",
        action="free space: appends fail when the disk is full" if level != "ok" else "",
    )


def cmd_doctor(args: argparse.Namespace, store: EventStore) -> int:
    findings = [_schema(store), *_integrity(store)]
    for probe in (_projections, _nonces, _disk):
        try:
            result: Any = probe(store)
        except LabledgerError as exc:
            result = Finding(check=probe.__name__.strip("_"), level="error", detail=str(exc))
        findings += result if isinstance(result, list) else [result]
    for f in findings:
        if args.json:
            output.json_line(f)
        else:
            mark = {"ok": "ok  ", "warning": "WARN", "error": "FAIL"}[f.level]
            print(f"[{mark}] {f.check}: {f.detail}")
            if f.action:
                print(f"       → {f.action}")
    return 1 if any(f.level == "error" for f in findings) else 0


def cmd_anchor(args: argparse.Namespace, store: EventStore) -> int:
    anchor = store.anchor_status()
    if anchor is None:
        raise UsageError(f"{store.url} keeps no head anchor (set LABLEDGER_ANCHOR=PATH)")
    if args.anchor_verb == "accept":
        head = store.accept_anchor()
        print(f"anchor moved to the current head, position {head}", file=sys.stderr)
        return 0
    output.json_line(anchor)
    return 1 if anchor.problem else 0


def cmd_runs(args: argparse.Namespace, store: EventStore) -> int:
    engine = caught_up(store, "runs", progress=False)
    with engine.read("runs") as tx:
        output.json_lines(run_rows(tx, status=args.status))
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``runs``, ``doctor`` and ``anchor``."""
    p = sub.add_parser("runs", help="runs with status, subsystem, heartbeats, event counts")
    p.add_argument("--status", choices=["running", "finished", "abandoned", "resumed"])
    p.set_defaults(store_handler=cmd_runs)
    p = sub.add_parser(
        "doctor",
        help="health report: schema, integrity, anchor, projections, "
        "nonces, disk — with what to do",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(store_handler=cmd_doctor)
    p = sub.add_parser("anchor", help="the head anchor: show it, or accept the log as it is")
    p.add_argument("anchor_verb", choices=["show", "accept"])
    p.set_defaults(store_handler=cmd_anchor)
