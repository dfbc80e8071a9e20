"""Export and import of portable archives: historical runs shared between labs and backends.

The format (framing, CRC-32C, the archive's own hash chain, trailer) is in
:mod:`labledger.store.archive.format`. Export writes a temporary file, fsyncs
and renames it; import checks the whole file before touching the store, then
appends everything in one transaction, skipping ids already present.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from labledger._version import __version__
from labledger.errors import BlobNotFound, InvalidEvent, UsageError
from labledger.store.archive.format import (
    FORMAT_VERSION,
    MAGIC,
    Archive,
    ArchiveCorrupt,
    BlobRecord,
    EventRecord,
    Progress,
    _Writer,
    crc32c,
    read_archive,
)

__all__ = [
    "MAGIC",
    "Archive",
    "ArchiveCorrupt",
    "ExportReport",
    "HistoricalGate",
    "ImportReport",
    "crc32c",
    "export_archive",
    "import_archive",
    "read_archive",
]
from labledger.store.backup import fsync_rename
from labledger.store.base import (
    ANY,
    CommandClaim,
    EventStore,
    Gate,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)

_BLOB_REF = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


class ExportReport(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    events: int
    blobs: int
    head_hash: str
    bytes: int


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    events: int
    imported: int
    skipped: int
    blobs: int
    first_position: int | None
    last_position: int | None


def _selected(
    store: EventStore, run_id: str | None, first: int, last: int, progress: Progress | None
) -> Iterator[RecordedEvent]:
    total = max(last - first + 1, 0)
    for event in store.read_all(first, batch_size=2000):
        if event.position > last:
            break
        if progress is not None and event.position % 1000 == 0:
            progress(event.position - first + 1, total)
        if run_id is None or event.run_id == run_id:
            yield event
    if progress is not None:
        progress(total, total)


def _referenced_blobs(store: EventStore, refs: Iterable[bytes]) -> Iterator[BlobRecord]:
    for ref in sorted(set(refs)):
        try:
            yield BlobRecord(sha256=ref.decode(), data=store.get_blob(ref.decode()))
        except BlobNotFound:
            continue  # a hash that names no blob here (a digest, a chain link…)


def export_archive(
    store: EventStore,
    out: Path,
    *,
    run_id: str | None = None,
    from_position: int | None = None,
    to_position: int | None = None,
    include_blobs: bool = True,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the selected events (and the blobs they reference) to an archive at ``out``.

    Args:
        store: the source store (it may keep growing: the export stops at its head
            as it was when the export began, a consistent prefix).
        out: the archive file; written to a temporary name, fsynced and renamed.
        run_id: only events whose envelope has this run id.
        from_position, to_position: only positions in this inclusive range.
        include_blobs: add the blobs whose SHA-256 appears in exported payloads.
        progress: called with (positions scanned, positions to scan).

    Raises:
        UsageError: a run and a range together, an empty range, or an unusable ``out``.
    """
    if run_id is not None and (from_position is not None or to_position is not None):
        raise UsageError("export either a run (--run) or a position range (--from/--to)")
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise UsageError(f"archive {out} must be a file in an existing directory")
    head = store.head()
    first = max(from_position or 1, 1)
    last = head if to_position is None else min(to_position, head)
    if to_position is not None and from_position is not None and to_position < from_position:
        raise UsageError(f"--from {from_position} is after --to {to_position}")
    header = {
        "format": "labledger-archive",
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "labledger_version": _version(),
        "source": {"kind": store.url.split(":", 1)[0].split("+")[0], "head": head},
        "selection": {"run": run_id, "from": from_position, "to": to_position},
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            writer = _Writer(fh)
            writer.header(header)
            refs: list[bytes] = []
            events = 0
            for event in _selected(store, run_id, first, last, progress):
                writer.record(EventRecord(**msgspec.structs.asdict(event)))
                events += 1
                if include_blobs:
                    refs += _BLOB_REF.findall(event.data) + _BLOB_REF.findall(event.metadata)
            blobs = 0
            for blob in _referenced_blobs(store, refs):
                writer.record(blob)
                blobs += 1
            writer.trailer()
        size = tmp.stat().st_size
        fsync_rename(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(
        path=str(out), events=events, blobs=blobs, head_hash=writer.link.hex(), bytes=size
    )


def _version() -> str:
    return __version__


# -- importing ----------------------------------------------------------------------


class HistoricalGate:
    """A gate for imports: validation as usual; signed commands are history, not requests.

    A signed command in an archive was checked (freshness, nonce) when it was
    first appended; checking freshness again would refuse every old command,
    and the refusal would *write* a rejection record — breaking the import's
    all-or-nothing promise. So a command whose signature verifies with the
    wrapped gate's keys is admitted as is, and one that does not verify refuses
    the whole import (``InvalidEvent``, nothing written). ``labledger import``
    wraps ``labledger.security.portable.ArchiveGate``, whose keys are those the
    archive itself records, and checks nonces first (issue #18).
    """

    def __init__(self, inner: Gate) -> None:
        self.inner = inner

    def prepare(
        self, event: NewEvent, *, typed: bool = False
    ) -> tuple[NewEvent, CommandClaim | None]:
        """Validate through the wrapped gate; drop the freshness/nonce claim of good commands."""
        event, claim = self.inner.prepare(event, typed=typed)
        if claim is not None and claim.refusal is not None:
            reason, detail = claim.refusal
            raise InvalidEvent(
                f"signed command {event.id} ({event.type}) in the archive does not verify "
                f"here ({reason}: {detail}); load the signing key (key id {claim.key_id}) "
                "and import again. Nothing was written."
            )
        return event, None

    def admit(self, stream: str, event: NewEvent) -> None:
        """Reserved names as the wrapped gate says (an import runs as the gate)."""
        self.inner.admit(stream, event)

    def rejection(
        self, event: NewEvent, claim: CommandClaim, reason: str, detail: str
    ) -> tuple[str, NewEvent]:
        """Never reached (no claims are passed on); delegates for completeness."""
        return self.inner.rejection(event, claim, reason, detail)


_SOURCE_ONLY = frozenset({"position", "stream", "stream_version"})


def _new_event(r: EventRecord) -> NewEvent:
    """The record as an event to append, keeping its original ``recorded_at_us``."""
    fields = msgspec.structs.asdict(r)
    return NewEvent(**{k: v for k, v in fields.items() if k not in _SOURCE_ONLY})


def _parts(events: list[EventRecord]) -> list[StreamAppend]:
    """Consecutive events of one stream as one part, in archive order."""
    parts: list[StreamAppend] = []
    run: list[NewEvent] = []
    for i, record in enumerate(events):
        run.append(_new_event(record))
        if i + 1 == len(events) or events[i + 1].stream != record.stream:
            parts.append(StreamAppend(record.stream, run, ANY))
            run = []
    return parts


Check = Callable[[Archive, list[EventRecord]], None]
"""Called with the archive and its events new to the store, before anything is written."""


def import_archive(
    store: EventStore, path: Path, *, progress: Progress | None = None, check: Check | None = None
) -> ImportReport:
    """Check an archive whole, then append its new events in one transaction.

    Idempotent by event id: ids already in the store are skipped, so importing
    the same archive twice writes nothing the second time. Original
    ``recorded_at`` times are kept. Referenced blobs are stored first (they are
    content-addressed: a failed import can leave only unreferenced blobs
    behind, never events).

    Args:
        check: refuses the import by raising (nothing is written).

    Raises:
        CorruptionDetected: the archive is damaged (nothing is written).
        InvalidEvent, IdempotencyConflict: the store refuses an event (nothing written).
        StoreUnavailable: the store cannot be written.
    """
    archive = read_archive(path, progress=progress)
    present = store.existing_ids([e.id for e in archive.events])
    fresh = [e for e in archive.events if e.id not in present]
    if check is not None:
        check(archive, fresh)  # e.g. signatures and nonces (labledger.security.portable)
    for blob in archive.blobs:
        store.put_blob(blob.data)  # ON CONFLICT DO NOTHING: a re-import writes nothing
    results = store.append_many(_parts(fresh)) if fresh else []
    return ImportReport(
        path=str(path),
        events=len(archive.events),
        imported=len(fresh),
        skipped=len(archive.events) - len(fresh),
        blobs=len(archive.blobs),
        first_position=results[0].first_position if results else None,
        last_position=results[-1].last_position if results else None,
    )
