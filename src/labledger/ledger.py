"""Opening the lab's ledger: the store with the catalog and command security plugged in."""

from __future__ import annotations

from collections.abc import Callable

from labledger.security.gate import LabGate
from labledger.security.keyring import KeyRing
from labledger.store import EventStore, open_store


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
