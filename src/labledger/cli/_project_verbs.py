"""CLI verbs for projections: run, status, rebuild, build --as-of, hash; and `runs`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import msgspec
import sqlalchemy as sa

from labledger.cli._progress import ProgressLine
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.runs import run_rows
from labledger.projections.status import status
from labledger.store import EventStore, init_store, open_store

_encode = msgspec.json.Encoder().encode


def engine_for(store: EventStore, **kwargs: Any) -> ProjectionEngine:
    return ProjectionEngine(store, all_projections(), **kwargs)


def _print(obj: object) -> None:
    sys.stdout.buffer.write(_encode(obj) + b"\n")
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace, store: EventStore) -> int:
    engine = engine_for(store)
    names = args.names or sorted(engine.projections)
    for name in names:
        engine.get(name)  # unknown names fail before any work
    for name in names:
        bar = ProgressLine(f"project {name}")
        cp = engine.catch_up(name, progress=bar)
        bar.close()
        _print({"projection": name, "version": cp.version, "checkpoint": cp.position})
    if args.follow:
        print("following the log; Ctrl-C to stop", file=sys.stderr)
        anyio.run(engine.follow, names)
    return 0


def cmd_status(args: argparse.Namespace, store: EventStore) -> int:
    rows = status(engine_for(store), stall_after_s=args.stall_after)
    for row in rows:
        _print(msgspec.to_builtins(row))
    return 0


def cmd_rebuild(args: argparse.Namespace, store: EventStore) -> int:
    engine = engine_for(store)
    bar = ProgressLine(f"rebuild {args.name}")
    cp = engine.rebuild(args.name, progress=bar)
    bar.close()
    _print(
        {
            "projection": args.name,
            "version": cp.version,
            "checkpoint": cp.position,
            "state_hash": engine.state_hash(args.name),
        }
    )
    return 0


def cmd_build(args: argparse.Namespace, store: EventStore) -> int:
    """Build NAME as of a past position into another database (or schema)."""
    init_store(args.into)
    with open_store(args.into) as target:
        if target.head() or _has_checkpoint(target, args.name):
            from labledger.errors import UsageError

            raise UsageError(
                f"--into {args.into} already holds a ledger or this projection; "
                "give an empty database"
            )
        engine = engine_for(store, target=target)
        bar = ProgressLine(f"build {args.name} as of {args.as_of}")
        cp = engine.catch_up(args.name, until=args.as_of, progress=bar)
        bar.close()
        _print(
            {
                "projection": args.name,
                "as_of": args.as_of,
                "checkpoint": cp.position,
                "into": args.into,
                "state_hash": engine.state_hash(args.name),
            }
        )
    return 0


def _has_checkpoint(target: EventStore, name: str) -> bool:
    with target.read() as conn:
        row = conn.execute(
            sa.text("SELECT 1 FROM ll_projections WHERE name = :n"), {"n": name}
        ).first()
    return row is not None


def cmd_hash(args: argparse.Namespace, store: EventStore) -> int:
    engine = engine_for(store)
    print(engine.state_hash(args.name))
    return 0


def cmd_runs(args: argparse.Namespace, store: EventStore) -> int:
    engine = engine_for(store)
    engine.catch_up("runs")
    with engine.read("runs") as tx:
        for row in run_rows(tx, status=args.status):
            _print(row)
    return 0


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    project = sub.add_parser("project", help="projections: run, status, rebuild, build, hash")
    verbs = project.add_subparsers(dest="project_verb", required=True, parser_class=type(project))
    p = verbs.add_parser("run", help="catch up (then --follow live appends)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--follow", action="store_true")
    p.set_defaults(store_handler=cmd_run)
    p = verbs.add_parser("status", help="version, checkpoint, head, lag, stalls")
    p.add_argument("--stall-after", type=float, default=60.0, metavar="SECONDS")
    p.set_defaults(store_handler=cmd_status)
    p = verbs.add_parser("rebuild", help="rebuild into shadow tables and swap atomically")
    p.add_argument("name")
    p.set_defaults(store_handler=cmd_rebuild)
    p = verbs.add_parser("build", help="build as of a past position into another database")
    p.add_argument("name")
    p.add_argument("--as-of", type=int, required=True, metavar="POSITION")
    p.add_argument("--into", required=True, metavar="URL")
    p.set_defaults(store_handler=cmd_build)
    p = verbs.add_parser("hash", help="deterministic digest of a projection's tables")
    p.add_argument("name")
    p.set_defaults(store_handler=cmd_hash)
    p = sub.add_parser("runs", help="runs with status, subsystem, heartbeats, event counts")
    p.add_argument("--status", choices=["running", "finished", "abandoned", "resumed"])
    p.set_defaults(store_handler=cmd_runs)
