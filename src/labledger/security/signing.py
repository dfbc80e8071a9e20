"""Signatures over a command's canonical encoding without its signature.

New commands are signed with Ed25519 and marked ``ed25519:HEX``; a bare hex
signature is an HMAC-SHA256 of an older log (see ``events.security``). The
mark, not the key, says which check applies, and a key id only ever verifies
the algorithm it was made for, so an Ed25519 seed is never used as an HMAC
secret or the other way round.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Protocol

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from labledger.errors import UsageError
from labledger.events.security import CommandSecurity, RejectReason, SignedCommand, signing_bytes
from labledger.security.keyring import ED25519, KeyRing

DEFAULT_WINDOW = dt.timedelta(seconds=60)
ED25519_MARK = "ed25519:"


class VerifyingKeys(Protocol):
    """Where a verifier finds keys: a :class:`KeyRing`, or public keys from the log."""

    def public_key(self, kid: str) -> bytes | None:
        """The raw Ed25519 public key of ``kid``, or None."""
        ...

    def secret(self, kid: str) -> bytes | None:
        """The HMAC secret of ``kid`` (older logs), or None."""
        ...

    def algorithm(self, kid: str) -> str | None:
        """The algorithm of ``kid``, or None when unknown."""
        ...


def signature_for(command: SignedCommand, secret: bytes) -> str:
    """The HMAC-SHA256 signature of an older log (bare hex)."""
    return hmac.new(secret, signing_bytes(command), hashlib.sha256).hexdigest()


def ed25519_signature(command: SignedCommand, seed: bytes) -> str:
    """The Ed25519 signature of ``command``, marked ``ed25519:HEX``."""
    raw = Ed25519PrivateKey.from_private_bytes(seed).sign(signing_bytes(command))
    return ED25519_MARK + raw.hex()


def is_ed25519(signature: str) -> bool:
    """Whether a stored signature is Ed25519 (else, when not empty, HMAC-SHA256)."""
    return signature.startswith(ED25519_MARK)


def sign(
    command: SignedCommand,
    ring: KeyRing,
    *,
    key_id: str | None = None,
    now: dt.datetime | None = None,
    window: dt.timedelta = DEFAULT_WINDOW,
    nonce: str | None = None,
) -> SignedCommand:
    """A copy of ``command`` with fresh security: nonce, issued_at, window, key id, signature.

    An Ed25519 key signs ``ed25519:HEX``; an HMAC key (older rings) a bare hex HMAC.

    Raises:
        UsageError: no such key (or an empty key ring).
    """
    kid = key_id or ring.active
    secret = ring.secret(kid) if kid else None
    if kid is None or secret is None:
        raise UsageError(f"no signing key {kid!r}: run `labledger keys new` or set LABLEDGER_KEYS")
    security = CommandSecurity(
        signature="",
        nonce=nonce or secrets.token_hex(16),
        issued_at=(now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC),
        freshness_window=window,
        key_id=kid,
    )
    unsigned = msgspec.structs.replace(command, security=security)
    if ring.algorithm(kid) == ED25519:
        signature = ed25519_signature(unsigned, secret)
    else:
        signature = signature_for(unsigned, secret)
    signed_security = msgspec.structs.replace(security, signature=signature)
    return msgspec.structs.replace(command, security=signed_security)


def check_signature(command: SignedCommand, keys: VerifyingKeys) -> tuple[RejectReason, str] | None:
    """Why the signature does not hold, or None. Freshness and nonces are the store's job."""
    security = command.security
    if not security.signature:
        return RejectReason.MISSING_SIGNATURE, "the command carries no signature"
    kid = security.key_id
    if is_ed25519(security.signature):
        public = keys.public_key(kid)
        if public is None:
            return RejectReason.UNKNOWN_KEY, f"key id {kid!r} has no registered Ed25519 public key"
        if not _ed25519_holds(public, security.signature, signing_bytes(command)):
            return RejectReason.BAD_SIGNATURE, f"the Ed25519 signature does not verify with {kid!r}"
        return None
    secret = keys.secret(kid) if keys.algorithm(kid) not in (None, ED25519) else None
    if secret is None:
        return RejectReason.UNKNOWN_KEY, f"key id {kid!r} is not an HMAC key in the key ring"
    if not hmac.compare_digest(signature_for(command, secret), security.signature):
        return RejectReason.BAD_SIGNATURE, "the HMAC does not match the command's content"
    return None


def _ed25519_holds(public: bytes, signature: str, message: bytes) -> bool:
    try:
        raw = bytes.fromhex(signature[len(ED25519_MARK) :])
        Ed25519PublicKey.from_public_bytes(public).verify(raw, message)
    except (ValueError, InvalidSignature):
        return False
    return True
