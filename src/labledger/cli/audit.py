"""``audit COMMAND_ID`` / ``audit --rejected``: command → verification → effects → report → reward.

The ``audit`` read model is caught up first; each link is a JSON line, or with
``--text`` a line for people. ``audit --verify COMMAND_ID`` re-checks the
command's signature against the public key the log records for its key id,
reading the log only (no read model, no secret: it runs on a read-only copy);
exit 1 when the key is unknown or the signature fails.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from labledger.cli import output
from labledger.cli._engine import caught_up
from labledger.errors import UsageError
from labledger.projections import audit as audit_model
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
    """The chain of one command, or (``--rejected``) every refused command."""
    if args.rejected == (args.command_id is not None):
        raise UsageError("audit: give a COMMAND_ID or --rejected (not both)")
    if args.verify:
        return _verify(args, store)
    engine = caught_up(store, "audit")
    with engine.read("audit") as tx:
        links = (
            audit_model.rejected(tx) if args.rejected else audit_model.trail(tx, args.command_id)
        )
    if not links and not args.rejected:
        raise UsageError(
            f"audit: no command {args.command_id!r} in the log (nor a refusal naming it); "
            "`labledger audit --rejected` lists refused commands"
        )
    if args.text and not args.rejected:
        for link in links:
            print(_text(link))
    else:
        output.json_lines(links)
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
    p.add_argument("command_id", nargs="?", metavar="COMMAND_ID")
    p.add_argument("--rejected", action="store_true", help="list refused commands")
    p.add_argument("--text", action="store_true", help="one readable line per link")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-check COMMAND_ID's signature against the key recorded in the log "
        "(no secret needed; exit 1 on an unknown key or a failed signature)",
    )
    p.set_defaults(store_handler=cmd_audit)
