"""The log: runs, streams, events by position, head, verify, and appending (token)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from fastapi import APIRouter, HTTPException, Path, Query, Request

from labledger import names
from labledger.api import _queries as q
from labledger.api._deps import OBJECT, OBJECTS, Reader, State, Writer, json_response, json_schema
from labledger.api._errors import documented
from labledger.api._guard import BodyTooLarge
from labledger.api._state import ApiState
from labledger.errors import InvalidEvent
from labledger.events.raw import (
    MAX_DOCUMENT_BYTES,
    event_from_json,  # the one parser of JSON events
    parse_json,
)
from labledger.projections.runs import run_rows
from labledger.store import ANY, EXISTS, NO_STREAM, ExpectedVersion, NewEvent, json_object

# Bounds keep every number inside 64 bits, so no driver ever overflows on input.
Position = Annotated[int, Query(ge=0, le=2**62, description="first position wanted")]
Limit = Annotated[int, Query(ge=1, le=q.MAX_PAGE, description="page size")]
# The length rule is the name policy's (256 bytes, labledger.names), which names it; this
# bound only caps the work done on an absurd path.
StreamName = Annotated[str, Path(min_length=1, max_length=4096)]

router = APIRouter(prefix="/api", tags=["log"], responses=documented(401, 503))


@router.get("/head", responses=json_schema(OBJECT))
def head(state: State, _: Reader) -> Any:
    """The last position in the log (0 when empty)."""
    return json_response({"head": state.store.head()})


@router.get("/runs", responses=json_schema(OBJECTS))
def runs(
    state: State,
    _: Reader,
    status: Annotated[str | None, Query(max_length=32)] = None,
    subsystem: Annotated[str | None, Query(max_length=32)] = None,
) -> Any:
    """Runs with status, subsystem, attempt, heartbeats and event counts."""
    with state.read("runs") as tx:
        return json_response(run_rows(tx, status, subsystem))


def _run(state: ApiState, run_id: str) -> dict[str, Any]:
    with state.read("runs") as tx:
        row = q.run_row(tx, run_id)
    if row is None:
        raise HTTPException(404, f"no run {run_id!r} in the log")
    return row


@router.get("/runs/{run_id}", responses=json_schema(OBJECT) | documented(404))
def run_detail(state: State, _: Reader, run_id: Annotated[str, Path(max_length=256)]) -> Any:
    """One run of the ``runs`` read model."""
    return json_response(_run(state, run_id))


@router.get("/runs/{run_id}/events", responses=json_schema(OBJECT) | documented(404))
def run_events(
    state: State,
    _: Reader,
    run_id: Annotated[str, Path(max_length=256)],
    from_position: Position = 0,
    limit: Limit = 100,
    type: Annotated[list[str] | None, Query(max_length=32)] = None,
) -> Any:
    """A run's events (every stream carrying its ``run_id``), paged by position."""
    run = _run(state, run_id)
    events, nxt = q.run_events(state.store, run, from_position, limit, type)
    return json_response({"events": [json_object(e) for e in events], "next_from_position": nxt})


@router.get("/runs/{run_id}/esper", responses=json_schema(OBJECT) | documented(404))
def run_esper(state: State, _: Reader, run_id: Annotated[str, Path(max_length=256)]) -> Any:
    """An Esper run's accuracy and loss per epoch, seed and command markers, field reports."""
    return json_response(q.esper_series(state.store, _run(state, run_id)))


@router.get("/streams", responses=json_schema(OBJECTS))
def streams(state: State, _: Reader, prefix: Annotated[str, Query(max_length=256)] = "") -> Any:
    """Streams whose name starts with ``prefix`` (literal), with version and last position."""
    return json_response(state.store.streams(prefix))


def stream_name(request: Request, decoded: str) -> str:
    """The stream of a ``/api/streams/{stream}/events`` path, decoded strictly from the raw
    path: Starlette's decoding turns bytes that are not UTF-8 into U+FFFD, and a name is
    never rewritten (``labledger.names``, issue #18)."""
    raw: bytes = request.scope.get("raw_path") or b""
    head, tail = b"/api/streams/", b"/events"
    start = raw.find(head)
    if start < 0 or not raw.endswith(tail):
        return names.check_stream(decoded)
    return names.check_stream(names.from_url_path(raw[start + len(head) : -len(tail)]))


@router.get("/streams/{stream:path}/events", responses=json_schema(OBJECT))
def stream_events(
    request: Request,
    state: State,
    _: Reader,
    stream: StreamName,
    from_version: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Limit = 100,
) -> Any:
    """Events of one stream from a version, in version order."""
    events = state.store.read_stream(stream_name(request, stream), from_version, limit)
    nxt = events[-1].stream_version + 1 if len(events) == limit else None
    return json_response({"events": [json_object(e) for e in events], "next_from_version": nxt})


@router.get("/events", responses=json_schema(OBJECT))
def events(
    state: State,
    _: Reader,
    from_position: Position = 1,
    limit: Limit = 100,
) -> Any:
    """The whole log from a position, in position order (one page)."""
    found = list(state.store.read_all(from_position, batch_size=limit, limit=limit))
    nxt = found[-1].position + 1 if len(found) == limit else None
    return json_response({"events": [json_object(e) for e in found], "next_from_position": nxt})


@router.get("/events/{position}", responses=json_schema(OBJECT) | documented(404))
def event(state: State, _: Reader, position: Annotated[int, Path(ge=1, le=2**62)]) -> Any:
    """The event at one position."""
    found = list(state.store.read_all(position, limit=1))
    if not found or found[0].position != position:
        raise HTTPException(404, f"no event at position {position}")
    return json_response(json_object(found[0]))


@router.get("/verify", responses=json_schema(OBJECT))
def verify(state: State, _: Reader) -> Any:
    """A full integrity scan (as ``labledger verify``): ``ok`` false names the first bad
    position. The status is 200 either way; the report says what was found."""
    return json_response(msgspec.to_builtins(state.verify()))


# -- appending -------------------------------------------------------------------

_ENVELOPE = {
    k: {"type": "string", "maxLength": 256}
    for k in ("correlation_id", "causation_id", "run_id", "actor")
}
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "data"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "minLength": 1, "maxLength": 128},
        "data": {"type": "object"},
        "id": {"type": "string", "format": "uuid"},
        "metadata": {"type": "object"},
        "schema_version": {"type": "integer", "minimum": 1, "maximum": 1000},
        **_ENVELOPE,
    },
}
APPEND_BODY = {
    "required": True,
    "description": "One event or an array of events (the CLI's JSON-lines objects), "
    f"at most {MAX_DOCUMENT_BYTES} bytes in all",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [EVENT_SCHEMA, {"type": "array", "minItems": 1, "items": EVENT_SCHEMA}]
            }
        }
    },
}


def parse_expected(value: str) -> ExpectedVersion:
    """``any``, ``no-stream``, ``exists`` or a version number (as the CLI's ``--expect``)."""
    named = {"any": ANY, "no-stream": NO_STREAM, "no_stream": NO_STREAM, "exists": EXISTS}
    if value in named:
        return named[value]
    if value.isascii() and value.isdigit() and len(value) < 19:  # "²".isdigit() is True
        return int(value)
    raise InvalidEvent(
        f"expect={value!r}: use any, no-stream, exists or a version number >= 0 (0-9 digits)"
    )


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise BodyTooLarge(f"the body is over the {MAX_DOCUMENT_BYTES}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_events(raw: bytes, actor: str) -> list[NewEvent]:
    """The events of a POST body (limits of ``events.raw``); ``actor`` fills a missing one."""
    doc = parse_json(raw)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise InvalidEvent("no events: send an event object or a non-empty array")
    parsed = []
    for n, item in enumerate(items):
        try:
            ev = event_from_json(item)
        except InvalidEvent as exc:
            raise InvalidEvent(f"event {n}: {exc}") from exc
        parsed.append(ev if ev.actor else msgspec.structs.replace(ev, actor=actor))
    return parsed


@router.post(
    "/streams/{stream:path}/events",
    status_code=201,
    responses=json_schema(OBJECT, "appended (or already appended: the same ids and content)")
    | documented(403, 409, 422),
    openapi_extra={"requestBody": APPEND_BODY},
)
async def append(
    request: Request,
    state: State,
    key_id: Writer,
    stream: StreamName,
    expect: Annotated[str, Query(max_length=24, description="any|no-stream|exists|N")] = "any",
) -> Any:
    """Append a batch to STREAM atomically (token): the CLI's validation and limits."""
    stream = stream_name(request, stream)
    expected = parse_expected(expect)
    batch = parse_events(await _body(request), f"api:{key_id}")
    started = time.perf_counter()
    result = await anyio.to_thread.run_sync(state.store.append, stream, batch, expected)
    state.metrics.appended_events((e.type for e in batch), time.perf_counter() - started)
    body = {
        "stream": result.stream,
        "first_position": result.first_position,
        "last_position": result.last_position,
        "last_version": result.last_version,
        "already_appended": result.already_appended,
    }
    return json_response(body, 200 if result.already_appended else 201)
