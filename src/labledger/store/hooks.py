"""The small hook through which typed validation and command security plug into append.

The store knows nothing of event classes or keys. A :class:`Gate` given to
``open_store`` sees every event before the write transaction (to validate
and canonicalise it, and to say whether it is a signed command), and builds
the rejection record when a command is refused. What needs the database —
freshness against the commit clock and the nonce ledger — the store checks
inside the append transaction, so a nonce replayed from two processes at
once is admitted exactly once.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from labledger.store.base import NewEvent


class CommandClaim(msgspec.Struct, frozen=True, kw_only=True):
    """What a signed command asks of the store, and any problem found before the commit."""

    nonce: str | None
    key_id: str | None
    issued_at_us: int
    window_us: int
    refusal: tuple[str, str] | None = None
    """(reason, detail) when the command is already known to be refused (bad signature…)."""


class Gate(Protocol):
    """Validation and command security, supplied by the layers above the store."""

    def prepare(
        self, event: NewEvent, *, typed: bool = False
    ) -> tuple[NewEvent, CommandClaim | None]:
        """Validate (and canonicalise) one event before the transaction.

        ``typed`` says the event was encoded from a typed object (``to_new_event``),
        which validated it already; a gate may skip re-validating its payload.

        Returns:
            The event to store, and a claim when it is a signed command.

        Raises:
            InvalidEvent: the event must not reach the log at all.
        """
        ...

    def rejection(
        self, event: NewEvent, claim: CommandClaim, reason: str, detail: str
    ) -> tuple[str, NewEvent]:
        """The (stream, record) that documents a refused command."""
        ...


class NonceStats(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    expired: int
    evicted: int
    horizon_us: int
