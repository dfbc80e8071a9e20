"""How errors reach HTTP clients: status, JSON body and rejection label.

Each error class in ``labledger.errors`` carries its ``http_status`` and its
CLI ``exit_code``; the table below is what they say today (a test pins the mapping).

=====================================================  ======  ========
error                                                  status  CLI exit
=====================================================  ======  ========
WrongExpectedVersion                                   409     3
InvalidEvent, EventDecodeError, IdempotencyConflict,   422     2
UsageError
CommandRefused                                        403     4
StoreUnavailable, SchemaNotInitialized                 503     5
CorruptionDetected                                     500     1
BlobNotFound                                           404     2
BodyTooLarge (``_guard``)                              413     2
TailsFull (``_live``), StoreBusy                       503     5
anything else of ours (e.g. ProjectionError)           500     2
=====================================================  ======  ========

Every error body is JSON with ``error`` and ``detail``: ours, FastAPI's
(``HTTPException``: 401, 404; request validation: 422, ``detail`` a list) and
an unexpected exception (500 ``InternalError``, the traceback only in the
server's log). An integrity failure's body also says ``"kind": "integrity"``
and the ``position`` named, so a client can tell a damaged store from a bug.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from labledger.api._state import ApiState, encode
from labledger.errors import (
    CommandRefused,
    CorruptionDetected,
    EventDecodeError,
    IdempotencyConflict,
    InvalidEvent,
    LabledgerError,
    UsageError,
    WrongExpectedVersion,
)


def http_status(exc: LabledgerError) -> int:
    """The HTTP status of an error: its class's ``http_status`` (``errors.py``)."""
    return exc.http_status


def error_body(exc: LabledgerError) -> dict[str, Any]:
    """The JSON body of an error: its class, its message, and what it carries."""
    body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, WrongExpectedVersion):
        body |= {"stream": exc.stream, "expected": str(exc.expected), "actual": exc.actual}
    elif isinstance(exc, CommandRefused):
        body |= {"reason": exc.reason, "position": exc.position}
    elif isinstance(exc, CorruptionDetected):
        body |= {"kind": "integrity", "position": exc.position}
    return body


def rejection_reason(exc: LabledgerError) -> str:
    """The ``reason`` label of ``labledger_api_rejections_total`` for a refused write."""
    if isinstance(exc, CommandRefused):
        return exc.reason
    if isinstance(exc, WrongExpectedVersion):
        return "conflict"
    if isinstance(exc, IdempotencyConflict):
        return "idempotency_conflict"
    if isinstance(exc, InvalidEvent | EventDecodeError | UsageError):
        return "invalid"
    return "error"


async def labledger_error(request: Request, exc: Exception) -> Response:
    """Exception handler: a LabledgerError as its status and a JSON body."""
    assert isinstance(exc, LabledgerError)
    state: ApiState = request.app.state.ledger
    if request.method == "POST":
        state.metrics.rejected(rejection_reason(exc))
    status = http_status(exc)
    headers = {"Retry-After": "5"} if status == 503 else None
    return Response(encode(error_body(exc)), status, headers, media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    """Exception handler: FastAPI's HTTPException (401, 404, …) with our body shape."""
    assert isinstance(exc, HTTPException)
    name = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(
        exc.status_code, "HTTPError"
    )
    body = {"error": name, "detail": exc.detail}
    return Response(encode(body), exc.status_code, exc.headers, media_type="application/json")


async def invalid_request(request: Request, exc: Exception) -> Response:
    """Exception handler: FastAPI's validation errors, with an ``error`` name added."""
    assert isinstance(exc, RequestValidationError)
    response = await request_validation_exception_handler(request, exc)
    return Response(
        encode(
            {"error": "InvalidInput", "detail": msgspec.json.decode(bytes(response.body))["detail"]}
        ),
        422,
        media_type="application/json",
    )


async def unexpected(request: Request, exc: Exception) -> Response:
    """Exception handler of last resort: a JSON 500 (uvicorn still logs the traceback)."""
    body = {"error": "InternalError", "detail": f"internal error ({type(exc).__name__})"}
    return Response(encode(body), 500, media_type="application/json")


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(LabledgerError, labledger_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


JSON = "application/json"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses."""
    text = {
        401: "no valid bearer token",
        403: "signed command rejected",
        404: "not found",
        409: "expected-version conflict",
        413: "request body too large",
        422: "invalid input",
        500: "integrity failure",
        503: "store unavailable or schema not initialised",
    }
    return {
        s: {
            "description": text[s],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for s in statuses
    }
