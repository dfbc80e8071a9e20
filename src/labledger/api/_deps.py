"""FastAPI dependencies: the app's state and the two access levels (read, write)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from labledger.api._state import ApiState, encode

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="labledgerToken",
    description="KID.HEX, from `labledger serve --print-token` (see docs/api.md)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_state(request: Request) -> ApiState:
    """The running app's :class:`ApiState`."""
    state: ApiState = request.app.state.ledger
    return state


State = Annotated[ApiState, Depends(get_state)]


def _unauthorized(state: ApiState, request: Request, why: str) -> HTTPException:
    if request.method != "GET":
        state.metrics.rejected("unauthorized")
    return HTTPException(401, why, headers={"WWW-Authenticate": 'Bearer realm="labledger"'})


def _key_id(state: ApiState, request: Request, creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None:
        raise _unauthorized(state, request, "a bearer token is required")
    kid = state.auth.key_id(f"{creds.scheme} {creds.credentials}")
    if kid is None:
        raise _unauthorized(state, request, "the bearer token is not valid for this key ring")
    return kid


def require_read(request: Request, state: State, creds: Credentials) -> str | None:
    """Reads are open on a loopback bind; otherwise they need a valid token."""
    if state.open_reads:
        return None
    return _key_id(state, request, creds)


def require_write(request: Request, state: State, creds: Credentials) -> str:
    """Every write needs a valid token; returns its key id."""
    return _key_id(state, request, creds)


Reader = Annotated[str | None, Depends(require_read)]
Writer = Annotated[str, Depends(require_write)]


def json_response(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    """A JSON response encoded by msgspec (the CLI's encoding of structs and payloads)."""
    return Response(encode(obj), status, headers, media_type="application/json")


def json_schema(schema: dict[str, Any], description: str = "OK") -> dict[int | str, Any]:
    """An OpenAPI 200 response with ``schema`` (the body is written by msgspec, not pydantic)."""
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


OBJECT: dict[str, Any] = {"type": "object"}
OBJECTS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
