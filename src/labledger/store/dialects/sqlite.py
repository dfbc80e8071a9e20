"""SQLite: WAL, synchronous=FULL, one writer at a time through BEGIN IMMEDIATE.

Appends open their transaction with ``BEGIN IMMEDIATE``: a deferred
transaction that reads first and then writes cannot wait on the busy
handler when another writer got there first (SQLite returns SQLITE_BUSY at
once to avoid a deadlock), so racing writers would see "database is
locked" whatever the busy timeout. Taking the write lock up front makes
them queue instead. Readers use plain deferred transactions and never block
writers in WAL mode.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from labledger.errors import LabledgerError, StoreBusy, StoreUnavailable, UsageError
from labledger.store import backup
from labledger.store.base import DiskUsage
from labledger.store.dialects.base import WRITE_OPTION, AppendWaiter, Dialect, Params, RawTxn

POLL_INTERVAL_S = 0.005

BUSY_TIMEOUT_S = 30.0


class SqliteDialect(Dialect):
    name = "sqlite"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        database = make_url(url).database
        if database and database.startswith("file:"):  # URI filenames (mode=ro, immutable=1)
            database = database.removeprefix("file:").split("?")[0]
        self.path = None if database in (None, "", ":memory:") else Path(database)

    def exists(self) -> bool:
        return self.path is None or self.path.exists()

    def anchor_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".anchor")

    def _read_only_connect(self) -> sqlite3.Connection:
        """Audit mode: ``mode=ro`` reads a live store with its WAL; where even that
        cannot work (a read-only mount, no -shm possible) ``immutable=1`` reads the
        file as a frozen copy — right for a copied store, which has no WAL to miss."""
        assert self.path is not None
        args: dict[str, Any] = {
            "uri": True,
            "isolation_level": None,
            "check_same_thread": False,
            "timeout": BUSY_TIMEOUT_S,
        }
        base = f"file:{quote(str(self.path.resolve()))}"
        conn: sqlite3.Connection
        try:
            conn = sqlite3.connect(f"{base}?mode=ro", **args)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn = sqlite3.connect(f"{base}?mode=ro&immutable=1", **args)
        return conn

    def create_engine(self, *, read_only: bool = False) -> Engine:
        options: dict[str, Any] = {}
        if read_only and self.path is not None:
            options["creator"] = self._read_only_connect
        engine = create_engine(
            self.url,
            connect_args={
                "isolation_level": None,  # we issue BEGIN ourselves (see module doc)
                "timeout": BUSY_TIMEOUT_S,
                "check_same_thread": False,
            },
            **options,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not read_only:
                _set_wal(cur)
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def begin(self, driver_connection: Any) -> RawTxn:
        return SqliteTxn(driver_connection)

    def lock_for_append(self, txn: RawTxn) -> None:
        # SQLite has one writer: BEGIN IMMEDIATE takes its lock (see module doc).
        txn.execute("BEGIN IMMEDIATE")

    def read_rows(self, engine: Engine, sql: str, params: Params) -> list[tuple[Any, ...]]:
        raw = engine.raw_connection()
        try:
            db: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
            return db.execute(sql, params).fetchall()
        finally:
            raw.close()

    def is_duplicate_id(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "ll_events.event_id" in str(exc)

    def serialize_side_write(self, conn: Connection) -> None:
        pass  # write transactions begin IMMEDIATE: they already queue (see module doc)

    @contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        # Migrations run in one BEGIN IMMEDIATE transaction (transactional DDL),
        # so a second migrator waits for the first and then finds head.
        yield

    def disk(self, engine: Engine) -> DiskUsage:
        folder = (self.path or Path()).resolve().parent
        return DiskUsage(where=str(folder), free_bytes=shutil.disk_usage(folder).free)

    def backup(self, engine: Engine, tmp: Path) -> dict[str, Any]:
        # VACUUM INTO reads one WAL snapshot; the manifest's facts come from the copy.
        raw = engine.raw_connection()
        try:
            db: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
            db.execute("VACUUM INTO ?", (str(tmp),))  # outside any transaction: autocommit
        finally:
            raw.close()
        copy = create_engine(f"sqlite:///{tmp}")
        try:
            with copy.connect() as conn, conn.begin():
                return backup.facts(conn)
        finally:
            copy.dispose()

    def restore(self, src: Path, manifest: dict[str, Any], *, force: bool) -> None:
        target = self.path
        if target is None:
            raise UsageError("restore needs a SQLite file, not an in-memory database")
        backup.refuse_unless_forced(str(target), _sqlite_events(target), force)
        tmp = backup.temp_beside(target)
        try:
            shutil.copyfile(src, tmp)
            # A stale WAL of the old database would be replayed over the new file.
            for suffix in ("-wal", "-shm", "-journal"):
                target.with_name(target.name + suffix).unlink(missing_ok=True)
            backup.fsync_rename(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def waiter(self, engine: Engine) -> AppendWaiter:
        return SqliteWaiter(engine)

    def translate(self, exc: BaseException) -> LabledgerError | None:
        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        if not isinstance(orig, sqlite3.Error):
            return None
        message = str(orig)
        code = getattr(orig, "sqlite_errorcode", None)
        lowered = message.lower()
        where = self.path or "memory"
        if code == sqlite3.SQLITE_FULL or "full" in lowered:
            return StoreUnavailable(
                f"the disk holding {where} is full ({message}); nothing was written. "
                "Free space and retry."
            )
        if code == sqlite3.SQLITE_BUSY or "locked" in lowered:
            return StoreBusy(
                f"{where} stayed locked by another writer for {BUSY_TIMEOUT_S:.0f}s "
                f"({message}); retry."
            )
        if code == sqlite3.SQLITE_READONLY or "readonly" in lowered or "read-only" in lowered:
            return StoreUnavailable(
                f"{where} is read-only ({message}); nothing was written. "
                "Check file and directory permissions, or use --read-only to audit."
            )
        if (
            "disk i/o error" in lowered
            or "unable to open" in lowered
            or (code is not None and code & 0xFF in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN))
        ):
            return StoreUnavailable(
                f"cannot write or open {where} ({message}): the disk may be full, "
                "missing or failing; nothing was acknowledged."
            )
        if "could not decode" in lowered:
            from labledger.errors import CorruptionDetected

            return CorruptionDetected(
                f"{where} holds text that is not valid UTF-8 ({message}): a damaged record. "
                "Restore from a backup."
            )
        if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            from labledger.errors import CorruptionDetected

            return CorruptionDetected(
                f"{where} is damaged at the storage level ({message}); restore from a backup."
            )
        return None


class SqliteWaiter(AppendWaiter):
    """Cheap change polling: ``PRAGMA data_version`` moves when another connection commits.

    It reads a counter in shared memory, not the database, so polling every
    few milliseconds costs next to nothing.
    """

    def __init__(self, engine: Engine) -> None:
        self._sleep = time.sleep
        self._monotonic = time.monotonic
        self._raw = engine.raw_connection()
        self._version = self._data_version()

    def _data_version(self) -> int:
        cur = self._raw.cursor()
        try:
            cur.execute("PRAGMA data_version")
            row = cur.fetchone()
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def wait(self, timeout: float) -> bool:
        deadline = self._monotonic() + timeout
        while True:
            version = self._data_version()
            if version != self._version:
                self._version = version
                return True
            if self._monotonic() >= deadline:
                return False
            self._sleep(POLL_INTERVAL_S)

    def close(self) -> None:
        self._raw.close()


class SqliteTxn(RawTxn):
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def fetch(self, queries: Sequence[tuple[str, Params]]) -> list[list[tuple[Any, ...]]]:
        return [self.db.execute(sql, params).fetchall() for sql, params in queries]

    def execute(self, sql: str, params: Params = ()) -> int:
        return self.db.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if len(rows) == 1:  # a lone append: execute skips executemany's iterator set-up
            self.db.execute(sql, rows[0])
        else:
            self.db.executemany(sql, rows)

    def any_of(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    def commit(self) -> None:
        self.db.execute("COMMIT")  # durable: WAL + synchronous=FULL

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def _set_wal(cur: sqlite3.Cursor) -> None:
    """Switch to WAL. On a brand-new file several processes may race to do it; the
    switch needs an exclusive lock and can report "locked" without waiting, so retry."""
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or attempt == 99:
                raise
            time.sleep(0.05)


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
