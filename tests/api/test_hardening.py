"""HTTP hardening (issue #18): the Host allow-list against DNS rebinding, the CSP on
HTML, docs behind the token off loopback, bounded bodies, JSON errors everywhere."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from labledger.api import create_app
from labledger.api._guard import CSP, host_name
from tests.api._lab import ring


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8321", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8321", "[::1]"),
        ("[::1]", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("evil.example:80", "evil.example"),
        ("", ""),
    ],
)
def test_host_name_drops_the_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_rebinding_host_is_refused_on_loopback(ledger_url: str) -> None:
    app = create_app(ledger_url, keyring=ring(), allowed_hosts=["lab.internal"])
    with TestClient(app, base_url="http://localhost") as client:
        for host in ("localhost:8321", "127.0.0.1:8321", "[::1]:8321", "lab.internal"):
            assert client.get("/api/head", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "127.0.0.1.evil.example", "localhost.evil.example", ""):
            r = client.get("/api/head", headers={"Host": host})
            assert (r.status_code, r.json()["error"]) == (421, "HostNotAllowed"), host
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 421


def test_off_loopback_any_host_but_docs_need_the_token(
    ledger_url: str, auth: dict[str, str]
) -> None:
    app = create_app(ledger_url, keyring=ring(), host="0.0.0.0")
    with TestClient(app, base_url="http://lab.example") as client:
        assert client.get("/healthz").status_code == 200  # the one open endpoint
        for path in ("/docs", "/openapi.json", "/redoc", "/api/head"):
            assert client.get(path).status_code in (401, 404), path
        assert client.get("/openapi.json", headers=auth).json()["info"]["title"] == "labledger"
        docs = client.get("/docs", headers=auth)
        assert docs.status_code == 200 and docs.headers["content-security-policy"] == CSP


def test_every_html_page_carries_the_csp_and_json_does_not_need_it(client: TestClient) -> None:
    for path in ("/ui/runs", "/docs"):
        r = client.get(path)
        assert r.headers["content-type"].startswith("text/html"), path
        assert r.headers["content-security-policy"] == CSP, path
    assert "content-security-policy" not in client.get("/api/head").headers


def test_bodies_are_bounded_and_errors_are_json(client: TestClient, auth: dict[str, str]) -> None:
    post = "/api/streams/s/events"
    json_type = auth | {"Content-Type": "application/json"}

    def chunks() -> object:  # no Content-Length: counted as it arrives
        yield b"["
        for _ in range(2000):
            yield b'{"type": "lab.Note", "data": {"x": "' + b"a" * 1000 + b'"}},'
        yield b"{}]"

    streamed = client.post(post, content=chunks(), headers=json_type)  # type: ignore[arg-type]
    assert (streamed.status_code, streamed.json()["error"]) == (413, "BodyTooLarge")
    assert client.get("/api/head").json() == {"head": 0}
    for r, status in [
        (client.get("/api/nowhere"), 404),
        (client.get("/api/events/0"), 422),
        (client.delete("/api/head"), 405),
        (client.post(post, content=b"{}", headers=json_type), 422),
    ]:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["error"] and body["detail"], body


def test_the_api_reference_is_a_page_that_draws_under_the_csp(client: TestClient) -> None:
    """/docs names every operation of /openapi.json and loads no script from elsewhere
    (FastAPI's Swagger page came from a CDN with an inline script: blank under the CSP)."""
    import re

    spec = client.get("/openapi.json").json()
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    html = page.text
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all('src="/static/' in attrs for attrs in scripts), scripts
    operations = [(m, p) for p, item in spec["paths"].items() for m in item]
    assert len(operations) > 5
    for method, path in operations:
        assert f"{method.upper()} {path}" in html, (method, path)
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in html, name
    assert client.get("/redoc").status_code == 404
