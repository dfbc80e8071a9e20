"""``project run|status|rebuild|build|hash``: the read models and their checkpoints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import msgspec

from labledger.cli import output
from labledger.cli._engine import engine_for
from labledger.cli._progress import ProgressLine
from labledger.errors import UsageError
from labledger.projections.checkpoint import CheckpointMoved
from labledger.projections.engine import ProjectionEngine
from labledger.projections.status import status
from labledger.store import EventStore, init_store, open_store
from labledger.store.subscribe import subscribe


def cmd_run(args: argparse.Namespace, store: EventStore) -> int:
    engine = engine_for(store)
    names = args.names or sorted(engine.projections)
    for name in names:
        engine.get(name)  # unknown names fail before any work
    bar = ProgressLine(f"project run ({len(names)} projections, one pass)")
    points = engine.run(names, progress=bar)
    bar.close()
    rows = [
        {"projection": n, "version": points[n].version, "checkpoint": points[n].position}
        for n in names
    ]
    output.emit(rows, output.chosen(args), columns=["projection", "version", "checkpoint"])
    if args.follow:
        start = min(cp.position for cp in points.values())
        print(f"following the log from position {start}; Ctrl-C to stop", file=sys.stderr)
        anyio.run(_follow, engine, store, names, start)
    return 0


async def _follow(engine: ProjectionEngine, store: EventStore, names: list[str], at: int) -> None:
    """Apply each new event as it is appended, and say so on stderr (``--follow``).

    One subscription wakes the runner; one ``engine.run`` then applies whatever
    has arrived (many events in one batch under load), and every event it
    covered gets its line: position, type, stream, what the projections stand at.
    """
    async for record in subscribe(store, at + 1):
        if record.position > at:
            try:
                points = await anyio.to_thread.run_sync(engine.run, names)
            except CheckpointMoved:
                continue  # another runner or a rebuild moved it: the next event retries
            at = min(cp.position for cp in points.values())
        print(
            f"applied #{record.position} {record.type} [{record.stream}] "
            f"→ {len(names)} projections at {at}",
            file=sys.stderr,
            flush=True,
        )


def cmd_status(args: argparse.Namespace, store: EventStore) -> int:
    rows = status(engine_for(store), stall_after_s=args.stall_after)
    columns = ["name", "state", "checkpoint", "head", "lag_events", "lag_seconds", "followed"]
    output.emit([msgspec.to_builtins(r) for r in rows], output.chosen(args), columns=columns)
    return 0


def cmd_rebuild(args: argparse.Namespace, store: EventStore) -> int:
    engine = engine_for(store)
    if args.all == bool(args.names):
        raise UsageError("project rebuild: name projections, or give --all")
    names = sorted(engine.projections) if args.all else args.names
    for name in names:
        engine.get(name)  # unknown names fail before any work
    bar = ProgressLine(f"rebuild {', '.join(names)}" if len(names) < 3 else "rebuild (one pass)")
    points = engine.rebuild_many(names, progress=bar)
    bar.close()
    for name in names:
        cp = points[name]
        output.json_line(
            {
                "projection": name,
                "version": cp.version,
                "checkpoint": cp.position,
                "state_hash": engine.state_hash(name),
            }
        )
    return 0


def cmd_build(args: argparse.Namespace, store: EventStore) -> int:
    """Build NAME as of a past position into another database (or schema)."""
    init_store(args.into)
    with open_store(args.into) as target:
        engine = engine_for(store, target=target)
        if target.head() or engine.checkpoint(args.name) is not None:
            raise UsageError(
                f"--into {args.into} already holds a ledger or this projection; "
                "give an empty database"
            )
        bar = ProgressLine(f"build {args.name} as of {args.as_of}")
        cp = engine.catch_up(args.name, until=args.as_of, progress=bar)
        bar.close()
        output.json_line(
            {
                "projection": args.name,
                "as_of": args.as_of,
                "checkpoint": cp.position,
                "into": args.into,
                "state_hash": engine.state_hash(args.name),
            }
        )
    return 0


def cmd_hash(args: argparse.Namespace, store: EventStore) -> int:
    print(engine_for(store).state_hash(args.name))
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``project run|status|rebuild|build|hash``."""
    project = sub.add_parser("project", help="projections: run, status, rebuild, build, hash")
    verbs = project.add_subparsers(dest="project_verb", required=True, parser_class=type(project))
    p = verbs.add_parser("run", help="catch up (then --follow live appends)")
    p.add_argument("names", nargs="*", metavar="NAME", help="projections (default: all)")
    p.add_argument(
        "--follow", action="store_true", help="then apply live appends, one line per event"
    )
    output.add_format(p)
    p.set_defaults(store_handler=cmd_run)
    p = verbs.add_parser("status", help="version, checkpoint, head, lag, stalls")
    p.add_argument(
        "--stall-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a followed projection standing still this long is stalled (default 60)",
    )
    output.add_format(p)
    p.set_defaults(store_handler=cmd_status)
    p = verbs.add_parser(
        "rebuild", help="rebuild into shadow tables (one pass for many) and swap atomically"
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="projections to rebuild")
    p.add_argument("--all", action="store_true", help="every projection, from one scan")
    p.set_defaults(store_handler=cmd_rebuild)
    p = verbs.add_parser("build", help="build as of a past position into another database")
    p.add_argument("name", help="the projection built")
    p.add_argument(
        "--as-of", type=int, required=True, metavar="POSITION", help="the last position applied"
    )
    p.add_argument("--into", required=True, metavar="URL", help="an empty database to build in")
    p.set_defaults(store_handler=cmd_build)
    p = verbs.add_parser("hash", help="deterministic digest of a projection's tables")
    p.add_argument("name", help="the projection hashed")
    p.set_defaults(store_handler=cmd_hash)
