"""Opening the lab's ledger: the store with the catalog and command security plugged in."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from labledger.errors import UsageError
from labledger.events import Event
from labledger.events.typed import Typed, decode_record, typed
from labledger.security.gate import LabGate
from labledger.security.keyring import KeyRing
from labledger.store import EventStore, RecordedEvent, open_store

__all__ = ["decode_record", "open_ledger", "read_all", "read_typed"]


def open_ledger(
    url: str | None = None,
    *,
    strict: bool = True,
    keyring: KeyRing | None = None,
    read_only: bool = False,
    clock: Callable[[], int] | None = None,
    max_nonces: int | None = None,
) -> EventStore:
    """Open a store that validates known types, verifies signed commands, and (strict)
    refuses unknown types. Keys come from ``keyring`` or the environment/key file.

    Raises:
        SchemaNotInitialized, StoreUnavailable: as :func:`labledger.store.open_store`.
    """
    gate = LabGate(keyring if keyring is not None else KeyRing.from_env(), strict=strict)
    store = open_store(url, read_only=read_only, gate=gate, clock=clock, max_nonces=max_nonces)
    gate.attach(store)  # registered public keys are read from this very log
    return store


def read_all(
    store: EventStore,
    from_position: int = 0,
    *,
    types: Collection[str] | None = None,
    run_id: str | None = None,
    limit: int | None = None,
) -> Iterator[RecordedEvent]:
    """The log from ``from_position``, only events of ``types`` and/or of run ``run_id``.

    A streaming filter over :meth:`EventStore.read_all` (constant memory): it
    reads the whole range and keeps what matches. ``decode_record`` (or
    :func:`read_typed`) turns a record into its typed event.

    Args:
        store: the ledger.
        from_position: the first position read.
        types: event type names to keep (``None``: all).
        run_id: keep only events whose envelope names this run.
        limit: stop after this many matching events.

    Raises:
        UsageError: ``limit`` is negative.
    """
    if limit is not None and limit < 0:
        raise UsageError(f"limit {limit}: must be >= 0")
    wanted = None if types is None else frozenset(types)
    kept = 0
    for record in store.read_all(from_position):
        if limit is not None and kept >= limit:
            return
        if wanted is not None and record.type not in wanted:
            continue
        if run_id is not None and record.run_id != run_id:
            continue
        kept += 1
        yield record


def read_typed(
    store: EventStore,
    from_position: int = 0,
    *,
    types: Collection[str] | None = None,
    run_id: str | None = None,
    limit: int | None = None,
) -> Iterator[Typed[Event]]:
    """As :func:`read_all`, each record decoded (and upcast) into its current event class.

    Yields:
        ``Typed(event, record)``: ``.event`` the msgspec struct, ``.record`` the envelope.

    Raises:
        UnknownEventType, EventDecodeError: a record outside the catalog or malformed.
    """
    yield from typed(read_all(store, from_position, types=types, run_id=run_id, limit=limit))
