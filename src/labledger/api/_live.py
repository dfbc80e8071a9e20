"""The live tail: server-sent events from a position, backed by the store's subscriptions.

Each event is one SSE message: ``id`` is its position (so a reconnecting
browser sends ``Last-Event-ID`` and resumes after it, with no gap and no
duplicate), ``event`` is its type and ``data`` the event as JSON. A slow
client holds one page of the subscription, never a backlog; a closed
connection cancels the subscription.

What a tail costs while it waits: no thread and no pooled connection (the
store's one change watcher wakes every tail, see ``store.subscribe``). Page
reads share a small thread limiter of their own, so tails can never take all
the worker threads that other endpoints (``/healthz`` among them) run on. The
number of open tails is capped (``max_tail_clients``); above it a new tail
gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from labledger.api._deps import Reader, State
from labledger.api._errors import documented
from labledger.api._state import ApiState, encode
from labledger.errors import StoreBusy
from labledger.store import json_object
from labledger.store.subscribe import subscribe

DEFAULT_MAX_TAIL_CLIENTS = 64
READ_THREADS = 4
"""Worker threads all tails' page reads share (anyio's default pool is 40)."""

router = APIRouter(prefix="/api", tags=["live"], responses=documented(401, 503))


class TailsFull(StoreBusy):
    """More live tails than the server's cap (HTTP 503, Retry-After; the store is fine)."""


class TailSlots:
    """The count of open tails against the cap, and the tails' own thread limiter."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self._lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None

    def reserve(self) -> None:
        """Take a slot, or raise :class:`TailsFull`."""
        with self._lock:
            if self.open >= self.cap:
                raise TailsFull(
                    f"{self.open} live tails are open, the cap of this server "
                    f"(labledger serve --max-tail-clients); retry later"
                )
            self.open += 1

    def release(self) -> None:
        with self._lock:
            self.open -= 1

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Created on first use, inside the server's event loop (anyio needs one)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(READ_THREADS)
        return self._limiter


class _TailResponse(StreamingResponse):
    """A stream that gives its slot back however it ends (done, error, client gone)."""

    def __init__(self, slots: TailSlots, body: AsyncIterator[bytes]) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.release()


async def _messages(
    state: ApiState,
    slots: TailSlots,
    start: int,
    types: list[str] | None,
    prefix: str,
    limit: int | None,
) -> AsyncIterator[bytes]:
    state.metrics.subscriber(+1)
    sent = 0
    try:
        yield b": labledger tail from position %d\n\n" % start
        events = subscribe(
            state.store, start, types=types, stream_prefix=prefix, limiter=slots.limiter
        )
        async with aclosing(events):  # type: ignore[type-var]  # a limit reached closes the subscription now, not at GC
            async for e in events:
                data = encode(json_object(e))
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (e.position, e.type.encode(), data)
                sent += 1
                if limit is not None and sent >= limit:
                    return
    finally:
        state.metrics.subscriber(-1)


def tail_slots(request: Request) -> TailSlots:
    """The app's :class:`TailSlots` (set by ``create_app``)."""
    slots: TailSlots = request.app.state.tails
    return slots


@router.get(
    "/tail",
    response_class=StreamingResponse,
    responses={
        200: {"description": "text/event-stream of events", "content": {"text/event-stream": {}}}
    },
)
async def tail(
    request: Request,
    state: State,
    _: Reader,
    from_position: Annotated[int, Query(ge=1, le=2**62)] = 1,
    type: Annotated[list[str] | None, Query(max_length=32)] = None,
    stream_prefix: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Any:
    """Follow the log from a position (``Last-Event-ID`` resumes after it), filtered by
    types and a stream prefix; ``limit`` ends the stream after that many events.
    503 when the server's cap of open tails is reached."""
    start = from_position
    if last_event_id is not None and last_event_id.isascii() and last_event_id.isdigit():
        start = max(start, min(int(last_event_id) + 1, 2**62))
    slots = tail_slots(request)
    slots.reserve()
    return _TailResponse(
        slots, _messages(state, slots, start, type, prefix=stream_prefix, limit=limit)
    )
