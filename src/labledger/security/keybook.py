"""Public keys recorded in the log (``security.KeyRegistered``), and registering them.

The key book is what verification needs with no secret present: key id → the
public key of its *first* registration. A later registration of the same id
with another public key binds nothing; it is kept as a conflict, so a copy of
the log can report it. Registering needs the private key (the ring), so only
its holder can record a key under its id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from labledger.errors import IdempotencyConflict, UsageError
from labledger.events import _base as registry
from labledger.events.security import KeyAlgorithm, KeyRegistered
from labledger.security import reserved
from labledger.security.keyring import ED25519, KeyRing, fingerprint
from labledger.store.base import EventStore, RecordedEvent

KEYS_STREAM = "security-keys"
GATE_ACTOR = "labledger.gate"
_ID_NAMESPACE = uuid.UUID("5d0f3c1e-8a43-4f7a-9a52-2f6c1b3e7d18")
"""Fixed forever: a registration's event id is uuid5 of it and ``KID/PUBLIC``."""


@dataclass
class KeyBook:
    """Registered public keys by key id, folded from ``security.KeyRegistered`` records."""

    keys: dict[str, KeyRegistered] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    conflicts: list[tuple[int, KeyRegistered]] = field(default_factory=list)
    version: int = -1
    """The last version of :data:`KEYS_STREAM` folded in (-1: none)."""

    def learn(self, event: KeyRegistered, position: int) -> None:
        """Fold one registration (first one wins)."""
        known = self.keys.get(event.key_id)
        if known is None:
            self.keys[event.key_id], self.positions[event.key_id] = event, position
        elif known.public_key != event.public_key:
            self.conflicts.append((position, event))

    def learn_records(self, records: Iterable[RecordedEvent]) -> None:
        """Fold every ``security.KeyRegistered`` among ``records``; others are skipped."""
        for record in records:
            if record.type != KeyRegistered.TYPE:
                continue
            event = registry.decode(record.type, record.schema_version, record.data)
            assert isinstance(event, KeyRegistered)
            self.learn(event, record.position)

    @classmethod
    def of(cls, records: Iterable[RecordedEvent]) -> KeyBook:
        book = cls()
        book.learn_records(records)
        return book

    def refresh(self, store: EventStore) -> None:
        """Fold the registrations appended to ``store`` since the last refresh."""
        records = store.read_stream(KEYS_STREAM, self.version + 1)
        self.learn_records(records)
        if records:
            self.version = records[-1].stream_version

    def public_key(self, kid: str) -> bytes | None:
        event = self.keys.get(kid)
        return bytes.fromhex(event.public_key) if event is not None else None

    def secret(self, kid: str) -> bytes | None:
        return None  # the log holds no secrets

    def algorithm(self, kid: str) -> str | None:
        return ED25519 if kid in self.keys else None


def registration(ring: KeyRing, kid: str, registered_by: str) -> KeyRegistered:
    """The ``security.KeyRegistered`` of ring key ``kid``.

    Raises:
        UsageError: ``kid`` is not an Ed25519 key of the ring.
    """
    public = ring.public_key(kid)
    if public is None:
        raise UsageError(f"key {kid!r} is not an Ed25519 key in the key ring; nothing to register")
    return KeyRegistered(
        key_id=kid,
        algorithm=KeyAlgorithm.ED25519,
        public_key=public.hex(),
        fingerprint=fingerprint(public),
        registered_by=registered_by,
    )


def register_key(
    store: EventStore, ring: KeyRing, kid: str, registered_by: str, book: KeyBook | None = None
) -> KeyRegistered:
    """Record the public half of ring key ``kid`` in ``store``, once.

    Returns:
        The registration in force for ``kid`` (an earlier one with the same key is kept).

    Raises:
        UsageError: ``kid`` is not an Ed25519 ring key, or the log binds ``kid`` to
            another public key (pick another id: ids are never re-bound).
    """
    book = book if book is not None else KeyBook()
    book.refresh(store)
    event = registration(ring, kid, registered_by)
    known = book.keys.get(kid)
    if known is None:
        new = event.to_new_event(
            id=str(uuid.uuid5(_ID_NAMESPACE, f"{kid}/{event.public_key}")), actor=GATE_ACTOR
        )
        try:
            with reserved.as_gate(GATE_ACTOR):
                store.append(KEYS_STREAM, [new])
        except IdempotencyConflict:
            pass  # registered by another process just now (same id, other registered_by)
        book.refresh(store)
        known = book.keys.get(kid)
    if known is None or known.public_key != event.public_key:
        raise UsageError(
            f"key id {kid!r} is registered in this log with another public key "
            f"({known.fingerprint if known else '?'}); make a new key (`labledger keys new`)"
        )
    return known
