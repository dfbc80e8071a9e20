"""CLI verbs: `esper simic`, `esper telemetry-check`, `esper weatherlight`, and `replay RUN_ID`.

The ``esper`` verbs attach to the ``esper`` parser that ``_esper_verbs``
registers (this module comes after it in ``EXTENSIONS``). torch is imported
only when ``esper simic`` runs.

``replay RUN_ID`` rebuilds every read model from the log alone, from zero,
into a fresh temporary SQLite database (``ProjectionEngine(target=…)``), up
to the live projection's checkpoint, and compares it with the live one: the
full state hash, and the hash of the run's own rows (every row whose
``run_id`` column is RUN_ID; tables without that column count whole). It does
*not* replay a run-filtered log: read models such as the training set join
events across runs (a field report completes a command by id), so a
run-filtered log is not what was seen live.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from labledger import extras
from labledger.cli._progress import ProgressLine
from labledger.cli._project_verbs import engine_for
from labledger.errors import CorruptionDetected, UsageError
from labledger.projections import ProjectionEngine, Tx
from labledger.store import EventStore, init_store, open_store

_encode = msgspec.json.Encoder().encode
_canonical = msgspec.json.Encoder(order="sorted").encode  # as projections.state_hash encodes


def _value(value: Any) -> Any:
    return {"hex": bytes(value).hex()} if isinstance(value, bytes | memoryview) else value


def _print(obj: object) -> None:
    sys.stdout.buffer.write(_encode(obj) + b"\n")
    sys.stdout.flush()


# -- esper simic -----------------------------------------------------------------


def _export(store: EventStore, out: Path) -> None:
    """The training set as of the verified head, through the export's own code path."""
    from labledger.projections import training_data
    from labledger.projections.esper_training import completed, pending_count

    report = store.verify()
    if not report.ok:
        raise CorruptionDetected(f"the log fails verification ({report.message})")
    engine = engine_for(store)
    bar = ProgressLine("project esper_training")
    engine.catch_up("esper_training", until=report.head, progress=bar)
    bar.close()
    with engine.read("esper_training") as tx:
        rows, pending = completed(tx, as_of=report.head), pending_count(tx, as_of=report.head)
    bar = ProgressLine(f"export {out.name}", unit="transitions")
    training_data.write_training_set(
        rows,
        out,
        head_position=report.head,
        head_hash=report.head_hash,
        pending=pending,
        progress=bar,
    )
    bar.close()


def cmd_simic(args: argparse.Namespace, store: EventStore) -> int:
    """Train a new Tamiyo policy (advantage-filtered BC), store it, record PolicyUpdated."""
    extras.require("ml", "esper simic")
    from labledger.lab.esper import simic

    with tempfile.TemporaryDirectory(prefix="labledger-simic-") as tmp:
        source = Path(args.from_export) if args.from_export else Path(tmp) / "train.pt"
        if not args.from_export:
            _export(store, source)
        config = simic.SimicConfig(epochs=args.epochs, seed=args.seed)
        previous = simic.latest_policy(store)
        old = None if previous is None else store.get_blob(previous.checkpoint_sha256)
        bar = ProgressLine("simic", unit="epochs")
        checkpoint, report = simic.train_policy(source, config, previous=old, progress=bar)
        bar.close()
    if args.dry_run:
        sha, position = hashlib.sha256(checkpoint).hexdigest(), None
    else:
        sha, position = simic.record_policy_update(store, checkpoint, report, config)
    _print({**msgspec.to_builtins(report), "checkpoint_sha256": sha, "position": position})
    print(f"policy {report.policy_version}: ckpt:{sha}", file=sys.stderr)
    return 0


# -- esper telemetry-check and weatherlight ----------------------------------------


def cmd_telemetry_check(args: argparse.Namespace, store: EventStore) -> int:
    """Violations of the telemetry ordering rules (exit 1 when there are any)."""
    from labledger.projections import telemetry_contract as tc

    engine = engine_for(store)
    bar = ProgressLine("project telemetry_contract")
    engine.catch_up(tc.TelemetryContractProjection.name, progress=bar)
    bar.close()
    with engine.read(tc.TelemetryContractProjection.name) as tx:
        found = tc.violations(tx, args.run_id)
        counts = tc.kind_counts(tx, args.run_id)
    for violation in found:
        _print(violation)
    runs = sorted(counts) if args.run_id is None else [args.run_id]
    for run in runs:
        kinds = counts.get(run, {})
        bad = sum(1 for v in found if v.run_id == run)
        print(
            f"run {run or '<unnamed>'}: {sum(kinds.values())} telemetry events, "
            f"{bad} violation(s); {kinds}",
            file=sys.stderr,
        )
    return 1 if found else 0


def cmd_weatherlight(args: argparse.Namespace, store: EventStore) -> int:
    """Route pending emergencies (``--follow``: keep following) and print the counters."""
    import anyio

    from labledger.lab.esper.weatherlight import EMERGENCY_STREAM, Weatherlight

    worker = Weatherlight(store)
    routed = worker.drain()
    _print({"stream": EMERGENCY_STREAM, "routed_now": routed, **worker.checkpoint.counters})
    if args.follow:
        print("following the log; Ctrl-C to stop", file=sys.stderr)
        anyio.run(worker.run, None, _print)
    return 0


# -- replay ------------------------------------------------------------------------


def run_view_hash(tx: Tx, run_id: str) -> str:
    """Hash of a projection's rows for one run (tables without ``run_id`` count whole)."""
    digest = hashlib.sha256()
    for name in sorted(tx.tables.by_name):
        table = tx.tables.by_name[name]
        query = sa.select(table).order_by(*table.primary_key.columns)
        if "run_id" in table.c:
            query = query.where(table.c.run_id == run_id)
        digest.update(_canonical({"table": name, "columns": [str(c.name) for c in table.c]}))
        for row in tx.conn.execute(query):
            digest.update(_canonical([_value(v) for v in row]))
    return digest.hexdigest()


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
        live_run = run_view_hash(tx, run_id)
    with fresh.read(name) as tx:
        replay_run = run_view_hash(tx, run_id)
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
    engine = engine_for(store)
    engine.catch_up("runs")
    with engine.read("runs") as tx:
        return tx.get("runs", run_id=run_id) is not None


def cmd_replay(args: argparse.Namespace, store: EventStore) -> int:
    """Rebuild every read model from the log and compare with what was seen live."""
    if not _run_exists(store, args.run_id):
        raise UsageError(f"replay: no run {args.run_id!r} in the log (`labledger runs` lists them)")
    rows = replay(store, args.run_id)
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
        _print(row)
    return 0 if all(row["equal"] for row in rows) else 1


# -- wiring ------------------------------------------------------------------------


def _esper_verbs(sub: argparse._SubParsersAction[Any]) -> argparse._SubParsersAction[Any]:
    esper = sub.choices.get("esper")
    if esper is None:
        raise RuntimeError("_simic_verbs must come after _esper_verbs in EXTENSIONS")
    for action in esper._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the esper parser has no sub-verbs")


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``esper simic``, ``esper telemetry-check``, ``esper weatherlight``, ``replay``."""
    verbs = _esper_verbs(sub)
    p = verbs.add_parser("simic", help="train the Tamiyo policy from the training set")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-export", default=None, metavar="FILE", help="an exported .pt file")
    p.add_argument("--dry-run", action="store_true", help="train, but record nothing")
    p.set_defaults(store_handler=cmd_simic)
    p = verbs.add_parser("telemetry-check", help="telemetry ordering rules; exit 1 on violations")
    p.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID")
    p.set_defaults(store_handler=cmd_telemetry_check)
    p = verbs.add_parser("weatherlight", help="route CRITICAL telemetry and rejections")
    p.add_argument("--follow", action="store_true", help="keep following the log")
    p.set_defaults(store_handler=cmd_weatherlight)
    p = sub.add_parser("replay", help="rebuild every read model from the log; compare with live")
    p.add_argument("run_id", metavar="RUN_ID")
    p.set_defaults(store_handler=cmd_replay)
