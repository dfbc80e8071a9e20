"""The live tail: server-sent events from a position, backed by the store's subscriptions.

Each event is one SSE message: ``id`` is its position (so a reconnecting
browser sends ``Last-Event-ID`` and resumes after it, with no gap and no
duplicate), ``event`` is its type and ``data`` the event as JSON. A slow
client holds one page of the subscription, never a backlog; a closed
connection cancels the subscription.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from labledger.api._deps import Reader, State
from labledger.api._errors import documented
from labledger.api._state import ApiState, encode
from labledger.store import json_object
from labledger.store.subscribe import subscribe

router = APIRouter(prefix="/api", tags=["live"], responses=documented(401, 503))


async def _messages(
    state: ApiState, start: int, types: list[str] | None, prefix: str, limit: int | None
) -> AsyncIterator[bytes]:
    state.metrics.subscriber(+1)
    sent = 0
    try:
        yield b": labledger tail from position %d\n\n" % start
        async for e in subscribe(state.store, start, types=types, stream_prefix=prefix):
            data = encode(json_object(e))
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (e.position, e.type.encode(), data)
            sent += 1
            if limit is not None and sent >= limit:
                return
    finally:
        state.metrics.subscriber(-1)


@router.get(
    "/tail",
    response_class=StreamingResponse,
    responses={
        200: {"description": "text/event-stream of events", "content": {"text/event-stream": {}}}
    },
)
def tail(
    state: State,
    _: Reader,
    from_position: Annotated[int, Query(ge=1, le=2**62)] = 1,
    type: Annotated[list[str] | None, Query(max_length=32)] = None,
    stream_prefix: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Any:
    """Follow the log from a position (``Last-Event-ID`` resumes after it), filtered by
    types and a stream prefix; ``limit`` ends the stream after that many events."""
    start = from_position
    if last_event_id is not None and last_event_id.isdigit():
        start = max(start, int(last_event_id) + 1)
    return StreamingResponse(
        _messages(state, start, type, stream_prefix, limit),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
