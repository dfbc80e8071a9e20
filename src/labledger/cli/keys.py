"""``keys``, ``sign`` and ``catalog``: the key ring and the event catalog (issues #3, #18)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from labledger.cli import output
from labledger.errors import EventDecodeError, InvalidEvent, UsageError
from labledger.events import _base as registry
from labledger.events.catalog import build_catalog, check_catalog, schema_path, write_catalog
from labledger.events.raw import parse_json
from labledger.events.security import SignedCommand
from labledger.security import keyring as keys
from labledger.security.keybook import register_key
from labledger.security.signing import sign


def _key_file(args: argparse.Namespace) -> Path:
    return Path(args.key_file or os.environ.get(keys.KEY_FILE_ENV) or keys.DEFAULT_KEY_FILE)


def cmd_keys(args: argparse.Namespace) -> int:
    path = _key_file(args)
    if args.keys_verb == "new":
        ring = keys.load(path) if path.exists() else keys.KeyRing()
        kid = keys.new_key(ring)
        keys.save(ring, path)
        print(kid)
        print(f"added key {kid} to {path} (mode 0600) and made it active", file=sys.stderr)
    elif args.keys_verb == "register":
        return _register(args)
    else:
        ring = keys.KeyRing.from_env()
        rows = [{"key_id": kid, "active": kid == ring.active} for kid in ring.ids()]
        output.emit(rows, output.chosen(args), columns=["key_id", "active"])
    return 0


def _register(args: argparse.Namespace) -> int:
    """Record the public half of a ring key in the log (``security.KeyRegistered``)."""
    from labledger.ledger import open_ledger

    ring = keys.KeyRing.from_env()
    kid = args.key_id or ring.active
    if kid is None or kid not in ring:
        raise UsageError(f"no key {kid!r} in the key ring: run `labledger keys new`")
    with open_ledger(args.db, strict=False, keyring=ring) as store:
        event = register_key(store, ring, kid, args.by)
    output.json_line(
        {"key_id": event.key_id, "fingerprint": event.fingerprint, "by": event.registered_by}
    )
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """Read one command as a JSON line; print it signed, ready for `labledger append`."""
    doc = parse_json(sys.stdin.buffer.read().strip())
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise InvalidEvent('sign expects one line: {"type": ..., "data": {...}}')
    type_name = doc.get("type")
    if not isinstance(type_name, str) or not registry.is_known(type_name):
        raise InvalidEvent(f"{type_name!r} is not a type in the catalog")
    cls = registry.event_class(type_name)
    if not issubclass(cls, SignedCommand):
        raise InvalidEvent(f"{type_name} is not a signed command type")
    ring = keys.KeyRing.from_env()
    kid = args.key_id or ring.active
    window = dt.timedelta(seconds=args.window)
    data = dict(doc["data"])
    data["security"] = {
        "signature": "",
        "nonce": "pending",
        "key_id": kid or "none",
        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
        "freshness_window": msgspec.json.decode(msgspec.json.encode(window)),
    }
    try:
        command = registry.decode(type_name, cls.VERSION, msgspec.json.encode(data))
    except EventDecodeError as exc:
        raise InvalidEvent(f"{type_name}: {exc}") from exc
    assert isinstance(command, SignedCommand)
    signed = sign(command, ring, key_id=kid, window=window)
    out = {k: v for k, v in doc.items() if k != "data"}
    out["data"] = msgspec.Raw(registry.encode(signed)[2])
    output.json_line(out, sort_keys=True)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    if args.write:
        changed = write_catalog()
        print(f"catalog written ({len(changed)} files changed)", file=sys.stderr)
        return 0
    if args.check:
        problems = check_catalog()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    if args.type:
        if not registry.is_known(args.type):
            raise UsageError(f"{args.type!r} is not in the catalog; `labledger catalog` lists them")
        files = build_catalog()
        output.raw(files[schema_path(registry.event_class(args.type))])
        return 0
    rows = [
        {"type": c.TYPE, "version": c.VERSION, "subsystem": c.SUBSYSTEM, "summary": _summary(c)}
        for c in registry.all_types()
    ]
    output.emit(rows, output.chosen(args), columns=["type", "version", "subsystem", "summary"])
    return 0


def _summary(cls: type[registry.Event]) -> str:
    doc = (cls.__doc__ or "").strip()
    return json.dumps(doc.splitlines()[0])[1:-1] if doc else ""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``keys``, ``sign`` and ``catalog``."""
    p = sub.add_parser(
        "keys", help="manage the command-signing key ring; register a key's public half in the log"
    )
    p.add_argument(
        "keys_verb",
        choices=["new", "list", "register"],
        help="new: add a key; list: the key ids; register: record a key's public half in the log",
    )
    p.add_argument("key_id", nargs="?", default=None, help="register: default the active key")
    p.add_argument("--by", default="cli", help="register: who registers it (recorded)")
    p.add_argument(
        "--key-file", default=None, help="default: $LABLEDGER_KEY_FILE or ./labledger.keys"
    )
    output.add_format(p)
    p.set_defaults(plain_handler=cmd_keys)
    p = sub.add_parser("sign", help="sign one command read from stdin (JSON line)")
    p.add_argument("--key-id", default=None, help="default: the active key")
    p.add_argument("--window", type=float, default=60.0, help="freshness window, seconds")
    p.set_defaults(plain_handler=cmd_sign)
    p = sub.add_parser("catalog", help="list event types, show one schema, or regenerate")
    p.add_argument("type", nargs="?", help="an event type: print its JSON Schema")
    p.add_argument("--write", action="store_true", help="regenerate the top-level events/")
    p.add_argument("--check", action="store_true", help="exit 1 if events/ is out of date")
    output.add_format(p)
    p.set_defaults(plain_handler=cmd_catalog)
