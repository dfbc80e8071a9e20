"""labledger: the event-sourced ledger of an autonomous ML lab."""

from __future__ import annotations

from labledger.errors import (
    BlobNotFound,
    CommandRejected,
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

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "AppendResult",
    "BlobNotFound",
    "CommandRejected",
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
