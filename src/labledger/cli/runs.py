"""Runs first: ``runs``, ``runs show RUN``, ``runs compare A B …``, ``runs reap``, ``resume RUN``.

Every run of every subsystem — D-REAM, ToolGen, Esper and your own scripts
(``labledger.track``) — is a row of the ``runs`` read model; these verbs read
it (caught up first) and print in the output convention (``cli/output.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import Counter
from typing import Any

import msgspec

from labledger.cli import output
from labledger.cli._engine import caught_up
from labledger.errors import UsageError
from labledger.lab.reaper import MISSED_BEATS, reap
from labledger.ledger import read_all
from labledger.projections.decisions import decisions
from labledger.projections.runs import decoded, run_row, run_rows
from labledger.store import EventStore

COLUMNS = ["run_id", "status", "subsystem", "started", "duration", "outcome", "params", "metrics"]
KEY_PARAMS = 4
"""Parameters shown in the ``runs`` table (all of them are in JSON and ``runs show``)."""
RESUME_VERBS = {
    "dream": ["dream", "run", "--resume"],
    "toolgen": ["toolgen", "run", "--resume"],
    "repairlab": ["toolgen", "run", "--resume"],
    "esper": ["esper", "train", "--resume"],
}
"""Which existing resume path continues a run of each subsystem."""


def _duration_s(row: dict[str, Any]) -> float | None:
    """Start to end, or (still running) to its last sign of life — both log times."""
    start, end = row.get("started_at_us"), row.get("ended_at_us") or row.get("alive_at_us")
    return (end - start) / 1e6 if start is not None and end is not None else None


def _short(values: dict[str, Any], limit: int | None = None) -> str:
    items = [f"{k}={output.cell(k, v)[:24]}" for k, v in values.items() if k != "experiment"]
    more = len(items) - limit if limit is not None and len(items) > limit else 0
    return " ".join(items[:limit]) + (f" (+{more})" if more else "")


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """One run as the ``runs`` verbs print it (JSON keeps every field exact)."""
    row = decoded(row)
    return {
        **row,
        "started": output.iso(row.get("started_at_us")),
        "duration_s": _duration_s(row),
        "duration": output.duration(_duration_s(row)),
        "params": _short(row["config"], KEY_PARAMS),
        "metrics": row["metrics"],
        "experiment": row["config"].get("experiment"),
    }


def cmd_runs(args: argparse.Namespace, store: EventStore) -> int:
    if args.runs_verb is not None:
        return int(args.runs_handler(args, store))
    engine = caught_up(store, "runs", progress=False)
    with engine.read("runs") as tx:
        rows = [summary(r) for r in run_rows(tx, status=args.status, subsystem=args.subsystem)]
    fmt = output.chosen(args)
    if not rows and fmt == "table":
        print("no runs (yet): `labledger lab` or `labledger.track(...)` make some", file=sys.stderr)
        return 0
    if fmt != "json":
        rows = [{**r, "metrics": _short(r["metrics"])} for r in rows]
    output.emit(rows, fmt, columns=COLUMNS, title=f"{len(rows)} runs")
    return 0


def _one(store: EventStore, run_id: str) -> dict[str, Any]:
    engine = caught_up(store, "runs", progress=False)
    with engine.read("runs") as tx:
        row = run_row(tx, run_id)
    if row is None:
        raise UsageError(f"no run {run_id!r} in the log: `labledger runs` lists them")
    return summary(row)


def _timeline(store: EventStore, run_id: str) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The run's lifecycle events (``run.*``) in order, and a count of every type."""
    lifecycle, counts = [], Counter[str]()
    for record in read_all(store, run_id=run_id):
        counts[record.type] += 1
        if record.type.startswith("run.") and record.type != "run.Heartbeat":
            lifecycle.append(
                {
                    "position": record.position,
                    "recorded_at_us": record.recorded_at_us,
                    "type": record.type,
                    "stream": record.stream,
                }
            )
    return lifecycle, counts


def cmd_show(args: argparse.Namespace, store: EventStore) -> int:
    run = _one(store, args.run)
    timeline, counts = _timeline(store, args.run)
    engine = caught_up(store, "audit", progress=False)
    with engine.read("audit") as tx:
        made = decisions(tx, run_id=args.run, limit=args.decisions)
    fmt = output.chosen(args)
    if fmt == "json":
        output.json_line(
            {"run": run, "timeline": timeline, "event_counts": counts, "decisions": made}
        )
        return 0
    fields = ["run_id", "subsystem", "status", "outcome", "attempt", "started", "duration"]
    fields += ["host", "code_version", "stream", "events", "last_step"]
    output.emit([{"field": f, "value": run.get(f)} for f in fields], fmt, title="run")
    config = [{"param": k, "value": v} for k, v in run["config"].items()]
    output.emit(config, fmt, columns=["param", "value"], title="config")
    output.emit(
        timeline, fmt, columns=["position", "recorded_at_us", "type", "stream"], title="timeline"
    )
    output.emit(
        [{"type": t, "events": n} for t, n in sorted(counts.items())],
        fmt,
        columns=["type", "events"],
        title="events by type",
    )
    metrics = [{"metric": k, "last": v} for k, v in run["metrics"].items()]
    output.emit(metrics, fmt, columns=["metric", "last"], title="metrics (last value)")
    output.emit(
        made,
        fmt,
        columns=[
            "position",
            "command_id",
            "operation",
            "slot",
            "policy_version",
            "outcome",
            "reward",
        ],
        title="decisions (labledger audit COMMAND_ID shows one)",
    )
    return 0


def comparison(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per field, param and metric of ``runs``: each run's value; do they differ."""
    keys = [("run", k) for k in ("subsystem", "status", "outcome", "duration_s", "events")]
    keys += sorted({("param", k) for r in runs for k in r["config"]})
    keys += sorted({("metric", k) for r in runs for k in r["metrics"]})
    rows = []
    for kind, key in keys:
        source = {
            "run": lambda r: r,
            "param": lambda r: r["config"],
            "metric": lambda r: r["metrics"],
        }
        values = [source[kind](r).get(key) for r in runs]
        differs = any(v != values[0] for v in values[1:])
        row = {"kind": kind, "key": key, "differs": differs}
        rows.append(row | {r["run_id"]: v for r, v in zip(runs, values, strict=True)})
    return rows


def cmd_compare(args: argparse.Namespace, store: EventStore) -> int:
    if len(set(args.runs)) < 2:
        raise UsageError("runs compare: name at least two different runs")
    runs = [_one(store, run_id) for run_id in args.runs]
    rows = comparison(runs)
    fmt = output.chosen(args)
    if fmt != "json":
        rows = [{**r, "differs": "*" if r["differs"] else ""} for r in rows]
    output.emit(
        rows, fmt, columns=["differs", "kind", "key", *args.runs], title="* marks a difference"
    )
    return 0


def parse_now(value: str) -> int:
    """``--now``: µs since the epoch, or an ISO 8601 time (UTC unless it says otherwise)."""
    if value.isdigit():
        return int(value)
    try:
        at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give µs since the epoch or ISO 8601"
        ) from None
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    return int(at.timestamp() * 1_000_000)


_OVERDUE = ("run_id", "subsystem", "attempt", "silent_for_s", "allowed_s", "abandoned")


def cmd_reap(args: argparse.Namespace, store: EventStore) -> int:
    found = reap(store, now_us=args.now, missed_beats=args.missed_beats, dry_run=args.dry_run)
    rows = [msgspec.to_builtins(o) for o in found]
    done = sum(o.abandoned for o in found)
    print(f"runs reap: {len(found)} overdue, {done} abandoned", file=sys.stderr)
    output.emit(rows, output.chosen(args), columns=list(_OVERDUE), title="overdue runs")
    return 0


def cmd_resume(args: argparse.Namespace, store: EventStore) -> int:
    """Dispatch to the resume path of the run's subsystem (the verbs that own them)."""
    from labledger.cli.main import run as cli_run

    run = _one(store, args.run)
    verb = RESUME_VERBS.get(run["subsystem"] or "")
    if verb is None:
        raise UsageError(
            f"run {args.run!r} ({run['subsystem'] or 'unknown subsystem'}) has no resume path: "
            "only dream, toolgen and esper runs continue from a checkpoint"
        )
    if run["status"] == "finished":
        raise UsageError(f"run {args.run!r} finished ({run['outcome']}): nothing to resume")
    print(f"resume {args.run}: labledger {' '.join(verb)} {args.run}", file=sys.stderr)
    return cli_run(["--db", args.db, *verb, args.run, *args.extra])


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``runs`` (with ``show``, ``compare``, ``reap``) and ``resume``."""
    p = sub.add_parser("runs", help="runs of every subsystem: status, params, metrics")
    p.add_argument(
        "--status",
        choices=["running", "finished", "abandoned", "resumed"],
        help="only runs in this state",
    )
    p.add_argument(
        "--subsystem",
        default=None,
        metavar="NAME",
        help="only runs of dream, toolgen, repairlab, esper or track",
    )
    output.add_format(p)
    p.set_defaults(store_handler=cmd_runs)
    verbs = p.add_subparsers(dest="runs_verb", required=False, metavar="{show,compare,reap}")
    q = verbs.add_parser("show", help="one run: config, timeline, decisions, metrics")
    q.add_argument("run", metavar="RUN_ID", help="the run (from `labledger runs`)")
    q.add_argument(
        "--decisions",
        type=int,
        default=50,
        metavar="N",
        help="the last N decisions listed (default 50)",
    )
    output.add_format(q)
    q.set_defaults(runs_handler=cmd_show)
    q = verbs.add_parser("compare", help="params and metrics of runs side by side")
    q.add_argument("runs", nargs="+", metavar="RUN_ID", help="two or more runs")
    output.add_format(q)
    q.set_defaults(runs_handler=cmd_compare)
    q = verbs.add_parser("reap", help="abandon running runs whose heartbeats are overdue")
    q.add_argument(
        "--now",
        type=parse_now,
        default=None,
        metavar="TIME",
        help="judge at this time (µs or ISO 8601; default: now)",
    )
    q.add_argument(
        "--missed-beats",
        type=float,
        default=MISSED_BEATS,
        metavar="K",
        help=f"heartbeats a run may miss (default {MISSED_BEATS:g})",
    )
    q.add_argument("--dry-run", action="store_true", help="list overdue runs, append nothing")
    output.add_format(q)
    q.set_defaults(runs_handler=cmd_reap)
    p = sub.add_parser("resume", help="resume any subsystem's run from its last checkpoint")
    p.add_argument("run", metavar="RUN_ID", help="the run to continue")
    p.add_argument(
        "extra", nargs=argparse.REMAINDER, help="options passed on to the subsystem's resume verb"
    )
    p.set_defaults(store_handler=cmd_resume)
