"""The lab's gate on append: catalog validation, strict mode, and signed-command checks.

Known types are validated against the catalog and stored canonically; in
strict mode (the lab's default) an unknown type is refused, otherwise any
well-formed namespaced name is accepted. Signed commands have their
signature checked here, before the transaction; freshness and the nonce
ledger are checked by the store inside it. A refused command becomes a
``security.CommandRejected`` record in :data:`REJECTIONS_STREAM` — reason,
digest of what was submitted, key id; never the secret.

An Ed25519 signature is checked against the public key registered in the log
(``security.KeyRegistered``, see :mod:`labledger.security.keybook`), and its key
must be trusted (:meth:`KeyRing.trusts`): registered but untrusted is refused as
``unknown_key``. A key of the gate's own ring that is not registered yet is
registered on its first use: the gate holds the private key, so it may. An HMAC
signature (older logs) is checked with the ring's secret, as before #18.
Reserved namespaces (:mod:`labledger.security.reserved`) are refused in
:meth:`LabGate.admit`.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import msgspec

from labledger.errors import EventDecodeError, InvalidEvent
from labledger.events import _base as registry
from labledger.events.raw import MAX_DOCUMENT_BYTES, parse_json
from labledger.events.security import (
    CommandRejected,
    RejectReason,
    SignedCommand,
)
from labledger.security import reserved
from labledger.security.keybook import GATE_ACTOR, KeyBook, register_key
from labledger.security.keyring import ED25519, HMAC, KeyRing
from labledger.security.signing import check_signature, is_ed25519
from labledger.store.base import CommandClaim, EventStore, NewEvent

REJECTIONS_STREAM = "security-rejections"
__all__ = ["GATE_ACTOR", "REJECTIONS_STREAM", "GateKeys", "LabGate"]


class GateKeys:
    """What the gate verifies with: registered public keys, and the ring's HMAC secrets."""

    def __init__(self, ring: KeyRing, book: KeyBook) -> None:
        self.ring, self.book = ring, book

    def public_key(self, kid: str) -> bytes | None:
        return self.book.public_key(kid)

    def secret(self, kid: str) -> bytes | None:
        return self.ring.secret(kid) if self.ring.algorithm(kid) == HMAC else None

    def algorithm(self, kid: str) -> str | None:
        return self.ring.algorithm(kid) or self.book.algorithm(kid)


class LabGate:
    """A :class:`labledger.store.base.Gate` for the lab's catalog and key ring."""

    def __init__(self, keyring: KeyRing, *, strict: bool = True) -> None:
        self.keyring = keyring
        self.strict = strict
        self.book = KeyBook()
        self.store: EventStore | None = None

    def attach(self, store: EventStore) -> None:
        """The store whose log holds the registered keys (``open_ledger`` attaches it)."""
        self.store = store

    def admit(self, stream: str, event: NewEvent) -> None:
        """Refuse reserved namespaces (``labledger.security.reserved``); nothing is written."""
        reserved.check(stream, event.type, event.run_id)

    def prepare(
        self, event: NewEvent, *, typed: bool = False
    ) -> tuple[NewEvent, CommandClaim | None]:
        size = len(event.data) + len(event.metadata)
        if size > MAX_DOCUMENT_BYTES:  # refused before any decoding
            raise InvalidEvent(
                f"{event.type}: {size} bytes of data and metadata; the limit is "
                f"{MAX_DOCUMENT_BYTES}. Store large artifacts as blobs and reference their sha256."
            )
        _check_object("metadata", event.type, event.metadata)
        if not registry.is_known(event.type):
            if self.strict:
                raise InvalidEvent(
                    f"unknown event type {event.type!r}: this store is strict (the lab's "
                    "default); see `labledger catalog` for the known types"
                )
            registry.check_type_name(event.type)
            _check_object("data", event.type, event.data)
            return event, None
        cls = registry.event_class(event.type)
        if issubclass(cls, SignedCommand) and event.schema_version == cls.VERSION:
            return self._prepare_command(event, cls)
        if typed and event.schema_version == cls.VERSION:
            return event, None  # encoded by its class just now: validated and canonical
        return self._validated(event), None

    def _validated(self, event: NewEvent) -> NewEvent:
        current = registry.current_version(event.type)
        try:
            if event.schema_version == current:
                data = registry.validate_payload(event.type, event.data)
                # Already canonical (the common case): the same event, no copy.
                return event if data == event.data else msgspec.structs.replace(event, data=data)
            registry.decode(event.type, event.schema_version, event.data)  # old shapes: as stored
        except EventDecodeError as exc:
            raise InvalidEvent(f"{event.type} v{event.schema_version}: {exc}") from exc
        return event

    def _prepare_command(
        self, event: NewEvent, cls: type[registry.Event]
    ) -> tuple[NewEvent, CommandClaim | None]:
        if _lacks_security(event.data):
            claim = CommandClaim(
                nonce=None,
                key_id=None,
                issued_at_us=0,
                window_us=0,
                refusal=(RejectReason.MISSING_SIGNATURE.value, "no security block"),
            )
            return event, claim
        event = self._validated(event)
        command = registry.decode(event.type, event.schema_version, event.data)
        assert isinstance(command, SignedCommand)
        sec = command.security
        problem = self._check(command)
        claim = CommandClaim(
            nonce=sec.nonce,
            key_id=sec.key_id,
            issued_at_us=_micros(sec.issued_at),
            window_us=int(sec.freshness_window.total_seconds() * 1_000_000),
            refusal=None if problem is None else (problem[0].value, problem[1]),
        )
        return event, claim

    def _check(self, command: SignedCommand) -> tuple[RejectReason, str] | None:
        kid = command.security.key_id
        ed25519 = is_ed25519(command.security.signature)
        if ed25519 and self.book.public_key(kid) is None and self.store is not None:
            self.book.refresh(self.store)
            mine = self.keyring.algorithm(kid) == ED25519 and self.keyring.trusts(kid)
            if self.book.public_key(kid) is None and mine:
                register_key(self.store, self.keyring, kid, GATE_ACTOR, self.book)
        problem = check_signature(command, GateKeys(self.keyring, self.book))
        if problem is None and not self.keyring.trusts(kid):
            return RejectReason.UNKNOWN_KEY, f"key id {kid!r} is not in this gate's trust list"
        return problem

    def rejection(
        self, event: NewEvent, claim: CommandClaim, reason: str, detail: str
    ) -> tuple[str, NewEvent]:
        record = CommandRejected(
            command_type=event.type,
            command_id=_command_id(event.data),
            reason=RejectReason(reason),
            command_digest=hashlib.sha256(event.data).hexdigest(),
            key_id=claim.key_id,
            nonce=claim.nonce,
            detail=detail[:500],
        )
        new = record.to_new_event(
            id=str(uuid.uuid4()),
            correlation_id=event.correlation_id,
            causation_id=event.id,
            run_id=event.run_id,
            actor=GATE_ACTOR,
        )
        return REJECTIONS_STREAM, new


def _check_object(name: str, type_name: str, raw: bytes) -> None:
    """Untyped payloads still carry well-formed JSON objects, under the documented limits."""
    if raw == b"{}":
        return
    try:
        doc = parse_json(raw)
    except InvalidEvent as exc:
        raise InvalidEvent(f"{type_name}: {name}: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent(f"{type_name}: {name} must be a JSON object")


def _micros(moment: object) -> int:
    import datetime as dt

    assert isinstance(moment, dt.datetime)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _payload(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _lacks_security(data: bytes) -> bool:
    doc = _payload(data)
    return isinstance(doc, dict) and not isinstance(doc.get("security"), dict)


def _command_id(data: bytes) -> str | None:
    doc = _payload(data)
    value = doc.get("command_id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None
