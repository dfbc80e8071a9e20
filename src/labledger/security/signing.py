"""HMAC-SHA256 signatures over a command's canonical encoding without its signature."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

import msgspec

from labledger.errors import UsageError
from labledger.events.security import CommandSecurity, RejectReason, SignedCommand, signing_bytes
from labledger.security.keyring import KeyRing

DEFAULT_WINDOW = dt.timedelta(seconds=60)


def signature_for(command: SignedCommand, secret: bytes) -> str:
    return hmac.new(secret, signing_bytes(command), hashlib.sha256).hexdigest()


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
    signed_security = msgspec.structs.replace(security, signature=signature_for(unsigned, secret))
    return msgspec.structs.replace(command, security=signed_security)


def check_signature(command: SignedCommand, ring: KeyRing) -> tuple[RejectReason, str] | None:
    """Why the signature does not hold, or None. Freshness and nonces are the store's job."""
    security = command.security
    if not security.signature:
        return RejectReason.MISSING_SIGNATURE, "the command carries no signature"
    secret = ring.secret(security.key_id)
    if secret is None:
        return RejectReason.UNKNOWN_KEY, f"key id {security.key_id!r} is not in the key ring"
    if not hmac.compare_digest(signature_for(command, secret), security.signature):
        return RejectReason.BAD_SIGNATURE, "the HMAC does not match the command's content"
    return None
