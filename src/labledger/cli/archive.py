"""Backups and portable archives: ``backup``, ``restore``, ``export``, ``import`` (issue #8).

Exit codes as everywhere: 0 ok; 1 integrity (a damaged archive or backup, a
restored store that fails verification); 2 usage (bad selection, a non-empty
restore target without --force, a missing file); 5 store unavailable.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec

from labledger.cli import output
from labledger.cli._progress import ProgressLine
from labledger.security import portable
from labledger.security.keyring import KeyRing
from labledger.store import EventStore, open_store
from labledger.store.archive import export_archive
from labledger.store.backup import backup, restore


def cmd_backup(args: argparse.Namespace, store: EventStore) -> int:
    """``labledger backup DEST``: an online, consistent copy with a manifest beside it."""
    output.json_line(backup(store, Path(args.dest)))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``labledger restore SRC [--force]``: into --db, then verify against the manifest."""
    output.json_line(restore(Path(args.src), args.db, force=args.force))
    return 0


def cmd_export(args: argparse.Namespace, store: EventStore) -> int:
    """``labledger export [--run R | --from P --to Q] --out FILE``."""
    bar = ProgressLine(f"export {args.out}")
    report = export_archive(
        store,
        Path(args.out),
        run_id=args.run,
        from_position=args.from_position,
        to_position=args.to_position,
        include_blobs=not args.no_blobs,
        progress=bar,
    )
    bar.close()
    output.json_line(msgspec.to_builtins(report))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``labledger import FILE``: checked whole, then appended in one transaction.

    Known types are validated by the lab's gate (not strict: other namespaced
    types pass); signed commands are admitted as history when their signature
    verifies against the keys the archive itself records, and refused when
    their nonce is already in the log (see :mod:`labledger.security.portable`).
    """
    gate = portable.import_gate(KeyRing.from_env())
    with open_store(args.db, gate=gate) as store:
        bar = ProgressLine(f"check {args.file}", unit="bytes")
        report = portable.import_verified(store, Path(args.file), gate, progress=bar)
        bar.close()
    output.json_line(msgspec.to_builtins(report))
    return 0


def _position(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a position >= 1")
    return int(value)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``backup``, ``restore``, ``export`` and ``import``."""
    p = sub.add_parser("backup", help="online, consistent backup to DEST (+ DEST.manifest.json)")
    p.add_argument("dest", metavar="DEST", help="the backup file written")
    p.set_defaults(store_handler=cmd_backup)
    p = sub.add_parser("restore", help="restore a backup into --db, then verify it")
    p.add_argument("src", metavar="SRC", help="the backup file read")
    p.add_argument("--force", action="store_true", help="replace a store that holds events")
    p.set_defaults(plain_handler=cmd_restore)
    p = sub.add_parser("export", help="write a portable archive of a run or a position range")
    selection = p.add_mutually_exclusive_group()
    selection.add_argument("--run", metavar="RUN_ID", default=None, help="every event of a run")
    selection.add_argument(
        "--from", dest="from_position", type=_position, metavar="P", help="first position"
    )
    p.add_argument(
        "--to", dest="to_position", type=_position, metavar="Q", default=None, help="last position"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the archive written")
    p.add_argument("--no-blobs", action="store_true", help="leave referenced blobs out")
    p.set_defaults(store_handler=cmd_export)
    p = sub.add_parser("import", help="import an archive: all-or-nothing, idempotent by id")
    p.add_argument("file", metavar="FILE", help="the archive read")
    p.set_defaults(plain_handler=cmd_import)
