"""Re-checking recorded signatures with no secret: ``verify --signatures``, ``audit --verify``.

Every signed command in the log is checked again against the public key the
log itself records for its key id (:class:`~labledger.security.keybook.KeyBook`).
Nothing is written, so this runs on a read-only copy. Verdicts:

- ``ok`` — an Ed25519 signature that verifies with the registered key;
  ``hmac_ok`` — an HMAC (older logs) that verifies with a secret of the given ring;
- ``unverifiable`` — an HMAC whose secret is not present (reported, not a failure:
  with HMAC only a secret holder can check, which is why #18 moved to Ed25519);
- ``unknown_key`` — an Ed25519 key id the log never registered;
- ``bad_signature`` — the signature does not hold (content or signature altered);
- ``missing_signature`` — a signed command type stored without a signature.

The last three are failures: the log cannot prove who made that decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from labledger.errors import EventDecodeError
from labledger.events import _base as registry
from labledger.events.security import RejectReason, SignedCommand
from labledger.security.keybook import KeyBook
from labledger.security.keyring import ED25519, HMAC, KeyRing
from labledger.security.signing import check_signature, is_ed25519
from labledger.store.base import RecordedEvent

FAILURES = frozenset({"unknown_key", "bad_signature", "missing_signature"})


class SignatureCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one recorded command's signature."""

    position: int
    stream: str
    command_type: str
    command_id: str | None
    key_id: str | None
    algorithm: str | None
    status: str
    detail: str = ""
    fingerprint: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILURES


class _Keys:
    """Registered public keys; HMAC secrets only from a ring the caller chose to give."""

    def __init__(self, book: KeyBook, ring: KeyRing | None) -> None:
        self.book, self.ring = book, ring

    def public_key(self, kid: str) -> bytes | None:
        return self.book.public_key(kid)

    def secret(self, kid: str) -> bytes | None:
        if self.ring is None or self.ring.algorithm(kid) != HMAC:
            return None
        return self.ring.secret(kid)

    def algorithm(self, kid: str) -> str | None:
        return (self.ring.algorithm(kid) if self.ring else None) or self.book.algorithm(kid)


def is_signed_type(type_name: str) -> bool:
    """Whether records of ``type_name`` are signed commands (by the catalog)."""
    return registry.is_known(type_name) and issubclass(
        registry.event_class(type_name), SignedCommand
    )


def check_record(
    record: RecordedEvent, book: KeyBook, ring: KeyRing | None = None
) -> SignatureCheck | None:
    """The verdict on ``record``'s signature; None when it is not a signed command."""
    if not is_signed_type(record.type):
        return None
    if record.schema_version != registry.current_version(record.type):
        why = f"schema v{record.schema_version}: this code re-encodes only the current shape"
        return _unchecked(record, "unverifiable", why)
    try:
        command = registry.decode(record.type, record.schema_version, record.data)
    except EventDecodeError as exc:
        return _unchecked(record, "bad_signature", f"undecodable: {exc}")
    assert isinstance(command, SignedCommand)
    return _verdict(record, command, book, ring)


def _unchecked(record: RecordedEvent, status: str, detail: str) -> SignatureCheck:
    return SignatureCheck(
        position=record.position,
        stream=record.stream,
        command_type=record.type,
        command_id=None,
        key_id=None,
        algorithm=None,
        status=status,
        detail=detail,
    )


def _verdict(
    record: RecordedEvent, command: SignedCommand, book: KeyBook, ring: KeyRing | None
) -> SignatureCheck:
    sec = command.security
    ed25519 = is_ed25519(sec.signature)
    problem = check_signature(command, _Keys(book, ring))
    if problem is None:
        status, detail = ("ok" if ed25519 else "hmac_ok"), ""
    elif problem[0] is RejectReason.UNKNOWN_KEY and not ed25519:
        status, detail = "unverifiable", f"HMAC key {sec.key_id!r} is not in the given key ring"
    else:
        status, detail = problem[0].value, problem[1]
    registered = book.keys.get(sec.key_id)
    return SignatureCheck(
        position=record.position,
        stream=record.stream,
        command_type=record.type,
        command_id=getattr(command, "command_id", None),
        key_id=sec.key_id,
        algorithm=ED25519 if ed25519 else HMAC if sec.signature else None,
        status=status,
        detail=detail,
        fingerprint=registered.fingerprint if registered is not None and ed25519 else None,
    )


def check_log(
    records: Iterable[RecordedEvent], book: KeyBook, ring: KeyRing | None = None
) -> Iterator[SignatureCheck]:
    """The verdict on every signed command among ``records``, in order."""
    for record in records:
        verdict = check_record(record, book, ring)
        if verdict is not None:
            yield verdict


class SignatureReport(msgspec.Struct, kw_only=True):
    """``verify --signatures``: counts by verdict, every failure, and re-bound key ids."""

    commands: int = 0
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    failures: list[SignatureCheck] = msgspec.field(default_factory=list)
    keys_registered: int = 0
    key_conflicts: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.key_conflicts


def report(
    records: Iterable[RecordedEvent], book: KeyBook, ring: KeyRing | None = None
) -> SignatureReport:
    """Check every signed command among ``records`` (registrations come from ``book``)."""
    out = SignatureReport(keys_registered=len(book.keys))
    out.key_conflicts = [
        f"position {p}: key id {e.key_id!r} registered again with another public key "
        f"({e.fingerprint}); the first registration stands"
        for p, e in book.conflicts
    ]
    for verdict in check_log(records, book, ring):
        out.commands += 1
        out.counts[verdict.status] = out.counts.get(verdict.status, 0) + 1
        if verdict.failed:
            out.failures.append(verdict)
    return out
