"""``esper …``: the Esper lab (train, plot, simic, weatherlight) and its read models
(training-set export, seeds, nonces, telemetry-check).

torch is imported only when a verb that needs it runs. Progress goes to
stderr; stdout gets JSON lines. Commands are signed with the key ring the
store's gate verifies with (``LABLEDGER_KEYS`` / the key file); with an empty
ring a new Ed25519 key is saved to the key file and registered in the log (#18).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from labledger import extras
from labledger.cli import _esper_learning, output
from labledger.cli._engine import caught_up
from labledger.cli._input import positive
from labledger.cli._progress import ProgressLine
from labledger.errors import CorruptionDetected
from labledger.projections import audit as audit_model
from labledger.projections.esper_training import EsperTrainingProjection, completed, pending_count
from labledger.projections.seeds import slot_rows
from labledger.store import EventStore

# -- read models -------------------------------------------------------------------


def _export(store: EventStore, out: Path, *, verb: str, nothing_exported: bool) -> dict[str, Any]:
    """The training set as of the verified head, written to ``out``; what the manifest says.

    ``training-set export`` and ``simic`` refuse a log that fails verification
    with messages that differ (``nothing_exported``: "; nothing exported" and
    the first bad position); both are kept as users have seen them.
    """
    report = store.verify()
    if not report.ok:
        message = f"the log fails verification ({report.message})"
        if nothing_exported:
            raise CorruptionDetected(f"{message}; nothing exported", report.first_bad_position)
        raise CorruptionDetected(message)
    name = EsperTrainingProjection.name
    engine = caught_up(store, name, until=report.head)
    with engine.read(name) as tx:
        rows = completed(tx, as_of=report.head)
        pending = pending_count(tx, as_of=report.head)
    extras.require("ml", verb)
    from labledger.projections import training_data

    bar = ProgressLine(f"export {out.name}", unit="transitions")
    doc = training_data.write_training_set(
        rows,
        out,
        head_position=report.head,
        head_hash=report.head_hash,
        pending=pending,
        progress=bar,
    )
    bar.close()
    return {
        "out": str(out),
        "manifest": str(training_data.manifest_path(out)),
        "transitions": doc["transitions"],
        "pending_excluded": pending,
        "head_position": report.head,
        "head_hash": report.head_hash,
    }


def cmd_training_export(args: argparse.Namespace, store: EventStore) -> int:
    """Export completed transitions as of the verified head: tensors + manifest."""
    written = _export(
        store, Path(args.out), verb="esper training-set export", nothing_exported=True
    )
    output.json_line(written)
    return 0


def cmd_seeds(args: argparse.Namespace, store: EventStore) -> int:
    """Lifecycle state per (run, slot), one JSON object per line."""
    engine = caught_up(store, "seeds")
    with engine.read("seeds") as tx:
        output.emit(slot_rows(tx, args.run), output.chosen(args))
    return 0


def cmd_nonces(args: argparse.Namespace, store: EventStore) -> int:
    """Admitted nonces per key and refusals per reason and key."""
    engine = caught_up(store, "nonce_ledger")
    with engine.read("nonce_ledger") as tx:
        summary = audit_model.nonce_summary(tx)
    row = {**summary, "store": msgspec.to_builtins(store.nonce_stats())}
    output.emit([row], output.chosen(args))
    return 0


def cmd_telemetry_check(args: argparse.Namespace, store: EventStore) -> int:
    """Violations of the telemetry ordering rules (exit 1 when there are any)."""
    from labledger.projections import telemetry_contract as tc

    name = tc.TelemetryContractProjection.name
    engine = caught_up(store, name)
    with engine.read(name) as tx:
        found = tc.violations(tx, args.run_id)
        counts = tc.kind_counts(tx, args.run_id)
    output.emit(found, output.chosen(args))
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


# -- the lab -----------------------------------------------------------------------


def _train_line(summary: Any) -> dict[str, Any]:
    tally = summary.tally
    return {
        "run_id": summary.run_id,
        "attempt": summary.attempt,
        "epochs": summary.epochs,
        "final_accuracy": round(summary.final_accuracy, 4),
        "accuracy": [round(a, 4) for _, a in sorted(summary.accuracy.items())],
        "commands": tally.commands,
        "accepted": tally.accepted,
        "rejected": tally.rejected_by_gate + tally.rejected_by_kasmina,
        "field_reports": tally.reports,
        "rollbacks": tally.rollbacks,
        "elapsed_s": summary.elapsed_s,
    }


def cmd_train(args: argparse.Namespace, store: EventStore) -> int:
    """Train a new run (or ``--resume`` one) and print its summary as JSON."""
    extras.require("ml", "esper train")
    from labledger.lab.esper import session

    if args.resume is not None:
        bar = ProgressLine(f"esper resume {args.resume}", unit="epochs")
        summary = session.resume_session(store, args.resume, progress=bar)
    else:
        config = session.SessionConfig(
            epochs=args.epochs,
            seed=args.seed,
            policy=args.policy,
            diverge_epoch=args.diverge_at,
            task=args.task,
        )
        bar = ProgressLine("esper train", unit="epochs")
        summary = session.run_session(store, config, run_id=args.run_id, progress=bar)
    bar.close()
    output.json_line(_train_line(summary))
    return 0


def cmd_plot(args: argparse.Namespace, store: EventStore) -> int:
    """Write the accuracy-over-epochs PNG of one run."""
    extras.require("plot", "esper plot")
    from labledger.lab.esper.plot import plot_run

    out = plot_run(store, args.run_id, Path(args.out))
    print(f"esper plot: wrote {out}", file=sys.stderr)
    return 0


def cmd_simic(args: argparse.Namespace, store: EventStore) -> int:
    """Train a new Tamiyo policy (advantage-filtered BC), store it, record PolicyUpdated."""
    extras.require("ml", "esper simic")
    from labledger.lab.esper import simic

    with tempfile.TemporaryDirectory(prefix="labledger-simic-") as tmp:
        source = Path(args.from_export) if args.from_export else Path(tmp) / "train.pt"
        if not args.from_export:
            _export(store, source, verb="esper simic", nothing_exported=False)
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
    output.json_line(
        {**msgspec.to_builtins(report), "checkpoint_sha256": sha, "position": position}
    )
    print(f"policy {report.policy_version}: ckpt:{sha}", file=sys.stderr)
    return 0


def cmd_weatherlight(args: argparse.Namespace, store: EventStore) -> int:
    """Route pending emergencies (``--follow``: keep following) and print the counters."""
    import anyio

    from labledger.lab.esper.weatherlight import EMERGENCY_STREAM, Weatherlight

    worker = Weatherlight(store)
    routed = worker.drain()
    counters = worker.checkpoint.counters
    output.json_line({"stream": EMERGENCY_STREAM, "routed_now": routed, **counters})
    if args.follow:
        print("following the log; Ctrl-C to stop", file=sys.stderr)
        anyio.run(worker.run, None, output.json_line)
    return 0


# -- wiring ------------------------------------------------------------------------


def _add_read_models(verbs: argparse._SubParsersAction[Any], parser_class: Any) -> None:
    training = verbs.add_parser("training-set", help="the Simic policy training set")
    actions = training.add_subparsers(
        dest="training_verb", required=True, parser_class=parser_class
    )
    p = actions.add_parser("export", help="write torch tensors and a JSON manifest")
    p.add_argument("--out", required=True, metavar="FILE", help="tensors file (.pt)")
    p.set_defaults(store_handler=cmd_training_export)
    p = verbs.add_parser("seeds", help="lifecycle state per run and slot")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="only this run")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_seeds)
    p = verbs.add_parser("nonces", help="admitted nonces per key, refusals by reason")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_nonces)


def _add_train_and_plot(verbs: argparse._SubParsersAction[Any]) -> None:
    p = verbs.add_parser("train", help="train a host with Tamiyo, Kasmina and Urza (torch, CPU)")
    p.add_argument("--epochs", type=positive, default=5, help="epochs (default 5)")
    p.add_argument(
        "--policy",
        default="heuristic",
        help="heuristic | noop | random | learned:SHA256 (graph) | ckpt:SHA256 (MLP)",
    )
    p.add_argument("--task", default="digits", choices=["digits", "spirals"], help="the task")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    p.add_argument("--run-id", default=None, help="default: <date>-<random>")
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue an interrupted run from its last checkpoint",
    )
    p.add_argument(
        "--diverge-at",
        type=int,
        default=None,
        metavar="EPOCH",
        help="fault drill: blow up the host in EPOCH (rollback)",
    )
    p.set_defaults(store_handler=cmd_train)
    p = verbs.add_parser("plot", help="PNG of accuracy over epochs with seed events marked")
    p.add_argument("run_id", metavar="RUN_ID", help="the run plotted")
    p.add_argument("--out", required=True, metavar="FILE", help="the PNG written")
    p.set_defaults(store_handler=cmd_plot)


def _add_simic_and_watchers(verbs: argparse._SubParsersAction[Any]) -> None:
    p = verbs.add_parser("simic", help="train the Tamiyo policy from the training set")
    p.add_argument("--epochs", type=int, default=150, help="epochs (default 150)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    p.add_argument("--from-export", default=None, metavar="FILE", help="an exported .pt file")
    p.add_argument("--dry-run", action="store_true", help="train, but record nothing")
    p.set_defaults(store_handler=cmd_simic)
    _esper_learning.add_verbs(verbs)
    p = verbs.add_parser("telemetry-check", help="telemetry ordering rules; exit 1 on violations")
    p.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID", help="only this run")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_telemetry_check)
    p = verbs.add_parser("weatherlight", help="route CRITICAL telemetry and rejections")
    p.add_argument("--follow", action="store_true", help="keep following the log")
    p.set_defaults(store_handler=cmd_weatherlight)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``esper …`` (the order is the order ``labledger esper --help`` lists them)."""
    esper = sub.add_parser("esper", help="Esper read models: training set, seeds, nonces")
    verbs = esper.add_subparsers(dest="esper_verb", required=True, parser_class=type(esper))
    _add_read_models(verbs, type(esper))
    _add_train_and_plot(verbs)
    _add_simic_and_watchers(verbs)
