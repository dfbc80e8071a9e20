"""The store conformance suite on SQLite and PostgreSQL (issue #2)."""

from __future__ import annotations

from labledger.testing.integrity_contract import IntegrityContract, SchemaContract
from labledger.testing.store_contract import AppendContract, BlobContract, ReadContract


class TestSqliteAppend(AppendContract):
    backend_fixture = "sqlite_backend"


class TestPostgresAppend(AppendContract):
    backend_fixture = "postgres_backend"


class TestSqliteRead(ReadContract):
    backend_fixture = "sqlite_backend"


class TestPostgresRead(ReadContract):
    backend_fixture = "postgres_backend"


class TestSqliteBlobs(BlobContract):
    backend_fixture = "sqlite_backend"


class TestPostgresBlobs(BlobContract):
    backend_fixture = "postgres_backend"


class TestSqliteIntegrity(IntegrityContract):
    backend_fixture = "sqlite_backend"


class TestPostgresIntegrity(IntegrityContract):
    backend_fixture = "postgres_backend"


class TestSqliteSchema(SchemaContract):
    backend_fixture = "sqlite_backend"


class TestPostgresSchema(SchemaContract):
    backend_fixture = "postgres_backend"
