"""The ASGI app: FastAPI routes over one open ledger, the dashboard, metrics, live tail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from labledger.api import (
    _dashboard,
    _dashboard_ops,
    _docs_page,
    _errors,
    _live,
    _routes_log,
    _routes_models,
)
from labledger.api._auth import Authenticator, is_loopback
from labledger.api._deps import Reader, json_response
from labledger.api._guard import LOOPBACK_NAMES, Guard
from labledger.api._state import ApiState
from labledger.errors import UsageError
from labledger.events.raw import MAX_DOCUMENT_BYTES
from labledger.ledger import open_ledger
from labledger.security.keyring import KeyRing
from labledger.store import EventStore
from labledger.store.subscribe import stop_watching

DESCRIPTION = """The event-sourced ledger of an autonomous ML lab, over HTTP.

Reads need no token when the server is bound to loopback (and then only
requests whose `Host` is localhost, 127.0.0.1, [::1] or a configured name are
answered: 421 otherwise); every write, and every request to a server bound
elsewhere (these docs included; only `/healthz` is open), needs
`Authorization: Bearer KID.HEX` (`labledger serve --print-token`). Errors are
JSON `{"error", "detail"}` and map the CLI's exit codes: 409 conflict, 422
invalid, 413 body too large, 403 rejected command, 503 store unavailable or
too many live tails, 500 integrity failure (`"kind": "integrity"`). The
dashboard is at `/ui/runs`.
"""


def create_app(
    url: str | None = None,
    *,
    store: EventStore | None = None,
    keyring: KeyRing | None = None,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    max_tail_clients: int = _live.DEFAULT_MAX_TAIL_CLIENTS,
    max_body_bytes: int = MAX_DOCUMENT_BYTES,
) -> FastAPI:
    """The labledger API and dashboard over one store.

    Args:
        url: the database URL to open (as the CLI's ``--db``); or give ``store``.
        store: an already open ledger (the caller closes it).
        keyring: where tokens come from (default: :meth:`KeyRing.from_env`).
        host: the address the server binds to; reads are open only on loopback.
        allowed_hosts: Host names answered besides localhost, 127.0.0.1 and [::1]
            on a loopback bind (e.g. the name of a local reverse proxy).
        max_tail_clients: open ``/api/tail`` streams allowed at once (503 above).
        max_body_bytes: the largest request body accepted (413 above).

    Raises:
        UsageError: bound beyond loopback with an empty key ring (no one could
            read), a cap below 1, or neither ``url`` nor ``store`` given.
        SchemaNotInitialized, StoreUnavailable: as :func:`labledger.ledger.open_ledger`.
    """
    ring = keyring if keyring is not None else KeyRing.from_env()
    auth = Authenticator(ring)
    loopback = is_loopback(host)
    if not loopback and not auth.has_keys:
        raise UsageError(
            f"serving on {host} needs a key ring for tokens: run `labledger keys new` "
            "or set LABLEDGER_KEYS (or bind to 127.0.0.1)"
        )
    if max_tail_clients < 1:
        raise UsageError(f"max_tail_clients={max_tail_clients}: allow at least 1 live tail")
    owned = store is None
    if store is None:
        if url is None:
            raise UsageError("create_app needs a url or a store")
        store = open_ledger(url, strict=False, keyring=ring)
    state = ApiState(store, auth, host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        stop_watching(state.store)  # its tails are gone; the watcher thread ends with them
        if owned:
            state.close()

    # Off loopback the spec needs the token like every read (only /healthz is open);
    # /docs is a dashboard page (``_docs_page``), behind the same Reader check.
    spec = "/openapi.json" if loopback else None
    app = FastAPI(
        title="labledger",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        openapi_url=spec,
        redoc_url=None,
    )
    app.state.ledger = state
    app.state.tails = _live.TailSlots(max_tail_clients)
    _errors.install(app)
    hosts = [*LOOPBACK_NAMES, *allowed_hosts] if loopback else None
    app.add_middleware(Guard, allowed_hosts=hosts, max_body=max_body_bytes)
    for module in (_routes_log, _routes_models, _live):
        app.include_router(module.router)
    app.include_router(_routes_models.metrics_router)
    app.add_middleware(_routes_models.HttpMetrics)  # outermost: every status is counted
    app.include_router(_dashboard.router)
    app.include_router(_dashboard_ops.router)
    app.include_router(_docs_page.router)
    if not loopback:
        _spec_behind_token(app)
    return app


def _spec_behind_token(app: FastAPI) -> None:
    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Reader) -> Any:
        return json_response(app.openapi())
