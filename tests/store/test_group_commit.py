"""Group commit on SQLite and PostgreSQL (issue #5)."""

from __future__ import annotations

from labledger.testing.group_contract import GroupCommitContract


class TestSqliteGroupCommit(GroupCommitContract):
    backend_fixture = "sqlite_backend"


class TestPostgresGroupCommit(GroupCommitContract):
    backend_fixture = "postgres_backend"
