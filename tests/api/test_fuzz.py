"""Schema-based fuzzing of the API from its own OpenAPI document (issue #9).

Every operation, with generated parameters and bodies: no 5xx ever, and no
write without a token. With the token, appends may be refused (4xx) but
never crash. ``/api/tail`` is left out: without ``limit`` it streams forever
by design (``test_api`` covers it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from labledger.api import api_token, create_app
from labledger.ledger import open_ledger
from labledger.store import init_store
from tests.api._lab import KEY_ID, SECRET, fill_esper, ring

AUTH = {"Authorization": f"Bearer {api_token(KEY_ID, SECRET)}"}
FUZZ = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'fuzz.db'}"
    init_store(url)
    with open_ledger(url, strict=False, keyring=ring()) as store:
        fill_esper(store, ring())
        # schemathesis's ASGI client says Host: testserver, a configured name here
        yield create_app(store=store, keyring=ring(), allowed_hosts=["testserver"])


@pytest.fixture(scope="module")
def operations(app: FastAPI) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/tail")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(op: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str]) -> None:
    @FUZZ
    @given(case=op.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        where = (case.method, case.formatted_path, case.query, str(case.body)[:200])
        assert response.status_code < 500, (*where, response.text[:300])
        if case.method.upper() != "GET" and not headers:
            # refused for want of a token, or as malformed (422) or unroutable (404, e.g. a
            # newline in the stream name) before the token was looked at: never written
            assert response.status_code in (401, 404, 422), where

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing to break in a parameterless operation


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_no_write_without_a_token(
    operations: list[schemathesis.APIOperation], mode: GenerationMode
) -> None:
    assert len(operations) > 20
    head = _head(operations)
    for op in operations:
        _fuzz(op, mode, {})
    assert _head(operations) == head  # nothing was written without a token


def _head(operations: list[schemathesis.APIOperation]) -> int:
    op = next(o for o in operations if o.path == "/api/head")
    return int(op.Case().call().json()["head"])


def test_writes_with_a_token_never_crash(operations: list[schemathesis.APIOperation]) -> None:
    for op in operations:
        if op.method.upper() == "POST":
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(op, mode, AUTH)


BAD_NUMBERS = ["²", "٣", "9" * 5000, "9" * 20, "-1" + "0" * 30, "1e3", "0x10"]
"""Numbers that used to reach int() or a driver: a Unicode digit, an Arabic-Indic digit,
past Python's 4300-digit limit, past 64 bits, in exponent form, in hex (issue #18)."""


def test_bad_numbers_in_every_integer_parameter_get_4xx(app: FastAPI) -> None:
    """Each integer query or path parameter of the OpenAPI document, given each bad number."""
    from fastapi.testclient import TestClient

    spec = app.openapi()
    tried = 0
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        for path, methods in spec["paths"].items():
            for method, op in methods.items():
                for param in op.get("parameters", []):
                    schema = param.get("schema", {})
                    kinds = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
                    if "integer" not in kinds or param["in"] not in ("query", "path"):
                        continue
                    for bad in BAD_NUMBERS:
                        url = _with(path, param, bad)
                        r = client.request(method, url, headers=AUTH)
                        tried += 1
                        assert 400 <= r.status_code < 500, (method, url[:80], r.status_code)
                        assert r.json()["error"], (method, url[:80])
    assert tried > 30


def _with(path: str, param: dict[str, object], value: str) -> str:
    """``path`` with ``value`` in ``param`` (path or query) and every other segment filled."""
    from urllib.parse import quote

    if param["in"] == "path":
        path = path.replace("{" + str(param["name"]) + "}", quote(value))
    filled = re.sub(r"\{[^}]+\}", "1", path)
    if param["in"] == "query":
        filled += f"?{param['name']}={quote(value)}"
    return filled
