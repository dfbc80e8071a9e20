"""The log: append, read, integrity, blobs (DESIGN §2–3)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from labledger.store.base import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    CommandClaim,
    EventStore,
    ExpectedVersion,
    Gate,
    NewEvent,
    NonceStats,
    Problem,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
    StreamState,
    VerifyReport,
)

DEFAULT_URL = "sqlite:///labledger.db"


def default_url() -> str:
    """``LABLEDGER_DB`` if set, else ``./labledger.db``."""
    return os.environ.get("LABLEDGER_DB") or DEFAULT_URL


def open_store(
    url: str | None = None,
    *,
    read_only: bool = False,
    gate: Gate | None = None,
    clock: Callable[[], int] | None = None,
    max_nonces: int | None = None,
) -> EventStore:
    """Open an initialised store (raw: no typed validation unless a ``gate`` is given).

    Raises:
        SchemaNotInitialized: no schema, or not at this code's revision; the
            message names the ``labledger init`` command to run.
        StoreUnavailable: the database cannot be reached.
    """
    from labledger.store.sql import SqlEventStore

    options: dict[str, Any] = {}
    if clock is not None:
        options["clock"] = clock  # nanoseconds since the epoch, like time.time_ns
    if max_nonces is not None:
        options["max_nonces"] = max_nonces
    return SqlEventStore(url or default_url(), read_only=read_only, gate=gate, **options)


def create_database(url: str | None = None) -> bool:
    """Create the PostgreSQL database of ``url`` if the server has none; True if it did."""
    from labledger.store.migrations import create_database as create

    return create(url or default_url())


def init_store(url: str | None = None) -> str:
    """Create or upgrade the schema to head (one migrator at a time). Returns the revision."""
    from labledger.store.migrations import upgrade

    return upgrade(url or default_url())


__all__ = [
    "ANY",
    "DEFAULT_URL",
    "EXISTS",
    "NO_STREAM",
    "AppendResult",
    "CommandClaim",
    "EventStore",
    "ExpectedVersion",
    "Gate",
    "NewEvent",
    "NonceStats",
    "Problem",
    "RecordedEvent",
    "StreamAppend",
    "StreamInfo",
    "StreamState",
    "VerifyReport",
    "create_database",
    "default_url",
    "init_store",
    "open_store",
]
