"""PostgreSQL through psycopg 3: serialized position assignment, durable commits.

A sequence alone would break the position invariant: transaction A takes
position 10, transaction B takes 11 and commits first; a reader that saw 11
and moved its checkpoint past it would never see 10 when A commits. So every
append first takes a transaction-scoped advisory lock: appenders queue,
position = head + 1 is read under the lock, and the lock is released only
after the commit is visible — a reader that has seen position p can never
later find a new event below p. Group commit (many appends per transaction)
is what buys throughput back, not weaker ordering.

The lock key is derived from the current schema so that several ledgers can
share one database in separate schemas without serializing each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from labledger.errors import (
    CorruptionDetected,
    DatabaseMissing,
    LabledgerError,
    StoreUnavailable,
)
from labledger.store import backup, schema
from labledger.store.base import DiskUsage
from labledger.store.dialects.base import AppendWaiter, Dialect, Params, RawTxn
from labledger.store.planner import Plan

CHANNEL_SQL = "'labledger_' || current_schema()"

APPEND_LOCK = 0x11ED6E  # first half of the advisory key: "labledger appends"
MIGRATE_LOCK = 0x11ED6F  # "labledger migrations"
SIDE_WRITE_LOCK = 0x11ED70  # "labledger read models and checkpoints"


def advisory(function: str) -> str:
    """An advisory-lock call on ``(key, this schema)``; the key is bound as ``?``."""
    return f"SELECT {function}(?, hashtext(current_schema()))"


def normalize_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class PostgresDialect(Dialect):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__(normalize_url(url))

    def exists(self) -> bool:
        return True  # the server says so on connect

    def create_engine(self, *, read_only: bool = False) -> Engine:
        engine = create_engine(self.url, pool_size=8, max_overflow=32)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Durability is not left to the server's default (DESIGN §3.5).
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit = on")
                if read_only:
                    cur.execute("SET default_transaction_read_only = on")
            dbapi_conn.commit()

        return engine

    def create_database(self) -> bool:
        url = make_url(self.url)
        name = url.database or ""
        # CREATE DATABASE runs outside a transaction, from the server's maintenance database.
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                found = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if found is not None:
                    return False
                quoted = conn.dialect.identifier_preparer.quote_identifier(name)
                conn.execute(text(f"CREATE DATABASE {quoted}"))
                return True
        except sa_exc.SQLAlchemyError as exc:
            raise self.translate(exc) or exc from exc
        finally:
            admin.dispose()

    def begin(self, driver_connection: Any) -> RawTxn:
        return PostgresTxn(driver_connection)

    def lock_for_append(self, txn: RawTxn) -> None:
        # Transaction-scoped: released at commit, after the positions are visible.
        # Sent ahead of the transaction's first reads, in their pipeline: the
        # server takes the lock before it evaluates them, and the round trip
        # it would cost alone is saved.
        assert isinstance(txn, PostgresTxn)
        txn.ahead.append((advisory("pg_advisory_xact_lock"), (APPEND_LOCK,)))

    def read_rows(self, engine: Engine, sql: str, params: Params) -> list[tuple[Any, ...]]:
        raw = engine.raw_connection()
        try:
            pg: Any = raw.driver_connection
            # One statement is its own snapshot: in autocommit it is one round trip,
            # where a transaction costs a BEGIN and a ROLLBACK more (a subscriber's
            # wake-up to delivery, issue #19).
            pg.autocommit = True
            try:
                rows: list[tuple[Any, ...]] = pg.execute(_pg(sql), params).fetchall()
            finally:
                if not pg.closed:  # a broken connection keeps its own error
                    pg.autocommit = False
            return rows
        finally:
            raw.close()

    def is_duplicate_id(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation) and (
            exc.diag.constraint_name == "uq_ll_events_event_id"
        )

    @contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        conn.exec_driver_sql(_pg(advisory("pg_advisory_lock")), (MIGRATE_LOCK,))
        conn.commit()
        try:
            yield
        finally:
            conn.rollback()
            conn.exec_driver_sql(_pg(advisory("pg_advisory_unlock")), (MIGRATE_LOCK,))
            conn.commit()

    def serialize_side_write(self, conn: Connection) -> None:
        # READ COMMITTED lets two transactions both find a projection unbuilt and
        # both CREATE its tables (a unique violation in pg_type); SQLite's BEGIN
        # IMMEDIATE queues them, and this lock does the same here until commit.
        conn.exec_driver_sql(_pg(advisory("pg_advisory_xact_lock")), (SIDE_WRITE_LOCK,))

    def snapshot_options(self) -> dict[str, Any]:
        # READ COMMITTED gives each statement its own snapshot: a scan of the log and
        # of the stream index could straddle a commit and disagree.
        return {"isolation_level": "REPEATABLE READ"}

    def disk(self, engine: Engine) -> DiskUsage:
        # Server-side free space is the DBA's to watch; the database's size is ours.
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
        where = make_url(self.url).render_as_string(hide_password=True)
        return DiskUsage(where=where, database_bytes=int(size or 0))

    def backup(self, engine: Engine, tmp: Path) -> dict[str, Any]:
        # pg_dump dumps the snapshot this transaction exported (and holds open meanwhile).
        uri, env = _libpq(self.url)
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                schema = conn.execute(text("SELECT current_schema()")).scalar_one()
                facts = backup.facts(conn)
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
                run_tool(argv, env, f"dump schema {schema}")
        return {**facts, "schema": schema}

    def restore(self, src: Path, manifest: dict[str, Any], *, force: bool) -> None:
        engine = self.create_engine()
        try:
            with engine.connect() as conn:
                target, events = _pg_target(conn)
                aside = bool(
                    conn.execute(
                        text("SELECT 1 FROM pg_namespace WHERE nspname = :n"),
                        {"n": manifest["schema"]},
                    ).first()
                )
        finally:
            engine.dispose()
        backup.refuse_unless_forced(f"schema {target}", events, force)
        source = str(manifest["schema"])
        uri, env = _libpq(self.url)
        script = backup.temp_beside(src.with_name(src.name + ".sql"))
        try:
            run_tool(
                ["pg_restore", "--no-owner", "--no-privileges", f"--file={script}", str(src)],
                env,
                "read the dump",
            )
            wrapper = backup.temp_beside(script)
            wrapper.write_text(_restore_script(script, source, target, aside and source != target))
            try:
                run_tool(
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

    def waiter(self, engine: Engine) -> AppendWaiter:
        return PostgresWaiter(engine)

    def translate(self, exc: BaseException) -> LabledgerError | None:
        import psycopg

        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        where = make_url(self.url).render_as_string(hide_password=True)
        if isinstance(orig, psycopg.errors.DiskFull | psycopg.errors.InsufficientResources):
            return StoreUnavailable(
                f"the PostgreSQL server at {where} is out of space ({orig}); nothing was written."
            )
        if isinstance(orig, psycopg.errors.ReadOnlySqlTransaction):
            return StoreUnavailable(f"{where} is read-only ({orig}); nothing was written.")
        if isinstance(orig, psycopg.errors.DataCorrupted | psycopg.errors.IndexCorrupted):
            return CorruptionDetected(f"{where} reports storage corruption: {orig}")
        name = make_url(self.url).database
        if isinstance(
            orig, psycopg.OperationalError
        ) and f'database "{name}" does not exist' in str(orig):
            return DatabaseMissing(
                f"database {name!r} does not exist on the PostgreSQL server at {where}; "
                f"create it with: labledger --db '{self.url}' init"
            )
        if isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError) or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return StoreUnavailable(
                f"cannot reach PostgreSQL at {where} ({str(orig).strip()}); "
                "is the server running? Nothing was acknowledged."
            )
        return None


class PostgresWaiter(AppendWaiter):
    """LISTEN on the ledger's channel; appends NOTIFY it at commit."""

    def __init__(self, engine: Engine) -> None:
        self._raw = engine.raw_connection()
        self._conn: Any = self._raw.driver_connection
        assert self._conn is not None
        self._conn.autocommit = True
        channel = self._conn.execute(f"SELECT {CHANNEL_SQL}").fetchone()[0]
        self._conn.execute(f'LISTEN "{channel}"')

    def wait(self, timeout: float) -> bool:
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def close(self) -> None:
        self._raw.close()


COPY_FROM = 100
"""Event rows per write from which COPY replaces executemany."""
_COPY_EVENTS = f"COPY ll_events ({schema.ROW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = (
    "int8", "text", "int8", "text", "text", "int4", "int8",
    "text", "text", "text", "text", "bytea", "bytea", "bytea", "bytea",
)  # fmt: skip
"""The binary COPY's type of each column of ``schema.ROW_COLUMNS``: binary rows carry the
bytes as they are, where text COPY spells each bytea out in hex (about 1.8 µs of client CPU
per row of a telemetry packet; issue #19)."""
_NOTIFY = f"SELECT pg_notify({CHANNEL_SQL}, ?)"


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (labledger's SQL has no other ``?`` or ``%``)."""
    return sql.replace("%", "%%").replace("?", "%s")


_EVENT_ARRAYS = tuple(f"{t}[]" for t in _COPY_TYPES)
"""The type of each column of ``schema.ROW_COLUMNS``, as the arrays unnest() reads."""


@lru_cache(maxsize=2)
def _write_sql(with_events: bool) -> str:
    """Insert the events, upsert the stream versions and NOTIFY, as one statement.

    Each column goes as one array parameter through ``unnest``, so the text is the same
    for any number of rows: psycopg parses it once and the server prepares it. A
    ``VALUES`` list of 15 placeholders a row was parsed anew on every append (the
    driver caches no query of more than 50 parameters), about 1.5 ms of client CPU
    per flush of 32 requests (issue #19).
    """
    arrays = ", ".join(f"%b::{t}" for t in _EVENT_ARRAYS)
    events = f"e AS (INSERT INTO ll_events ({schema.ROW_COLUMNS}) SELECT * FROM unnest({arrays})), "
    return (
        "WITH "
        + (events if with_events else "")
        + "s AS (INSERT INTO ll_streams (stream, version, last_position) "
        "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[]) "
        "ON CONFLICT (stream) DO UPDATE SET "
        "version = excluded.version, last_position = excluded.last_position) "
        f"SELECT pg_notify({CHANNEL_SQL}, %s)"
    )


_SINGLE_WRITE = (
    f"WITH e AS (INSERT INTO ll_events ({schema.ROW_COLUMNS}) "
    f"VALUES ({', '.join(f'%b::{t}' for t in _COPY_TYPES)})), "
    "s AS (INSERT INTO ll_streams (stream, version, last_position) VALUES (%s, %s, %s) "
    "ON CONFLICT (stream) DO UPDATE SET "
    "version = excluded.version, last_position = excluded.last_position) "
    f"SELECT pg_notify({CHANNEL_SQL}, %s)"
)
"""``_write_sql(True)`` for the most common plan, one event of one stream, with scalar
parameters: psycopg dumps a one-element array for about twice the client CPU of its
value (about 170 µs an append here; issue #19), and 19 parameters stay in its query
cache."""


class PostgresTxn(RawTxn):
    """Reads go out pipelined: the head, the stream versions and the nonces cost one
    round trip, not one each."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg
        self.ahead: list[tuple[str, Params]] = []
        """Statements (the append lock) to send ahead of the next one, in its round trip."""

    def fetch(self, queries: Sequence[tuple[str, Params]]) -> list[list[tuple[Any, ...]]]:
        ahead, self.ahead = self.ahead, []
        with self.pg.pipeline():
            for sql, params in ahead:
                self.pg.execute(_pg(sql), params)
            cursors = [self.pg.execute(_pg(sql), params) for sql, params in queries]
        return [cur.fetchall() for cur in cursors]

    def _send_ahead(self) -> None:
        ahead, self.ahead = self.ahead, []
        for sql, params in ahead:
            self.pg.execute(_pg(sql), params)

    def execute(self, sql: str, params: Params = ()) -> int:
        self._send_ahead()
        return int(self.pg.execute(_pg(sql), params).rowcount)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._send_ahead()
        if sql == schema.INSERT and len(rows) >= COPY_FROM:
            # Large batches of events go in by COPY: one stream of rows instead of
            # a statement each (constraints and triggers apply as for INSERT).
            with self.pg.cursor() as cur, cur.copy(_COPY_EVENTS) as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            return
        with self.pg.cursor() as cur:
            cur.executemany(_pg(sql), rows)

    def write(self, planned: Plan, now_us: int, max_nonces: int) -> None:
        """Write the plan and COMMIT in one round trip and two statements.

        A single append used to cost five round trips and six statements after
        its reads (INSERT, stream UPSERT, NOTIFY and COMMIT, each executemany
        syncing on its own), and on this driver every statement costs tens of
        microseconds of client CPU. Here the rows, the stream versions and
        the NOTIFY are one statement (data-modifying CTEs), pipelined with the
        COMMIT: the commit is durable when this returns (``commit`` then finds
        nothing to do). An error (a reused event id) is raised at that sync
        and the transaction rolls back as before. Nonces need the DELETE's row
        count, so plans with signed commands keep the plain path; large
        batches still go in by COPY first, which a pipeline cannot carry.
        """
        rows = planned.rows
        if planned.nonces or not rows:
            super().write(planned, now_us, max_nonces)
            return
        self._send_ahead()
        sql, params = self._write_statement(rows, planned.versions)
        with self.pg.pipeline():
            self.pg.execute(sql, params)
            self.pg.commit()

    def _write_statement(
        self, rows: Sequence[Params], versions: dict[str, tuple[int, int]]
    ) -> tuple[str, list[Any]]:
        """The one statement of ``write`` (COPY, first, of a large batch's events)."""
        notify = str(rows[-1][schema.POSITION])
        if len(rows) == 1:
            ((stream, (version, position)),) = versions.items()
            return _SINGLE_WRITE, [*rows[0], stream, version, position, notify]
        inline = len(rows) < COPY_FROM
        if not inline:
            self.executemany(schema.INSERT, rows)
        params: list[Any] = [list(column) for column in zip(*rows, strict=True)] if inline else []
        params += [
            list(versions),
            [v for v, _ in versions.values()],
            [p for _, p in versions.values()],
            notify,
        ]
        return _write_sql(inline), params

    def any_of(self, column: str) -> str:
        return f"{column} = ANY(?)"

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def commit(self) -> None:
        self.pg.commit()  # durable: synchronous_commit=on

    def rollback(self) -> None:
        self.pg.rollback()

    def notify_appended(self, head: int) -> None:
        # Delivered at commit, only if the transaction commits.
        self.execute(_NOTIFY, (str(head),))


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for pg_dump/psql (password passed in the environment, not argv)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise StoreUnavailable(f"{argv[0]} is not installed; it is needed to {what}")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StoreUnavailable(f"{argv[0]} failed to {what}: {done.stderr.strip()}")


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
