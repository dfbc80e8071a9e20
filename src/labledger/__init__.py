"""labledger: the event-sourced ledger of an autonomous ML lab."""

from __future__ import annotations

from labledger._version import __version__
from labledger.errors import (
    BlobNotFound,
    CommandRefused,
    CorruptionDetected,
    EventDecodeError,
    IdempotencyConflict,
    InvalidEvent,
    LabledgerError,
    SchemaNotInitialized,
    StoreBusy,
    StoreUnavailable,
    UnknownEventType,
    WrongExpectedVersion,
)
from labledger.store import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    VerifyReport,
    init_store,
    open_store,
)

__all__ = [
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "AppendResult",
    "BlobNotFound",
    "CommandRefused",
    "CorruptionDetected",
    "EventDecodeError",
    "EventStore",
    "IdempotencyConflict",
    "InvalidEvent",
    "LabledgerError",
    "NewEvent",
    "RecordedEvent",
    "SchemaNotInitialized",
    "StoreBusy",
    "StoreUnavailable",
    "StreamAppend",
    "UnknownEventType",
    "VerifyReport",
    "WrongExpectedVersion",
    "__version__",
    "init_store",
    "open_store",
]
