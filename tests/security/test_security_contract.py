"""Signed commands, the nonce ledger and typed events on SQLite and PostgreSQL (issue #3)."""

from __future__ import annotations

from labledger.testing.security_contract import (
    CommandSecurityContract,
    RawInputContract,
    TypedEventsContract,
)


class TestSqliteCommandSecurity(CommandSecurityContract):
    backend_fixture = "sqlite_backend"


class TestPostgresCommandSecurity(CommandSecurityContract):
    backend_fixture = "postgres_backend"


class TestSqliteTypedEvents(TypedEventsContract):
    backend_fixture = "sqlite_backend"


class TestPostgresTypedEvents(TypedEventsContract):
    backend_fixture = "postgres_backend"


class TestSqliteRawInput(RawInputContract):
    backend_fixture = "sqlite_backend"


class TestPostgresRawInput(RawInputContract):
    backend_fixture = "postgres_backend"
