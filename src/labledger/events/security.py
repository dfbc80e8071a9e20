"""Command security: the signed envelope of a command, the keys, and the verdicts on it.

The signature covers the canonical encoding of the command with
``security.signature`` set to ``""`` (:func:`signing_bytes`). It is marked by
its algorithm: ``ed25519:HEX`` is an Ed25519 signature (issue #18), checked
against the public key a :class:`KeyRegistered` recorded in the log, so anyone
can re-check it with no secret; a bare ``HEX`` is an HMAC-SHA256 (logs written
before #18), checkable only where its secret is present. Signing and
verification live in ``labledger.security``; this module only defines the
shapes. A rejected command is not appended; a :class:`CommandRejected` is,
carrying the reason, the digest of what was submitted and the key id — never
the secret.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import msgspec

from labledger.events._base import Event, Record, canonical_bytes
from labledger.events._types import Name, Sha256, Text, TypeName

MAX_FRESHNESS_WINDOW = dt.timedelta(days=1)

Signature = Annotated[
    str,
    msgspec.Meta(
        max_length=512,
        description="'ed25519:HEX' (Ed25519) or bare HEX (HMAC-SHA256, older logs); "
        "empty while signing or unsigned.",
    ),
]
UtcDateTime = Annotated[dt.datetime, msgspec.Meta(tz=True, description="A UTC timestamp.")]


class CommandSecurity(Record, frozen=True, kw_only=True):
    """The signed part of a command.

    ``issued_at`` must be UTC (a fixed offset would give the same instant other
    bytes, and so another signature); ``freshness_window`` must be positive and
    at most a day.
    """

    signature: Signature
    nonce: Name
    issued_at: UtcDateTime
    freshness_window: dt.timedelta
    key_id: Name

    def __post_init__(self) -> None:
        if self.issued_at.utcoffset() != dt.timedelta(0):
            raise ValueError("issued_at must be in UTC")
        if not dt.timedelta(0) < self.freshness_window <= MAX_FRESHNESS_WINDOW:
            raise ValueError("freshness_window must be positive and at most one day")


class RejectReason(enum.StrEnum):
    """Why a command was refused at append."""

    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    FUTURE = "future"
    REPLAYED_NONCE = "replayed_nonce"
    UNKNOWN_KEY = "unknown_key"
    MALFORMED = "malformed"


class CommandAccepted(Event, frozen=True, kw_only=True):
    """A signed command passed verification and was appended."""

    TYPE = "security.CommandAccepted"
    VERSION = 1
    SUBSYSTEM = "security"

    command_type: TypeName
    command_id: Name
    command_digest: Sha256
    """SHA-256 of the command's canonical payload as appended."""
    key_id: Name
    nonce: Name


class CommandRejected(Event, frozen=True, kw_only=True):
    """A command failed verification and was not appended."""

    TYPE = "security.CommandRejected"
    VERSION = 1
    SUBSYSTEM = "security"

    command_type: TypeName
    command_id: Name | None
    """``None`` when the submission was too malformed to carry one."""
    reason: RejectReason
    command_digest: Sha256
    """SHA-256 of the submitted payload bytes."""
    key_id: Name | None
    nonce: Name | None
    detail: Text = ""


PublicKeyHex = Annotated[
    str,
    msgspec.Meta(
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        description="A raw Ed25519 public key, lowercase hex.",
    ),
]
Fingerprint = Annotated[
    str,
    msgspec.Meta(
        min_length=71,
        max_length=71,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="'sha256:' and the public key's SHA-256.",
    ),
]


class KeyAlgorithm(enum.StrEnum):
    """How a registered key signs."""

    ED25519 = "ed25519"


class KeyRegistered(Event, frozen=True, kw_only=True):
    """The public half of a signing key, recorded once so any copy of the log can verify.

    Written only by the gate (stream ``security-keys``), by a holder of the private
    key. A key id is bound to its first registration for good.
    """

    TYPE = "security.KeyRegistered"
    VERSION = 1
    SUBSYSTEM = "security"

    key_id: Name
    algorithm: KeyAlgorithm
    public_key: PublicKeyHex
    fingerprint: Fingerprint
    registered_by: Name
    """Who registered it: a person, ``lab``, or the gate on first use of a ring key."""


class SignedCommand(Event, frozen=True, kw_only=True):
    """Base of commands that carry a :class:`CommandSecurity` (not registered itself)."""

    security: CommandSecurity


def signing_bytes(command: SignedCommand) -> bytes:
    """The bytes a command's signature covers: its canonical payload with ``signature = ""``.

    Raises:
        InvalidEvent: the command is invalid.
    """
    unsigned = msgspec.structs.replace(
        command, security=msgspec.structs.replace(command.security, signature="")
    )
    return canonical_bytes(unsigned)
