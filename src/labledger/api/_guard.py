"""The front door: checks every request passes before any route sees it (pure ASGI).

- **Host allow-list on loopback binds.** A loopback server needs no token to
  read, which is only safe while nothing but local processes can reach it. A
  DNS-rebinding page makes the victim's browser send ``Host: evil.example``
  to 127.0.0.1, so on a loopback bind only ``localhost``, ``127.0.0.1``,
  ``[::1]`` and the names configured (``allowed_hosts``) are answered; any
  other Host gets 421 before a route runs. Off loopback every read needs the
  token anyway, so the Host is not what keeps readers out there.
- **No NUL** in the path or query (no database takes NUL in text): 422.
- **Bounded bodies.** A declared ``Content-Length`` over the limit is refused
  with 413 before the body is read; a chunked body is counted as it arrives
  and refused (413) once it passes the limit, so no request holds more than
  the limit in memory.
- **CSP** on every HTML response (``CSP`` below): no inline script runs, so
  an injected ``<script>`` or ``onerror=`` in a page is inert.

It is plain ASGI, not ``BaseHTTPMiddleware``: that one runs the app in a
separate task and copies streaming bodies through a queue, which is what
the live tail must not have between it and its client's disconnect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labledger.api._state import encode
from labledger.errors import UsageError

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class BodyTooLarge(UsageError):
    """A request body over the server's limit (HTTP 413; nothing was read past it)."""

    http_status = 413


def host_name(header: str) -> str:
    """The name part of a Host header, lower-cased, port removed (``[::1]:80`` → ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware applying the checks of the module docstring.

    Args:
        app: the application behind it.
        allowed_hosts: Host names answered, or None to answer any (off loopback).
        max_body: the largest request body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] | None, max_body: int):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, error, detail = refusal
            await _send_json(send, status, {"error": error, "detail": detail})
            return
        await self.app(scope, self._bounded(receive), _with_csp(send))

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed is not None:
            name = host_name(headers.get("host", ""))
            if name not in self.allowed:
                return (
                    421,
                    "HostNotAllowed",
                    f"Host {name[:100]!r} is not served here: a loopback server answers only "
                    "localhost, 127.0.0.1, [::1] and its configured names (--allow-host)",
                )
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope.get("path", "")
        if "\x00" in path or "%00" in path or "\x00" in unquote(query):
            return 422, "InvalidInput", "NUL characters are not allowed"
        length = headers.get("content-length", "")
        if length and not (length.isascii() and length.isdigit() and len(length) < 19):
            return 400, "InvalidInput", "Content-Length is not a byte count"
        if length and int(length) > self.max_body:
            return 413, "BodyTooLarge", f"the body is over the {self.max_body}-byte limit"
        return None

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"the body is over the {self.max_body}-byte limit")
            return message

        return bounded


def _with_csp(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[Any] = list(message.get("headers", []))
            types = [v for k, v in headers if k.lower() == b"content-type"]
            if types and types[0].lower().startswith(b"text/html"):
                headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
        await send(message)

    return sending


async def _send_json(send: Send, status: int, body: dict[str, str]) -> None:
    payload = encode(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
