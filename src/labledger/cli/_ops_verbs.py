"""Operator verbs: `doctor` (one health report with what to do) and `anchor` (show, accept)."""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.errors import LabledgerError, UsageError
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.status import status
from labledger.store import EventStore
from labledger.store.migrations import HEAD_REVISION, current_revision
from labledger.store.sql import SqlEventStore

_encode = msgspec.json.Encoder().encode
LOW_DISK_BYTES = 1 << 30


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    check: str
    level: str  # ok | warning | error
    detail: str
    action: str = ""


def _sql(store: EventStore) -> SqlEventStore:
    if not isinstance(store, SqlEventStore):
        raise UsageError("this verb needs a SQL store")
    return store


def _schema(store: SqlEventStore) -> Finding:
    with store.engine.connect() as conn:
        found = current_revision(conn)
    if found == HEAD_REVISION:
        return Finding(check="schema", level="ok", detail=f"revision {found} (head)")
    return Finding(
        check="schema",
        level="error",
        detail=f"revision {found}, code needs {HEAD_REVISION}",
        action=f"labledger --db '{store.url}' init",
    )


def _integrity(store: SqlEventStore) -> list[Finding]:
    report = store.verify()
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
                level="ok" if store.anchor else "warning",
                detail="log matches its head anchor"
                if store.anchor
                else "no head anchor is kept for this store",
                action="" if store.anchor else "set LABLEDGER_ANCHOR=PATH to keep one",
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


def _projections(store: SqlEventStore) -> list[Finding]:
    out = []
    for row in status(ProjectionEngine(store, all_projections())):
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


def _nonces(store: SqlEventStore) -> Finding:
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


def _disk(store: SqlEventStore) -> Finding:
    path = store.dialect.anchor_path()
    if path is None:
        with store.engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
        return Finding(
            check="disk",
            level="ok",
            detail=f"database size {size:,} bytes (server-side free space is the DBA's to watch)",
        )
    usage = shutil.disk_usage(path.parent)
    level = "warning" if usage.free < LOW_DISK_BYTES else "ok"
    return Finding(
        check="disk",
        level=level,
        detail=f"{usage.free:,} bytes free on {path.parent}",
        action="free space: appends fail when the disk is full" if level != "ok" else "",
    )


def cmd_doctor(args: argparse.Namespace, store: EventStore) -> int:
    sql = _sql(store)
    findings = [_schema(sql), *_integrity(sql)]
    for probe in (_projections, _nonces, _disk):
        try:
            result: Any = probe(sql)
        except LabledgerError as exc:
            result = Finding(check=probe.__name__.strip("_"), level="error", detail=str(exc))
        findings += result if isinstance(result, list) else [result]
    for f in findings:
        if args.json:
            sys.stdout.buffer.write(_encode(f) + b"\n")
        else:
            mark = {"ok": "ok  ", "warning": "WARN", "error": "FAIL"}[f.level]
            print(f"[{mark}] {f.check}: {f.detail}")
            if f.action:
                print(f"       → {f.action}")
    return 1 if any(f.level == "error" for f in findings) else 0


def cmd_anchor(args: argparse.Namespace, store: EventStore) -> int:
    sql = _sql(store)
    if sql.anchor is None:
        raise UsageError(f"{sql.url} keeps no head anchor (set LABLEDGER_ANCHOR=PATH)")
    if args.anchor_verb == "accept":
        head = sql.accept_anchor()
        print(f"anchor moved to the current head, position {head}", file=sys.stderr)
        return 0
    state = sql.anchor.read()
    sys.stdout.buffer.write(
        _encode(
            {
                "path": str(sql.anchor.path),
                "position": state.position if state else None,
                "chain": state.chain if state else None,
                "problem": sql.anchor_problem,
            }
        )
        + b"\n"
    )
    return 1 if sql.anchor_problem else 0


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
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
