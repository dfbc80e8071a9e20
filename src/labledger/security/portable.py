"""Imports that keep the log's security promises: any log moves to any store.

An archive carries its own keys: the ``security.KeyRegistered`` records of the
log it came from. Its signed commands are checked against those (plus the keys
the target log already records, plus HMAC secrets of the local ring for older
logs), never against this lab's trust list — an import replays history, it does
not admit new decisions. So a lab log written without a key file imports into
PostgreSQL, and ``export``/``import`` is a backup path for it.

Refused, with nothing written (``CommandRefused``, exit 4):

- a command whose signature does not verify, or whose key the archive and the
  target log do not record (an HMAC command without its secret included);
- a key id the archive registers with another public key than the target log;
- a command whose nonce is already in the target log, or twice in the archive,
  whatever its event id. The nonce ledger expires entries (it guards freshness),
  so the target log itself is scanned for the nonces of its signed commands:
  one read of the log per import.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from labledger.errors import CommandRefused
from labledger.events import _base as registry
from labledger.events.security import RejectReason, SignedCommand
from labledger.security import recheck, reserved
from labledger.security.gate import GateKeys, LabGate
from labledger.security.keybook import KeyBook
from labledger.security.keyring import KeyRing
from labledger.security.signing import check_signature
from labledger.store.archive import (
    Archive,
    HistoricalGate,
    ImportReport,
    import_archive,
)
from labledger.store.archive.format import EventRecord, Progress
from labledger.store.base import EventStore, RecordedEvent

IMPORT_ACTOR = "labledger.import"


class ArchiveGate(LabGate):
    """The gate of an import: signatures against the keys of the archive and the log."""

    def __init__(self, keyring: KeyRing) -> None:
        super().__init__(keyring, strict=False)

    def _check(self, command: SignedCommand) -> tuple[RejectReason, str] | None:
        return check_signature(command, GateKeys(self.keyring, self.book))


def import_gate(keyring: KeyRing) -> HistoricalGate:
    """The gate to open an import's target store with (pass it to :func:`import_verified`)."""
    return HistoricalGate(ArchiveGate(keyring))


def import_verified(
    store: EventStore, path: Path, gate: HistoricalGate, *, progress: Progress | None = None
) -> ImportReport:
    """Import ``path`` into ``store`` (opened with ``gate``) after the checks of this module.

    Raises:
        CommandRefused: a signature, key or nonce check failed (nothing written).
        CorruptionDetected, InvalidEvent, IdempotencyConflict: as ``import_archive``.
    """
    inner = gate.inner
    assert isinstance(inner, ArchiveGate)

    def check(archive: Archive, fresh: list[EventRecord]) -> None:
        inner.book = _keys(store, archive.events)
        _check_signatures(fresh, inner.book, inner.keyring)
        _check_nonces(store, fresh)

    with reserved.as_gate(IMPORT_ACTOR):  # the archive's security.* records are history
        return import_archive(store, path, progress=progress, check=check)


def _refused(reason: str, detail: str) -> CommandRefused:
    return CommandRefused(reason, f"{detail}; the import wrote nothing")


def _keys(store: EventStore, archived: list[EventRecord]) -> KeyBook:
    book = KeyBook()
    book.refresh(store)
    book.learn_records(archived)
    if book.conflicts:
        position, event = book.conflicts[0]
        raise _refused(
            "unknown_key",
            f"archived position {position} registers key id {event.key_id!r} with another "
            "public key than the one this log records",
        )
    return book


def _check_signatures(fresh: list[EventRecord], book: KeyBook, ring: KeyRing) -> None:
    for verdict in recheck.check_log(fresh, book, ring):
        if verdict.status not in ("ok", "hmac_ok"):
            reason = "unknown_key" if verdict.status == "unverifiable" else verdict.status
            raise _refused(
                reason,
                f"archived command at position {verdict.position} ({verdict.command_type} "
                f"{verdict.command_id}, key {verdict.key_id}): {verdict.detail}",
            )


def _nonce(record: RecordedEvent) -> str | None:
    if not recheck.is_signed_type(record.type):
        return None
    command = registry.decode(record.type, record.schema_version, record.data)
    return command.security.nonce if isinstance(command, SignedCommand) else None


def _nonces(records: Iterable[RecordedEvent]) -> dict[str, int]:
    """Nonce → position of the first command carrying it."""
    seen: dict[str, int] = {}
    for record in records:
        nonce = _nonce(record)
        if nonce is not None:
            seen.setdefault(nonce, record.position)
    return seen


def _check_nonces(store: EventStore, fresh: list[EventRecord]) -> None:
    incoming: dict[str, int] = {}
    for record in fresh:
        nonce = _nonce(record)
        if nonce is None:
            continue
        if nonce in incoming:
            raise _refused(
                "replayed_nonce",
                f"archived positions {incoming[nonce]} and {record.position} carry nonce {nonce!r}",
            )
        incoming[nonce] = record.position
    if not incoming:
        return
    used = _nonces(store.read_all())
    for nonce, position in incoming.items():
        if nonce in used:
            raise _refused(
                "replayed_nonce",
                f"archived command at position {position} carries nonce {nonce!r}, already used "
                f"by the command at position {used[nonce]} of this log (under another event id)",
            )
