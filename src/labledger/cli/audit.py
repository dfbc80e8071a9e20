"""``audit COMMAND_ID`` / ``--rejected`` / ``--list``: command → verification → effects → reward.

The ``audit`` read model is caught up first. ``--list`` (optionally ``--run``)
lists the decisions, so their command ids can be found. Output follows the
convention (``--format``); a chain's table is one readable line per link
(``--text`` is kept as another name for ``--format table``). ``audit --verify
COMMAND_ID`` re-checks the command's signature against the public key the log
records for its key id, reading the log only (no read model, no secret: it
runs on a read-only copy); exit 1 when the key is unknown or the signature fails.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from labledger.cli import output
from labledger.cli._engine import caught_up
from labledger.errors import UsageError
from labledger.projections import audit as audit_model
from labledger.projections.decisions import decisions
from labledger.security import recheck
from labledger.security.keybook import KeyBook
from labledger.security.keyring import KeyRing
from labledger.store import EventStore


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
    """The chain of one command, every refused command, or (``--list``) every decision."""
    if (args.rejected or args.list) == (args.command_id is not None) or (
        args.rejected and args.list
    ):
        raise UsageError("audit: give a COMMAND_ID, --rejected or --list (one of them)")
    if args.verify:
        return _verify(args, store)
    engine = caught_up(store, "audit")
    fmt = "table" if args.text else output.chosen(args)
    if args.list:
        with engine.read("audit") as tx:
            rows = decisions(tx, run_id=args.run, limit=args.limit)
        columns = ["position", "run_id", "command_id", "operation", "slot", "outcome", "reward"]
        output.emit(rows, fmt, columns=columns)
        return 0
    with engine.read("audit") as tx:
        links = (
            audit_model.rejected(tx) if args.rejected else audit_model.trail(tx, args.command_id)
        )
    if not links and not args.rejected:
        raise UsageError(
            f"audit: no command {args.command_id!r} in the log (nor a refusal naming it); "
            "`labledger audit --rejected` lists refused commands"
        )
    if fmt == "table" and not args.rejected:
        for link in links:
            print(_text(link))
    else:
        output.emit(links, fmt)
    return 0


def _signature_text(v: recheck.SignatureCheck) -> str:
    key = f"key {v.key_id} ({v.algorithm}{', ' + v.fingerprint if v.fingerprint else ''})"
    why = f": {v.detail}" if v.detail else ""
    return f"#{v.position:<6} {'signature':<13}{v.status} — {key}{why}"


def _verify(args: argparse.Namespace, store: EventStore) -> int:
    """``--verify``: every recorded command with this id, its signature re-checked."""
    if args.rejected:
        raise UsageError("audit: --verify takes a COMMAND_ID, not --rejected")
    book = KeyBook()
    book.refresh(store)
    ring = KeyRing.from_env()  # only for HMAC commands of older logs; Ed25519 needs none
    found = [
        v
        for v in recheck.check_log(store.read_all(), book, ring)
        if v.command_id == args.command_id
    ]
    if not found:
        raise UsageError(f"audit --verify: no signed command {args.command_id!r} in the log")
    for v in found:
        if args.text:
            print(_signature_text(v))
        else:
            output.json_line({"step": "signature", **msgspec.to_builtins(v)})
    return 1 if any(v.failed for v in found) else 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``audit``."""
    p = sub.add_parser("audit", help="command → verification → effects → report → reward")
    p.add_argument(
        "command_id", nargs="?", metavar="COMMAND_ID", help="the command (`audit --list`)"
    )
    p.add_argument("--rejected", action="store_true", help="list refused commands")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-check COMMAND_ID's signature against the key recorded in the log "
        "(no secret needed; exit 1 on an unknown key or a failed signature)",
    )
    p.add_argument("--list", action="store_true", help="list decisions (command ids)")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="with --list: only this run")
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="with --list: the last N only"
    )
    p.add_argument("--text", action="store_true", help="same as --format table")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_audit)
