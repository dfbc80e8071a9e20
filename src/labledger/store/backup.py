"""Online, consistent backups of a store, and restoring them (issue #8).

``backup(store, dest)`` copies the live store while writers keep appending and
writes ``DEST.manifest.json`` beside the copy: format version, source kind,
head position and head hash (the chain link at the head), event/stream/blob
counts, schema revision, creation time and the SHA-256 of the copy.

Consistency. The head and counts in the manifest describe exactly the copy:

* SQLite: ``VACUUM INTO`` a temporary file beside DEST. VACUUM INTO reads the
  source in one read transaction (a WAL snapshot: writers are not blocked), so
  the copy is a consistent prefix of the log; the manifest is then read *from
  the copy*, never from the live source, and cannot disagree with it.
* PostgreSQL: a REPEATABLE READ transaction exports its snapshot
  (``pg_export_snapshot()``), reads head, hash and counts in it, and stays
  open while ``pg_dump --snapshot=… --format=custom --schema=<current schema>``
  dumps the same snapshot.

Every file is written to a temporary name, fsynced and renamed: a crash never
leaves a partial file under the final name.

Restore refuses a target that holds events unless ``force``; afterwards the
restored store must ``verify`` and its head and hash must equal the manifest.
The head anchor is not part of the backup (its key must never travel with the
data): the restore re-anchors the target at the restored head, which is
sound only because the restored log was just verified against the manifest.

On PostgreSQL a dump restores into the schema of the target URL, whatever the
source schema was called: the dump is replayed by ``psql`` in one transaction
that creates it under its original name and renames it to the target schema.
If a schema of the original name exists in the target database (restoring
beside the source), it is renamed aside within that same transaction and
back before the commit, so other sessions never see it move.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from labledger.errors import CorruptionDetected, UsageError
from labledger.store import schema
from labledger.store.base import EventStore
from labledger.store.dialects.base import dialect_for
from labledger.store.integrity import GENESIS
from labledger.store.sql import SqlEventStore

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(dest: Path) -> Path:
    """Where the manifest of a backup file lives: ``DEST.manifest.json``."""
    return dest.with_name(dest.name + MANIFEST_SUFFIX)


def facts(conn: Connection) -> dict[str, Any]:
    """Head, hash, counts and revision as one read transaction sees them."""
    last = conn.exec_driver_sql(schema.HEAD).first()
    counts = {
        name: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        for name, table in (
            ("events", "ll_events"),
            ("streams", "ll_streams"),
            ("blobs", "ll_blobs"),
        )
    }
    return {
        "head": 0 if last is None else int(last[0]),
        "head_hash": (GENESIS if last is None else bytes(last[1])).hex(),
        "counts": counts,
        "schema_revision": schema.current_revision(conn),
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def temp_beside(path: Path) -> Path:
    """A temporary name beside ``path`` (same directory: the rename stays atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def fsync_rename(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final`` and fsync the directory (durable, atomic)."""
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = temp_beside(path)
    tmp.write_bytes(json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    fsync_rename(tmp, path)


# -- backup -------------------------------------------------------------------------


def backup(store: EventStore, dest: Path) -> dict[str, Any]:
    """Copy a live store to ``dest`` consistently, with ``DEST.manifest.json`` beside it.

    Args:
        store: an open store (writers may keep appending meanwhile).
        dest: the backup file (a SQLite database, or a ``pg_dump`` custom-format archive).

    Returns:
        The manifest that was written.

    Raises:
        UsageError: ``dest`` is a directory or its directory does not exist.
        StoreUnavailable: the copy could not be made (disk, server, missing pg_dump).
    """
    dest = Path(dest)
    if dest.is_dir() or not dest.parent.is_dir():
        raise UsageError(f"backup destination {dest} must be a file in an existing directory")
    tmp = temp_beside(dest)
    try:
        kind, copied = store.copy_into(tmp)
        manifest = {
            "format": "labledger-backup",
            "format_version": MANIFEST_VERSION,
            "source_kind": kind,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "file": dest.name,
            "file_sha256": _sha256_file(tmp),
            **copied,
        }
        fsync_rename(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _write_json(manifest_path(dest), manifest)
    return manifest


# -- restore ------------------------------------------------------------------------


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest beside a backup file, checked against the file's SHA-256.

    Raises:
        UsageError: no backup or no manifest there, or an unknown manifest version.
        CorruptionDetected: the backup file does not match its manifest.
    """
    path = manifest_path(src)
    try:
        manifest: dict[str, Any] = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise UsageError(f"no backup manifest {path}: is {src} a labledger backup?") from exc
    except ValueError as exc:
        raise CorruptionDetected(f"backup manifest {path} is not valid JSON ({exc})") from exc
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise UsageError(f"{path}: unsupported backup format {manifest.get('format_version')!r}")
    if not src.is_file():
        raise UsageError(f"no backup file {src}")
    if _sha256_file(src) != manifest.get("file_sha256"):
        raise CorruptionDetected(f"backup {src} does not match the SHA-256 in its manifest")
    return manifest


def restore(src: Path, url: str, *, force: bool = False) -> dict[str, Any]:
    """Restore the backup ``src`` into the store at ``url``, then verify it.

    Args:
        src: a backup file written by :func:`backup` (its manifest beside it).
        url: the target store (same backend kind as the backup).
        force: replace a target that already holds events.

    Returns:
        ``{"head", "head_hash", "events", "target"}`` of the verified, restored store.

    Raises:
        UsageError: the target holds events and ``force`` is false, or kinds differ.
        CorruptionDetected: the backup or the restored store fails verification.
        StoreUnavailable: the target cannot be written.
    """
    src = Path(src)
    manifest = read_manifest(src)
    dialect = dialect_for(url)
    if manifest.get("source_kind") != dialect.name:
        raise UsageError(
            f"{src} is a {manifest.get('source_kind')} backup and {url} is {dialect.name}; "
            "use `labledger export` / `import` to move a log between backends"
        )
    dialect.restore(src, manifest, force=force)
    return _verify_restored(url, manifest)


def refuse_unless_forced(target: str, events: int, force: bool) -> None:
    if events and not force:
        raise UsageError(
            f"{target} already holds {events} events; restore into an empty store, "
            "or pass --force to replace it"
        )


def _verify_restored(url: str, manifest: dict[str, Any]) -> dict[str, Any]:
    with SqlEventStore(url) as restored:
        report = restored.verify()
        if not report.ok and report.problem is not None and report.problem.value == "anchor":
            # The old anchor described the replaced log; re-anchor after a clean scan.
            restored.accept_anchor()
            report = restored.verify()
        if not report.ok:
            raise CorruptionDetected(
                f"the restored store fails verification: {report.message}",
                report.first_bad_position,
            )
        if (report.head, report.head_hash) != (manifest["head"], manifest["head_hash"]):
            raise CorruptionDetected(
                f"the restored store ends at {report.head} ({report.head_hash}) but the "
                f"manifest says {manifest['head']} ({manifest['head_hash']})"
            )
        if restored.keeps_anchor:
            restored.accept_anchor()
    return {
        "target": make_url(url).render_as_string(hide_password=True),
        "head": report.head,
        "head_hash": report.head_hash,
        "events": report.events_checked,
    }
