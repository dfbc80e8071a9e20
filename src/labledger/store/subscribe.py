"""Subscriptions: catch up from a position, then follow live appends (anyio).

Reading is keyset-paged from the log, so there is no gap and no duplicate:
the next page always starts after the last position delivered, and
positions become visible in commit order (see ``_postgres.py``). Wake-ups
come from PostgreSQL LISTEN/NOTIFY or SQLite's ``data_version`` polling;
a periodic re-read covers a missed wake-up. Back-pressure is the async
iterator itself: the next page is read only when the consumer has taken
the previous one, so a slow consumer holds one page, never a backlog.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

import anyio
import anyio.to_thread

from labledger.store.base import EventStore, RecordedEvent

IDLE_RECHECK_S = 1.0


async def subscribe(
    store: EventStore,
    from_position: int = 1,
    *,
    types: Collection[str] | None = None,
    stream_prefix: str = "",
    page_size: int = 500,
) -> AsyncIterator[RecordedEvent]:
    """Every event with position >= ``from_position`` matching the filters, forever.

    Args:
        store: an open store (SQLite or PostgreSQL).
        from_position: the first position wanted (checkpoint + 1 to resume).
        types: only these event types (None: all).
        stream_prefix: only streams starting with this literal prefix.
        page_size: events read per page (the most held in memory).
    """
    wanted = frozenset(types) if types is not None else None
    position = max(1, from_position)
    waiter = store.waiter()
    try:
        while True:
            page = await anyio.to_thread.run_sync(_page, store, position, page_size)
            for event in page:
                position = event.position + 1
                if wanted is not None and event.type not in wanted:
                    continue
                if not event.stream.startswith(stream_prefix):
                    continue
                yield event
            if len(page) < page_size:
                await anyio.to_thread.run_sync(waiter.wait, IDLE_RECHECK_S, abandon_on_cancel=True)
    finally:
        waiter.close()


def _page(store: EventStore, position: int, size: int) -> list[RecordedEvent]:
    return list(store.read_all(position, batch_size=size, limit=size))
