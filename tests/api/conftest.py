"""Fixtures of the API tests: a fresh ledger per test on both backends, an in-process client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from labledger.api import api_token, create_app
from labledger.ledger import open_ledger
from labledger.store import EventStore, init_store
from labledger.testing.backends import Backend
from tests.api._lab import KEY_ID, SECRET, ring


@pytest.fixture
def ledger_url(backend: Backend) -> str:
    url = backend.fresh_url()
    init_store(url)
    return url


@pytest.fixture
def store(ledger_url: str) -> Iterator[EventStore]:
    with open_ledger(ledger_url, strict=False, keyring=ring()) as s:
        yield s


@pytest.fixture
def client(ledger_url: str) -> Iterator[TestClient]:
    # a loopback server answers only loopback Host names (DNS rebinding, issue #18)
    with TestClient(create_app(ledger_url, keyring=ring()), base_url="http://localhost") as c:
        yield c


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token(KEY_ID, SECRET)}"}
