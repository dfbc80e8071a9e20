"""The async face of the store (anyio): appends and reads that never block the event loop.

Each call runs the sync API in a worker thread; concurrent ``await append``
calls therefore meet in the store's group commit and share transactions,
and each is answered only after its own durable commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from functools import partial

import anyio
import anyio.to_thread

from labledger.store.base import (
    ANY,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    SupportsNewEvent,
)
from labledger.store.subscribe import subscribe

DEFAULT_CONCURRENCY = 64


class AsyncEventStore:
    """Wraps an :class:`EventStore` for async services.

    Args:
        store: an open store; the wrapper does not close it.
        concurrency: the most calls running in worker threads at once.
    """

    def __init__(self, store: EventStore, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.store = store
        self._limiter = anyio.CapacityLimiter(concurrency)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent | SupportsNewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """As :meth:`EventStore.append`, awaited."""
        call = partial(self.store.append, stream, list(events), expected_version)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def append_many(self, parts: Sequence[StreamAppend]) -> list[AppendResult]:
        call = partial(self.store.append_many, list(parts))
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def read_stream(
        self, stream: str, from_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        call = partial(self.store.read_stream, stream, from_version, limit)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def head(self) -> int:
        return await anyio.to_thread.run_sync(self.store.head, limiter=self._limiter)

    def subscribe(
        self,
        from_position: int = 1,
        *,
        types: Collection[str] | None = None,
        stream_prefix: str = "",
        page_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_position`` and follow live appends (see ``store.subscribe``)."""
        return subscribe(
            self.store,
            from_position,
            types=types,
            stream_prefix=stream_prefix,
            page_size=page_size,
        )
