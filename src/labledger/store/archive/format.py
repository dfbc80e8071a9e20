"""The portable archive format: framing, checksums, chain, reading and writing (issue #8).

Format, version 1. Integers are big-endian and unsigned.

    prefix   MAGIC (8 bytes: 89 4C 4C 41 0D 0A 1A 0A, "\\x89LLA\\r\\n\\x1a\\n")
             u16 format version (1)
             u32 header length H | u32 CRC-32C(header) | header (H bytes)
    records  u32 length L | u32 CRC-32C(body) | body (L bytes) | 32-byte chain link
             ... one per record, L < 0xFFFFFFFF
    trailer  u32 0xFFFFFFFF | b"TRLR" | u64 record count | 32-byte last link
             | 32-byte SHA-256 of every byte before the trailer; then end of file

The header is JSON (sorted keys): ``format``, ``format_version``, ``created_at``,
``labledger_version``, ``source`` (backend kind, head and head hash at export
time) and ``selection`` (``run`` or ``from``/``to`` positions; null = all).

A body is the msgpack encoding (msgspec, fields in the order below, so the
bytes are canonical) of a map tagged by ``kind``:

* ``event``: position, stream, stream_version, id, type, schema_version,
  recorded_at_us, correlation_id, causation_id, run_id, actor, data (bin),
  metadata (bin) — the envelope as stored at the source, original position
  and stream version included (for reference: the import appends afresh).
* ``blob``: sha256, data (bin) — a content-addressed blob whose hash appears
  in an exported event's data or metadata; written after the events.

The chain link of record i is ``sha256(link(i-1) || sha256(body(i)))`` with
link(-1) = 32 zero bytes. It is the archive's own chain: the store's chain
cannot be checked on a subset of the log. The trailer's link is the head hash.

An archive is read and checked whole (magic, version, header CRC, every
record's CRC, body and link, count, head hash, file hash, nothing after the
trailer) before the store is touched; the first bad record is named with its
index and byte offset. Writers produce a temporary file beside the final
name, fsync it and rename it: no partial file ever carries the final name.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from labledger.errors import CorruptionDetected, UsageError
from labledger.store.base import RecordedEvent
from labledger.store.integrity import GENESIS

_native_crc32c: Callable[[bytes], int] | None
try:
    from crc32c import crc32c as _native_crc32c
except ImportError:  # pragma: no cover - the pure-Python table below is the fallback
    _native_crc32c = None

MAGIC = b"\x89LLA\r\n\x1a\n"
FORMAT_VERSION = 1
TRAILER_MARK = 0xFFFFFFFF
TRAILER_TAG = b"TRLR"
MAX_BODY = 256 * 1024 * 1024

_PREFIX = struct.Struct(">8sHII")
_FRAME = struct.Struct(">II")
_TRAILER = struct.Struct(">I4sQ32s32s")

Progress = Callable[[int, int], None]


def _crc_entry(c: int) -> int:
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c


_TABLE = [_crc_entry(n) for n in range(256)]


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli): the ``crc32c`` package when installed, else a table in Python."""
    if _native_crc32c is not None:
        return int(_native_crc32c(data))
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class EventRecord(RecordedEvent, frozen=True, kw_only=True, tag="event", tag_field="kind"):
    """One event as archived: the source envelope, original position included."""


class BlobRecord(msgspec.Struct, frozen=True, kw_only=True, tag="blob", tag_field="kind"):
    """A content-addressed blob referenced from an archived event."""

    sha256: str
    data: bytes


Record = EventRecord | BlobRecord
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


class ArchiveCorrupt(CorruptionDetected):
    """An archive failed its checks at ``record_index`` (None: the header), ``byte_offset``."""

    def __init__(self, message: str, record_index: int | None, byte_offset: int) -> None:
        super().__init__(message)
        self.record_index, self.byte_offset = record_index, byte_offset


class Archive(msgspec.Struct, frozen=True, kw_only=True):
    """A checked archive: its header, records and trailer facts."""

    header: dict[str, Any]
    events: list[EventRecord]
    blobs: list[BlobRecord]
    head_hash: str
    size: int


# -- writing ----------------------------------------------------------------------


class _Writer:
    def __init__(self, fh: Any) -> None:
        self.fh, self.digest = fh, hashlib.sha256()
        self.link, self.count, self.offset = GENESIS, 0, 0

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.offset += len(data)

    def header(self, header: dict[str, Any]) -> None:
        raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        self._write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(raw), crc32c(raw)) + raw)

    def record(self, record: Record) -> None:
        body = _encode(record)
        self.link = hashlib.sha256(self.link + hashlib.sha256(body).digest()).digest()
        self._write(_FRAME.pack(len(body), crc32c(body)) + body + self.link)
        self.count += 1

    def trailer(self) -> None:
        self.fh.write(
            _TRAILER.pack(TRAILER_MARK, TRAILER_TAG, self.count, self.link, self.digest.digest())
        )


# -- reading ----------------------------------------------------------------------


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data = path, data

    def fail(
        self, index: int | None, offset: int, what: str, *, trailer: bool = False
    ) -> ArchiveCorrupt:
        where = "header" if index is None else f"record {index}"
        if trailer:
            where = f"trailer (record {index})"
        return ArchiveCorrupt(
            f"archive {self.path}: {where} at byte offset {offset}: {what}; nothing was imported",
            index,
            offset,
        )

    def prefix(self) -> tuple[dict[str, Any], int]:
        data = self.data
        if len(data) < _PREFIX.size or data[:8] != MAGIC:
            raise self.fail(None, 0, "not a labledger archive (bad magic)")
        _, version, size, crc = _PREFIX.unpack_from(data)
        if version != FORMAT_VERSION:
            what = f"unsupported format version {version} (this code reads {FORMAT_VERSION})"
            raise self.fail(None, 8, what)
        raw = data[_PREFIX.size : _PREFIX.size + size]
        if len(raw) != size or crc32c(raw) != crc:
            raise self.fail(None, _PREFIX.size, "header CRC-32C mismatch")
        try:
            header = json.loads(raw)
        except ValueError as exc:
            raise self.fail(None, _PREFIX.size, f"header is not JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise self.fail(None, _PREFIX.size, "header is not a JSON object")
        return header, _PREFIX.size + size

    def records(self, offset: int, progress: Progress | None) -> tuple[list[Record], int, bytes]:
        data, link = self.data, GENESIS
        records: list[Record] = []
        end = len(data)
        while True:
            index = len(records)
            if end - offset < 4:
                raise self.fail(index, offset, "file ends without a trailer (truncated)")
            (length,) = struct.unpack_from(">I", data, offset)
            if length == TRAILER_MARK:
                return records, offset, link
            if length > MAX_BODY or end - offset < _FRAME.size + length + 32:
                raise self.fail(index, offset, f"a {length}-byte body overruns the file")
            _, crc = _FRAME.unpack_from(data, offset)
            start = offset + _FRAME.size
            body = data[start : start + length]
            if crc32c(body) != crc:
                raise self.fail(index, offset, "CRC-32C mismatch in the record")
            link = hashlib.sha256(link + hashlib.sha256(body).digest()).digest()
            if data[start + length : start + length + 32] != link:
                raise self.fail(index, offset, "chain link mismatch (records moved or altered)")
            records.append(self._decode(body, index, offset))
            offset = start + length + 32
            if progress is not None and len(records) % 1000 == 0:
                progress(offset, end)

    def _decode(self, body: bytes, index: int, offset: int) -> Record:
        try:
            record: Record = _decode(body)
        except msgspec.DecodeError as exc:
            raise self.fail(index, offset, f"undecodable record body ({exc})") from exc
        if isinstance(record, BlobRecord) and (
            hashlib.sha256(record.data).hexdigest() != record.sha256
        ):
            raise self.fail(index, offset, "blob bytes do not match their SHA-256")
        return record

    def trailer(self, offset: int, count: int, link: bytes) -> None:
        def bad(what: str) -> ArchiveCorrupt:
            return self.fail(count, offset, what, trailer=True)

        extra = len(self.data) - offset - _TRAILER.size
        if extra < 0:
            raise bad("truncated trailer")
        if extra > 0:
            raise bad(f"{extra} bytes follow the trailer (garbage appended?)")
        _, tag, n, last, digest = _TRAILER.unpack_from(self.data, offset)
        if tag != TRAILER_TAG:
            raise bad("bad trailer marker")
        if n != count:
            raise bad(f"the trailer counts {n} records, the file holds {count}")
        if last != link:
            raise bad("head hash differs from the last record's link")
        if hashlib.sha256(memoryview(self.data)[:offset]).digest() != digest:
            raise bad("file SHA-256 mismatch")


def read_archive(path: Path, *, progress: Progress | None = None) -> Archive:
    """Read and check a whole archive, touching no store.

    Raises:
        UsageError: the file cannot be read.
        CorruptionDetected: anything is wrong; the message names the first bad
            record's index and byte offset (an :class:`ArchiveCorrupt`).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read archive {path}: {exc.strerror or exc}") from exc
    reader = _Reader(path, data)
    header, offset = reader.prefix()
    records, offset, link = reader.records(offset, progress)
    reader.trailer(offset, len(records), link)
    return Archive(
        header=header,
        events=[r for r in records if isinstance(r, EventRecord)],
        blobs=[r for r in records if isinstance(r, BlobRecord)],
        head_hash=link.hex(),
        size=len(data),
    )
