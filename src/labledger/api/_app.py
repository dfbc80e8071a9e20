"""The ASGI app: FastAPI routes over one open ledger, the dashboard, metrics, live tail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response

from labledger.api import _dashboard, _dashboard_ops, _live, _routes_log, _routes_models
from labledger.api._auth import Authenticator, is_loopback
from labledger.api._errors import labledger_error
from labledger.api._state import ApiState, encode
from labledger.errors import LabledgerError, UsageError
from labledger.ledger import open_ledger
from labledger.security.keyring import KeyRing
from labledger.store import EventStore

DESCRIPTION = """The event-sourced ledger of an autonomous ML lab, over HTTP.

Reads need no token when the server is bound to loopback; every write, and
every request to a server bound elsewhere, needs `Authorization: Bearer KID.HEX`
(`labledger serve --print-token`). Errors map the CLI's exit codes: 409
conflict, 422 invalid, 403 rejected command, 503 store unavailable, 500
integrity failure. The dashboard is at `/ui/runs`.
"""


def create_app(
    url: str | None = None,
    *,
    store: EventStore | None = None,
    keyring: KeyRing | None = None,
    host: str = "127.0.0.1",
) -> FastAPI:
    """The labledger API and dashboard over one store.

    Args:
        url: the database URL to open (as the CLI's ``--db``); or give ``store``.
        store: an already open ledger (the caller closes it).
        keyring: where tokens come from (default: :meth:`KeyRing.from_env`).
        host: the address the server binds to; reads are open only on loopback.

    Raises:
        UsageError: bound beyond loopback with an empty key ring (no one could
            read), or neither ``url`` nor ``store`` given.
        SchemaNotInitialized, StoreUnavailable: as :func:`labledger.ledger.open_ledger`.
    """
    ring = keyring if keyring is not None else KeyRing.from_env()
    auth = Authenticator(ring)
    if not is_loopback(host) and not auth.has_keys:
        raise UsageError(
            f"serving on {host} needs a key ring for tokens: run `labledger keys new` "
            "or set LABLEDGER_KEYS (or bind to 127.0.0.1)"
        )
    owned = store is None
    if store is None:
        if url is None:
            raise UsageError("create_app needs a url or a store")
        store = open_ledger(url, strict=False, keyring=ring)
    state = ApiState(store, auth, host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            state.close()

    app = FastAPI(title="labledger", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.ledger = state
    app.add_exception_handler(LabledgerError, labledger_error)
    app.middleware("http")(_refuse_nul)
    for module in (_routes_log, _routes_models, _live):
        app.include_router(module.router)
    app.include_router(_routes_models.metrics_router)
    app.add_middleware(_routes_models.HttpMetrics)  # outermost: every status is counted
    app.include_router(_dashboard.router)
    app.include_router(_dashboard_ops.router)
    return app


async def _refuse_nul(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """No database takes NUL in text: refuse it in the path or query up front (422)."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    if "\x00" in request.url.path or "\x00" in unquote(raw) or "%00" in request.url.path:
        body = {"error": "InvalidInput", "detail": "NUL characters are not allowed"}
        return Response(encode(body), 422, media_type="application/json")
    return await call_next(request)
