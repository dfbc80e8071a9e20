"""``replay RUN_ID``: rebuild every read model from the log and compare it with the live one.

The rebuild goes from zero, from the log alone, into a fresh temporary SQLite
database (``ProjectionEngine(target=…)``), up to each live projection's
checkpoint. Compared are the full state hash and the hash of the run's own rows (every row whose
``run_id`` column is RUN_ID; tables without that column count whole). It does
*not* replay a run-filtered log: read models such as the training set join
events across runs (a field report completes a command by id), so a
run-filtered log is not what was seen live.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from labledger.cli import output
from labledger.cli._engine import caught_up, engine_for
from labledger.cli._progress import ProgressLine
from labledger.errors import UsageError
from labledger.projections import ProjectionEngine
from labledger.projections.state_hash import run_hash
from labledger.store import EventStore, init_store, open_store


def replay(store: EventStore, run_id: str) -> list[dict[str, Any]]:
    """Per projection: live vs rebuilt-from-the-log hashes (full, and of the run's rows)."""
    live = engine_for(store)
    rows = []
    with tempfile.TemporaryDirectory(prefix="labledger-replay-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'replay.db'}"
        init_store(url)
        with open_store(url) as target:
            fresh = engine_for(store, target=target)
            for name in sorted(live.projections):
                bar = ProgressLine(f"replay {name}")
                cp = live.catch_up(name)
                fresh.catch_up(name, until=cp.position, progress=bar)
                bar.close()
                rows.append(_compare(live, fresh, name, run_id, cp.position))
    return rows


def _compare(
    live: ProjectionEngine, fresh: ProjectionEngine, name: str, run_id: str, position: int
) -> dict[str, Any]:
    with live.read(name) as tx:
        live_run = run_hash(tx.conn, tx.tables, run_id)
    with fresh.read(name) as tx:
        replay_run = run_hash(tx.conn, tx.tables, run_id)
    live_full, replay_full = live.state_hash(name), fresh.state_hash(name)
    return {
        "projection": name,
        "position": position,
        "live_run_hash": live_run,
        "replay_run_hash": replay_run,
        "live_state_hash": live_full,
        "replay_state_hash": replay_full,
        "equal": live_run == replay_run and live_full == replay_full,
    }


def _run_exists(store: EventStore, run_id: str) -> bool:
    engine = caught_up(store, "runs", progress=False)
    with engine.read("runs") as tx:
        return tx.get("runs", run_id=run_id) is not None


def cmd_replay(args: argparse.Namespace, store: EventStore) -> int:
    """Rebuild every read model from the log and compare with what was seen live."""
    if not _run_exists(store, args.run_id):
        raise UsageError(f"replay: no run {args.run_id!r} in the log (`labledger runs` lists them)")
    rows = replay(store, args.run_id)
    fmt = output.chosen(args)
    if fmt != "json":
        output.emit(rows, fmt)
        return 0 if all(row["equal"] for row in rows) else 1
    print(
        f"{'projection':<22} {'live (run)':<14} {'replay (run)':<14} "
        f"{'live (all)':<14} {'replay (all)':<14} equal",
        file=sys.stderr,
    )
    for row in rows:
        print(
            f"{row['projection']:<22} {row['live_run_hash'][:12]:<14} "
            f"{row['replay_run_hash'][:12]:<14} {row['live_state_hash'][:12]:<14} "
            f"{row['replay_state_hash'][:12]:<14} {'yes' if row['equal'] else 'NO'}",
            file=sys.stderr,
        )
        output.json_line(row)
    return 0 if all(row["equal"] for row in rows) else 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``replay``."""
    p = sub.add_parser("replay", help="rebuild every read model from the log; compare with live")
    p.add_argument("run_id", metavar="RUN_ID", help="the run replayed (`labledger runs`)")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_replay)
