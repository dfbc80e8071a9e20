"""Driver errors become typed labledger errors, and a failed write loses nothing (issue #2)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from labledger import (
    CorruptionDetected,
    NewEvent,
    StoreBusy,
    StoreUnavailable,
    init_store,
    open_store,
)
from labledger.store.dialects.postgres import PostgresDialect
from labledger.store.dialects.sqlite import SqliteDialect


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("database or disk is full", sqlite3.SQLITE_FULL, StoreUnavailable),
        ("disk I/O error", sqlite3.SQLITE_IOERR_WRITE, StoreUnavailable),
        ("attempt to write a readonly database", sqlite3.SQLITE_READONLY, StoreUnavailable),
        ("unable to open database file", sqlite3.SQLITE_CANTOPEN, StoreUnavailable),
        ("database is locked", sqlite3.SQLITE_BUSY, StoreBusy),
        ("database disk image is malformed", sqlite3.SQLITE_CORRUPT, CorruptionDetected),
        ("file is not a database", sqlite3.SQLITE_NOTADB, CorruptionDetected),
    ],
)
def test_sqlite_error_mapping(message: str, code: int, expected: type[Exception]) -> None:
    wrapped = sa_exc.OperationalError("stmt", {}, _sqlite_error(message, code))
    mapped = SqliteDialect("sqlite:///x.db").translate(wrapped)
    assert type(mapped) is expected
    assert message in str(mapped)


def test_sqlite_leaves_foreign_errors_alone() -> None:
    assert SqliteDialect("sqlite:///x.db").translate(ValueError("nope")) is None


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (psycopg.errors.DiskFull("could not extend file"), StoreUnavailable),
        (psycopg.errors.ReadOnlySqlTransaction("read only"), StoreUnavailable),
        (psycopg.OperationalError("connection refused"), StoreUnavailable),
        (psycopg.errors.DataCorrupted("bad page"), CorruptionDetected),
    ],
)
def test_postgres_error_mapping(orig: Exception, expected: type[Exception]) -> None:
    wrapped = sa_exc.DBAPIError("stmt", {}, orig)
    assert type(PostgresDialect("postgresql://u@h/db").translate(wrapped)) is expected


def test_unavailable_is_a_connection_error() -> None:
    assert issubclass(StoreUnavailable, ConnectionError)


def test_read_only_file_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ro.db"
    init_store(url)
    with open_store(url) as store:
        store.append("s", [NewEvent.from_json("t.T", {})])
    # chattr +i binds root too (plain permissions do not); the directory as well,
    # so SQLite cannot create its -wal and -shm files.
    paths = [tmp_path / "ro.db", tmp_path]
    if subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True).returncode:
        pytest.skip("needs chattr +i (root on a filesystem with the immutable flag)")
    try:
        with pytest.raises(StoreUnavailable, match=r"read-only|open"), open_store(url) as store:
            store.append("s", [NewEvent.from_json("t.T", {})])
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
    with open_store(url) as store:
        assert store.head() == 1 and store.verify().ok


DISK_FULL_WORKER = r"""
import resource, signal, sys
from labledger import NewEvent, StoreUnavailable, open_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of death
store = open_store(sys.argv[1])
store.head()
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
i = 0
try:
    while True:
        store.append("s", [NewEvent.from_json("t.Big", {"i": i, "pad": "x" * 20000})])
        print("ACK", i, flush=True)
        i += 1
except StoreUnavailable as exc:
    print("UNAVAILABLE", exc, flush=True)
"""


@pytest.mark.parametrize("limit_kb", [200, 600, 1500])
def test_disk_full_is_typed_and_loses_no_acknowledged_event(tmp_path: Path, limit_kb: int) -> None:
    url = f"sqlite:///{tmp_path}/full.db"
    init_store(url)
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL_WORKER, url, str(limit_kb * 1024)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    assert lines and lines[-1].startswith("UNAVAILABLE"), done.stderr[-2000:]
    assert "full" in lines[-1] or "disk" in lines[-1]
    acked = {int(line.split()[1]) for line in lines if line.startswith("ACK")}
    with open_store(url) as store:
        report = store.verify()
        assert report.ok, report.message
        stored = [int(e.data.split(b'"i":')[1].split(b",")[0]) for e in store.read_all()]
        assert set(stored) >= acked and len(stored) == len(set(stored))
        store.append("s", [NewEvent.from_json("t.After", {})])  # space is back
        assert store.verify().ok
