"""The log: append, read, integrity, blobs (DESIGN §2–3).

Everything the layers above use is re-exported here; the modules below are
the store's own business.
"""

from __future__ import annotations

from labledger.store.base import (
    ANY,
    EXISTS,
    NO_STREAM,
    AnchorStatus,
    AppendResult,
    CommandClaim,
    DiskUsage,
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
from labledger.store.dialects.base import DEFAULT_URL, default_url
from labledger.store.migrations import HEAD_REVISION, create_database, init_store
from labledger.store.schema import json_line, json_object
from labledger.store.sql import SqlEventStore, open_store

__all__ = [
    "ANY",
    "DEFAULT_URL",
    "EXISTS",
    "HEAD_REVISION",
    "NO_STREAM",
    "AnchorStatus",
    "AppendResult",
    "CommandClaim",
    "DiskUsage",
    "EventStore",
    "ExpectedVersion",
    "Gate",
    "NewEvent",
    "NonceStats",
    "Problem",
    "RecordedEvent",
    "SqlEventStore",
    "StreamAppend",
    "StreamInfo",
    "StreamState",
    "VerifyReport",
    "create_database",
    "default_url",
    "init_store",
    "json_line",
    "json_object",
    "open_store",
]
