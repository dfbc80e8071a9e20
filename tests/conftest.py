"""Backends for the whole suite.

PostgreSQL runs when LABLEDGER_TEST_PG_URL is set (``make test`` and CI always
set it). When it is set and the server cannot be reached, the tests FAIL:
a missing required service is an error, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from labledger.testing.backends import (
    PG_ENV,
    Backend,
    PostgresBackend,
    SqliteBackend,
    postgres_server_url,
)


@pytest.fixture(scope="session")
def postgres_backend() -> Iterator[PostgresBackend]:
    url = postgres_server_url()
    if url is None:
        pytest.skip(f"{PG_ENV} is not set: the PostgreSQL half of the suite is off")
    try:
        backend = PostgresBackend(url)
    except sa.exc.OperationalError as exc:
        pytest.fail(f"{PG_ENV}={url} is set but PostgreSQL is unreachable: {exc}")
    yield backend
    backend.drop()


@pytest.fixture(scope="session")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> SqliteBackend:
    return SqliteBackend(Path(tmp_path_factory.mktemp("sqlite")))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Both backends; the contract classes in labledger.testing pick theirs by subclass."""
    fixture = "sqlite_backend" if request.param == "sqlite" else "postgres_backend"
    result: Backend = request.getfixturevalue(fixture)
    return result


@pytest.fixture(autouse=True)
def _own_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A run without a key file now saves one (issue #18): keep it out of the working tree."""
    monkeypatch.setenv("LABLEDGER_KEY_FILE", str(tmp_path_factory.mktemp("keys") / "lab.keys"))
