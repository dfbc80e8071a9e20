"""Backend pairs for the archive tests (issue #8)."""

from __future__ import annotations

import pytest

from labledger.testing.backends import Backend, PostgresBackend, SqliteBackend


@pytest.fixture(params=["sqlite->postgresql", "postgresql->sqlite"])
def pair(
    request: pytest.FixtureRequest,
    sqlite_backend: SqliteBackend,
    postgres_backend: PostgresBackend,
) -> tuple[Backend, Backend]:
    """(source, target) backends, both directions."""
    if request.param.startswith("sqlite"):
        return sqlite_backend, postgres_backend
    return postgres_backend, sqlite_backend
