"""Operator verbs: ``doctor`` (one health report with what to do) and ``anchor``.

``doctor`` tells the truth (issue #17): exit 0 when the store is healthy —
warnings included —, 1 only for an integrity failure (the code the README
reserves for it), 5 when the store has no usable schema, which it reports as
``[FAIL] schema`` with the command that fixes it instead of aborting. A
projection nobody follows is ``idle``, not failed; only a followed projection
that stopped moving is ``stalled`` (a warning: no data is wrong, a runner is).
It also runs the reaper (``runs reap``) unless ``--no-reap`` or ``--read-only``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from labledger.cli import output
from labledger.cli._engine import engine_for
from labledger.cli.runs import parse_now
from labledger.errors import LabledgerError, SchemaNotInitialized, UsageError
from labledger.lab.reaper import reap
from labledger.ledger import open_ledger
from labledger.projections.status import status
from labledger.store import HEAD_REVISION, EventStore

LOW_DISK_BYTES = 1 << 30


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    check: str
    level: str  # ok | warning | error
    detail: str
    action: str = ""


QUIET_STATES = ("current", "behind", "idle", "not built")
"""Projection states that need nobody: they catch up on the next read or ``project run``."""


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
        level, action = "ok", ""
        if row.state == "needs rebuild":
            level, action = "warning", f"labledger project rebuild {row.name}"
        elif row.state == "stalled":
            level = "warning"
            action = (
                f"its runner stopped moving: check its log, or labledger project run {row.name}"
            )
        lag = f", lag {row.lag_events} events / {row.lag_seconds:.1f}s" if row.lag_events else ""
        out.append(
            Finding(
                check=f"projection {row.name}",
                level=level,
                detail=f"{row.state}: checkpoint {row.checkpoint} of {row.head}{lag}",
                action=action,
            )
        )
    return out


def _runs(store: EventStore, *, dry_run: bool, now_us: int | None) -> Finding:
    found = reap(store, dry_run=dry_run, now_us=now_us)
    if not found:
        return Finding(check="runs", level="ok", detail="no running run is overdue")
    names = ", ".join(o.run_id for o in found[:5]) + (" …" if len(found) > 5 else "")
    if dry_run:
        return Finding(
            check="runs",
            level="warning",
            detail=f"{len(found)} running runs have overdue heartbeats: {names}",
            action="labledger runs reap (then labledger resume RUN_ID)",
        )
    return Finding(
        check="runs",
        level="ok",
        detail=f"abandoned {sum(o.abandoned for o in found)} runs with overdue heartbeats: {names}",
        action="labledger resume RUN_ID continues one",
    )


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
            detail=f"database size {output.human_size(usage.database_bytes)} "
            "(server-side free space is the DBA's to watch)",
        )
    level = "warning" if usage.free_bytes < LOW_DISK_BYTES else "ok"
    return Finding(
        check="disk",
        level=level,
        detail=f"{output.human_size(usage.free_bytes)} free on {usage.where}",
        action="free space: appends fail when the disk is full" if level != "ok" else "",
    )


def _unusable(exc: SchemaNotInitialized, url: str) -> Finding:
    state = "no labledger schema" if exc.found is None else f"revision {exc.found}"
    return Finding(
        check="schema",
        level="error",
        detail=f"{state}; this labledger needs revision {exc.wanted}",
        action=f"labledger --db '{url}' init",
    )


def _findings(args: argparse.Namespace, store: EventStore) -> list[Finding]:
    findings = [_schema(store), *_integrity(store)]
    probes: list[Any] = [_projections, _nonces, _disk]
    dry_run = bool(args.no_reap or args.read_only)

    def _overdue_runs(s: EventStore) -> Finding:
        if args.read_only:
            return Finding(
                check="runs", level="ok", detail="not checked: --read-only cannot catch up `runs`"
            )
        return _runs(s, dry_run=dry_run, now_us=args.now)

    probes.insert(1, _overdue_runs)
    for probe in probes:
        try:
            result: Any = probe(store)
        except LabledgerError as exc:
            name = getattr(probe, "__name__", "probe").strip("_")
            result = Finding(check=name, level="error", detail=str(exc))
        findings += result if isinstance(result, list) else [result]
    return findings


def _exit_code(findings: list[Finding]) -> int:
    failed = {f.check for f in findings if f.level == "error"}
    if "schema" in failed:
        return SchemaNotInitialized.exit_code
    return 1 if failed & {"integrity", "anchor"} else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        with open_ledger(args.db, strict=False, read_only=args.read_only) as store:
            findings = _findings(args, store)
    except SchemaNotInitialized as exc:
        findings = [_unusable(exc, args.db)]
    fmt = output.chosen(args, json_flag=args.json)
    if fmt != "table":
        output.emit(
            [msgspec.to_builtins(f) for f in findings],
            fmt,
            columns=["check", "level", "detail", "action"],
        )
        return _exit_code(findings)
    for f in findings:
        mark = {"ok": "ok  ", "warning": "WARN", "error": "FAIL"}[f.level]
        print(f"[{mark}] {f.check}: {f.detail}")
        if f.action:
            print(f"       → {f.action}")
    return _exit_code(findings)


def cmd_anchor(args: argparse.Namespace, store: EventStore) -> int:
    anchor = store.anchor_status()
    if anchor is None:
        raise UsageError(f"{store.url} keeps no head anchor (set LABLEDGER_ANCHOR=PATH)")
    if args.anchor_verb == "accept":
        head = store.accept_anchor()
        print(f"anchor moved to the current head, position {head}", file=sys.stderr)
        return 0
    output.emit([msgspec.to_builtins(anchor)], output.chosen(args))
    return 1 if anchor.problem else 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``doctor`` and ``anchor``."""
    p = sub.add_parser(
        "doctor",
        help="health report: schema, integrity, anchor, projections, "
        "nonces, disk — with what to do",
    )
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument(
        "--no-reap", action="store_true", help="report overdue runs without abandoning them"
    )
    p.add_argument(
        "--now",
        type=parse_now,
        default=None,
        metavar="TIME",
        help="judge heartbeats at this time (µs or ISO 8601; default: now)",
    )
    output.add_format(p)
    p.set_defaults(plain_handler=cmd_doctor)
    p = sub.add_parser("anchor", help="the head anchor: show it, or accept the log as it is")
    p.add_argument(
        "anchor_verb",
        choices=["show", "accept"],
        help="show the anchor, or accept the current head as the anchor",
    )
    output.add_format(p)
    p.set_defaults(store_handler=cmd_anchor)
