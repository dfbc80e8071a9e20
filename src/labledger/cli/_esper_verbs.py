"""CLI verbs for Esper read models: `esper training-set export`, `esper seeds`,
`esper nonces`, and `audit COMMAND_ID` / `audit --rejected`.

Each verb catches its projection up first. The training-set export imports
torch (through ``projections.training_data``) only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from labledger import extras
from labledger.cli import _esper_lab_verbs
from labledger.cli._progress import ProgressLine
from labledger.cli._project_verbs import engine_for
from labledger.errors import CorruptionDetected, UsageError
from labledger.projections import ProjectionEngine
from labledger.projections import audit as audit_model
from labledger.projections.esper_training import EsperTrainingProjection, completed, pending_count
from labledger.projections.seeds import slot_rows
from labledger.store import EventStore

_encode = msgspec.json.Encoder().encode


def _print(obj: object) -> None:
    sys.stdout.buffer.write(_encode(obj) + b"\n")
    sys.stdout.flush()


def _caught_up(store: EventStore, name: str, until: int | None = None) -> ProjectionEngine:
    engine = engine_for(store)
    bar = ProgressLine(f"project {name}")
    engine.catch_up(name, until=until, progress=bar)
    bar.close()
    return engine


def cmd_training_export(args: argparse.Namespace, store: EventStore) -> int:
    """Export completed transitions as of the verified head: tensors + manifest."""
    report = store.verify()
    if not report.ok:
        raise CorruptionDetected(
            f"the log fails verification ({report.message}); nothing exported",
            report.first_bad_position,
        )
    name = EsperTrainingProjection.name
    engine = _caught_up(store, name, until=report.head)
    with engine.read(name) as tx:
        rows = completed(tx, as_of=report.head)
        pending = pending_count(tx, as_of=report.head)
    extras.require("ml", "esper training-set export")
    from labledger.projections import training_data

    out = Path(args.out)
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
    _print(
        {
            "out": str(out),
            "manifest": str(training_data.manifest_path(out)),
            "transitions": doc["transitions"],
            "pending_excluded": pending,
            "head_position": report.head,
            "head_hash": report.head_hash,
        }
    )
    return 0


def cmd_seeds(args: argparse.Namespace, store: EventStore) -> int:
    """Lifecycle state per (run, slot), one JSON object per line."""
    engine = _caught_up(store, "seeds")
    with engine.read("seeds") as tx:
        for row in slot_rows(tx, args.run):
            _print(row)
    return 0


def cmd_nonces(args: argparse.Namespace, store: EventStore) -> int:
    """Admitted nonces per key and refusals per reason and key."""
    engine = _caught_up(store, "nonce_ledger")
    with engine.read("nonce_ledger") as tx:
        summary = audit_model.nonce_summary(tx)
    _print({**summary, "store": msgspec.to_builtins(store.nonce_stats())})
    return 0


def _text(link: dict[str, Any]) -> str:
    """One link of an audit chain for people (``--text``)."""
    step, at = link["step"], f"#{link['position']:<6} {link['step']:<13}"
    if step == "command":
        return (
            f"{at}{link['command_id']} {link['operation']} slot {link['slot']} — decided by "
            f"{link['policy_version']} (risk {link['risk']}, coverage {link['coverage']}): "
            f"{link['reason']!r}; appended by {link['actor'] or '?'} with key {link['key_id']}"
        )
    if step == "verification":
        detail = link.get("detail") or ""
        why = f"{link['reason']}: {detail}" if link.get("reason") else detail
        line = f"{at}{link['verdict']} by {link['actor'] or '?'} (key {link['key_id']})"
        return f"{line} {why}" if why else line
    if step == "effect":
        return f"{at}{link['kind']} slot {link['slot']}: {link['detail']} [{link['actor'] or '?'}]"
    if step == "field_report":
        return (
            f"{at}{link['outcome']} loss_delta={link['loss_delta']} "
            f"accuracy_delta={link['accuracy_delta']} over {link['observation_window_epochs']} "
            f"epochs [{link['actor'] or '?'}]"
        )
    return f"{at}{link['value']:.6g} = {link['formula']}"


def cmd_audit(args: argparse.Namespace, store: EventStore) -> int:
    """The chain of one command, or (``--rejected``) every refused command."""
    if args.rejected == (args.command_id is not None):
        raise UsageError("audit: give a COMMAND_ID or --rejected (not both)")
    engine = _caught_up(store, "audit")
    with engine.read("audit") as tx:
        links = (
            audit_model.rejected(tx) if args.rejected else audit_model.trail(tx, args.command_id)
        )
    if not links and not args.rejected:
        raise UsageError(
            f"audit: no command {args.command_id!r} in the log (nor a refusal naming it); "
            "`labledger audit --rejected` lists refused commands"
        )
    for link in links:
        if args.text and not args.rejected:
            print(_text(link))
        else:
            _print(link)
    return 0


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``esper …`` and ``audit``."""
    esper = sub.add_parser("esper", help="Esper read models: training set, seeds, nonces")
    verbs = esper.add_subparsers(dest="esper_verb", required=True, parser_class=type(esper))
    training = verbs.add_parser("training-set", help="the Simic policy training set")
    actions = training.add_subparsers(dest="training_verb", required=True, parser_class=type(esper))
    p = actions.add_parser("export", help="write torch tensors and a JSON manifest")
    p.add_argument("--out", required=True, metavar="FILE", help="tensors file (.pt)")
    p.set_defaults(store_handler=cmd_training_export)
    p = verbs.add_parser("seeds", help="lifecycle state per run and slot")
    p.add_argument("--run", default=None, metavar="RUN_ID")
    p.set_defaults(store_handler=cmd_seeds)
    p = verbs.add_parser("nonces", help="admitted nonces per key, refusals by reason")
    p.set_defaults(store_handler=cmd_nonces)
    _esper_lab_verbs.add_parsers(verbs)  # esper train, esper plot
    p = sub.add_parser("audit", help="command → verification → effects → report → reward")
    p.add_argument("command_id", nargs="?", metavar="COMMAND_ID")
    p.add_argument("--rejected", action="store_true", help="list refused commands")
    p.add_argument("--text", action="store_true", help="one readable line per link")
    p.set_defaults(store_handler=cmd_audit)
