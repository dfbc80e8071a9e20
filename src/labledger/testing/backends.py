"""Fresh, isolated databases for tests, on SQLite files and on PostgreSQL.

PostgreSQL: one database per test session (unique name, dropped at the end),
one schema per store inside it, selected through ``search_path`` in the URL.
Nothing relies on what an earlier run left behind.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from labledger.store.dialects.postgres import normalize_url

PG_ENV = "LABLEDGER_TEST_PG_URL"


class Backend(abc.ABC):
    """What the conformance suite needs from a backend under test."""

    name: str
    capabilities: frozenset[str] = frozenset()

    @abc.abstractmethod
    def fresh_url(self) -> str:
        """The URL of a new, empty database (no schema)."""

    @abc.abstractmethod
    @contextmanager
    def tamper(self, url: str) -> Iterator[sa.Connection]:
        """A raw connection with the append-only guards off, to simulate corruption."""

    def sa_engine(self, url: str) -> sa.Engine:
        """A plain SQLAlchemy engine on ``url`` (PostgreSQL through psycopg 3)."""
        return sa.create_engine(sa_url(url))


class SqliteBackend(Backend):
    name = "sqlite"
    capabilities = frozenset({"file", "multiprocess"})

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def fresh_url(self) -> str:
        return f"sqlite:///{self.directory / f'll-{uuid.uuid4().hex[:12]}.db'}"

    @contextmanager
    def tamper(self, url: str) -> Iterator[sa.Connection]:
        path = url.removeprefix("sqlite:///")
        raw = sqlite3.connect(path)
        triggers = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
        for name, _ in triggers:
            raw.execute(f"DROP TRIGGER {name}")
        raw.commit()
        raw.close()
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            with engine.begin() as conn:
                for _, sql in triggers:
                    conn.exec_driver_sql(sql)
            engine.dispose()


class PostgresBackend(Backend):
    name = "postgresql"
    capabilities = frozenset({"server", "multiprocess", "listen"})

    def __init__(self, server_url: str) -> None:
        self.server_url = sa_url(server_url)
        self.database = f"ll_test_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.database}"')
        admin.dispose()
        base = sa.engine.make_url(self.server_url).set(database=self.database)
        self.database_url = base.render_as_string(hide_password=False)

    def fresh_url(self) -> str:
        schema = f"s_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
        return f"{self.database_url}?options={quote(f'-csearch_path={schema}')}"

    @contextmanager
    def tamper(self, url: str) -> Iterator[sa.Connection]:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                yield conn
        finally:
            engine.dispose()

    def drop(self) -> None:
        admin = sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        admin.dispose()


def sa_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy needs named (``postgresql://`` → psycopg 3)."""
    return normalize_url(url)


def postgres_server_url() -> str | None:
    """The PostgreSQL server to test against, or None when the suite runs SQLite only."""
    return os.environ.get(PG_ENV) or None
