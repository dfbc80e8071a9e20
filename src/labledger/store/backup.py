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
import shutil
import sqlite3
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from labledger.errors import CorruptionDetected, StoreUnavailable, UsageError
from labledger.store import migrations
from labledger.store.base import EventStore
from labledger.store.dialects.base import dialect_for
from labledger.store.dialects.postgres import PostgresDialect
from labledger.store.dialects.sqlite import SqliteDialect
from labledger.store.integrity import GENESIS
from labledger.store.sql import SqlEventStore

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(dest: Path) -> Path:
    """Where the manifest of a backup file lives: ``DEST.manifest.json``."""
    return dest.with_name(dest.name + MANIFEST_SUFFIX)


def _facts(conn: Connection) -> dict[str, Any]:
    """Head, hash, counts and revision as one read transaction sees them."""
    row = conn.execute(text("SELECT position, chain FROM ll_events ORDER BY position DESC LIMIT 1"))
    last = row.first()
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
        "schema_revision": migrations.current_revision(conn),
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _temp_beside(path: Path) -> Path:
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
    tmp = _temp_beside(path)
    tmp.write_bytes(json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    fsync_rename(tmp, path)


def _sql_store(store: EventStore) -> SqlEventStore:
    if not isinstance(store, SqlEventStore):
        raise UsageError(f"backups need a SQL store, not a {type(store).__name__}")
    return store


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
    sql = _sql_store(store)
    dest = Path(dest)
    if dest.is_dir() or not dest.parent.is_dir():
        raise UsageError(f"backup destination {dest} must be a file in an existing directory")
    tmp = _temp_beside(dest)
    try:
        if isinstance(sql.dialect, SqliteDialect):
            facts = _backup_sqlite(sql, tmp)
        else:
            facts = _backup_postgres(sql, tmp)
        manifest = {
            "format": "labledger-backup",
            "format_version": MANIFEST_VERSION,
            "source_kind": sql.dialect.name,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "file": dest.name,
            "file_sha256": _sha256_file(tmp),
            **facts,
        }
        fsync_rename(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _write_json(manifest_path(dest), manifest)
    return manifest


def _backup_sqlite(store: SqlEventStore, tmp: Path) -> dict[str, Any]:
    with store._errors():
        raw = store.engine.raw_connection()
        try:
            db: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
            db.execute("VACUUM INTO ?", (str(tmp),))  # outside any transaction: autocommit
        finally:
            raw.close()
    # Read the manifest's facts from the copy itself: it is the snapshot.
    engine = create_engine(f"sqlite:///{tmp}")
    try:
        with engine.connect() as conn, conn.begin():
            return _facts(conn)
    finally:
        engine.dispose()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for pg_dump/psql (password passed in the environment, not argv)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise StoreUnavailable(f"{argv[0]} is not installed; it is needed to {what}")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StoreUnavailable(f"{argv[0]} failed to {what}: {done.stderr.strip()}")


def _backup_postgres(store: SqlEventStore, tmp: Path) -> dict[str, Any]:
    uri, env = _libpq(store.dialect.url)
    with store._errors(), store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            facts = _facts(conn)
            # The exporting transaction stays open until pg_dump has the snapshot.
            argv = [
                "pg_dump",
                f"--dbname={uri}",
                "--format=custom",
                f"--schema={schema}",
                f"--snapshot={snapshot}",
                "--no-owner",
                "--no-privileges",
                f"--file={tmp}",
            ]
            _run_tool(argv, env, f"dump schema {schema}")
    return {**facts, "schema": schema}


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
    if isinstance(dialect, SqliteDialect):
        _restore_sqlite(src, dialect, force=force)
    else:
        assert isinstance(dialect, PostgresDialect)
        _restore_postgres(src, manifest, dialect, force=force)
    return _verify_restored(url, manifest)


def _refuse_unless_forced(target: str, events: int, force: bool) -> None:
    if events and not force:
        raise UsageError(
            f"{target} already holds {events} events; restore into an empty store, "
            "or pass --force to replace it"
        )


def _sqlite_events(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM ll_events").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0  # no labledger schema (or not a database): nothing to lose
    finally:
        conn.close()


def _restore_sqlite(src: Path, dialect: SqliteDialect, *, force: bool) -> None:
    target = dialect.path
    if target is None:
        raise UsageError("restore needs a SQLite file, not an in-memory database")
    _refuse_unless_forced(str(target), _sqlite_events(target), force)
    tmp = _temp_beside(target)
    try:
        shutil.copyfile(src, tmp)
        # A stale WAL of the old database would be replayed over the new file.
        for suffix in ("-wal", "-shm", "-journal"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        fsync_rename(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _pg_target(conn: Connection) -> tuple[str, int]:
    schema = conn.execute(text("SELECT current_schema()")).scalar_one_or_none()
    if schema is None:
        path = str(conn.execute(text("SHOW search_path")).scalar_one())
        schema = path.split(",")[0].strip().strip('"')
    table = conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{schema}".ll_events'}).scalar()
    events = 0
    if table is not None:
        events = int(conn.execute(text(f'SELECT count(*) FROM "{schema}".ll_events')).scalar_one())
    return str(schema), events


def _restore_postgres(
    src: Path, manifest: dict[str, Any], dialect: PostgresDialect, *, force: bool
) -> None:
    engine = dialect.create_engine()
    try:
        with engine.connect() as conn:
            target, events = _pg_target(conn)
            aside = bool(
                conn.execute(
                    text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": manifest["schema"]}
                ).first()
            )
    finally:
        engine.dispose()
    _refuse_unless_forced(f"schema {target}", events, force)
    source = str(manifest["schema"])
    uri, env = _libpq(dialect.url)
    script = _temp_beside(src.with_name(src.name + ".sql"))
    try:
        _run_tool(
            ["pg_restore", "--no-owner", "--no-privileges", f"--file={script}", str(src)],
            env,
            "read the dump",
        )
        wrapper = _temp_beside(script)
        wrapper.write_text(_restore_script(script, source, target, aside and source != target))
        try:
            _run_tool(
                [
                    "psql",
                    f"--dbname={uri}",
                    "--no-psqlrc",
                    "--quiet",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "--single-transaction",
                    f"--file={wrapper}",
                ],
                env,
                "restore the dump",
            )
        finally:
            wrapper.unlink(missing_ok=True)
    finally:
        script.unlink(missing_ok=True)


def _restore_script(script: Path, source: str, target: str, rename_aside: bool) -> str:
    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    parking = q(f"ll_restore_{uuid.uuid4().hex[:12]}")
    lines = [f"DROP SCHEMA IF EXISTS {q(target)} CASCADE;"]
    if rename_aside:
        lines.append(f"ALTER SCHEMA {q(source)} RENAME TO {parking};")
    if source == "public" and not rename_aside and target != "public":
        lines.append("DROP SCHEMA IF EXISTS public CASCADE;")  # recreated by the dump
    lines.append("\\i '" + str(script).replace("'", "''") + "'")
    lines.append("SELECT pg_catalog.set_config('search_path', '', false);")
    if source != target:
        lines.append(f"ALTER SCHEMA {q(source)} RENAME TO {q(target)};")
    if rename_aside:
        lines.append(f"ALTER SCHEMA {parking} RENAME TO {q(source)};")
    return "\n".join(lines) + "\n"


def _verify_restored(url: str, manifest: dict[str, Any]) -> dict[str, Any]:
    with SqlEventStore(url) as restored:
        assert isinstance(restored, SqlEventStore)
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
        if restored.anchor is not None:
            restored.accept_anchor()
    return {
        "target": make_url(url).render_as_string(hide_password=True),
        "head": report.head,
        "head_hash": report.head_hash,
        "events": report.events_checked,
    }
