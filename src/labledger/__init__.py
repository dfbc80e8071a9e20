"""labledger: the event-sourced ledger of an autonomous ML lab.

The store (``open_store``, ``EventStore``…) is imported with the package. The
faces above it load on first use, so ``import labledger`` stays light and torch
is imported only by ``TrainingSetDataset``:

- ``open_lab(url)`` → :class:`Lab`, the read models as pandas DataFrames;
- ``track(url, experiment=…, params=…)`` → :class:`TrackedRun`, your own run,
  and :class:`LedgerCallback`, a Lightning-style callback logging into one;
- ``read_all(store, types=…, run_id=…)`` / ``read_typed(…)`` and
  ``decode_record(record)``: filtered reads and the typed event of a record;
- ``TrainingSetDataset``: the exported Simic training set as a torch Dataset.
"""

from __future__ import annotations

import importlib
from typing import Any

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

_LAZY = {
    "Lab": "labledger.lab.notebook",
    "open_lab": "labledger.lab.notebook",
    "TrackedRun": "labledger.lab.tracking",
    "LedgerCallback": "labledger.lab.tracking",
    "track": "labledger.lab.tracking",
    "read_all": "labledger.ledger",
    "read_typed": "labledger.ledger",
    "decode_record": "labledger.ledger",
    "open_ledger": "labledger.ledger",
    "TrainingSetDataset": "labledger.projections.training_data",
}


def __getattr__(name: str) -> Any:
    """The faces above the store, imported when first named (see the module docstring)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    "Lab",
    "LabledgerError",
    "LedgerCallback",
    "NewEvent",
    "RecordedEvent",
    "SchemaNotInitialized",
    "StoreBusy",
    "StoreUnavailable",
    "StreamAppend",
    "TrackedRun",
    "TrainingSetDataset",
    "UnknownEventType",
    "VerifyReport",
    "WrongExpectedVersion",
    "__version__",
    "decode_record",
    "init_store",
    "open_lab",
    "open_ledger",
    "open_store",
    "read_all",
    "read_typed",
    "track",
]
