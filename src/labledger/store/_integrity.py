"""Record checksums and the global hash chain.

The checksum covers *every* stored field of a record, header and metadata
included: a checksum over the payload alone would miss a flipped bit in the
stream name, the version or the position. Fields are length-prefixed so that
moving bytes from one field to the next changes the digest, and ``None`` is
distinguished from the empty string.

The chain link of position p is ``sha256(link(p-1) || checksum(p))`` with
``link(0)`` all zeros, so deleting, inserting or reordering records breaks
every later link.
"""

from __future__ import annotations

import hashlib
import struct

GENESIS = bytes(32)

_HEADER = struct.Struct(">qqqq")
_LEN = struct.Struct(">i")
_NONE = _LEN.pack(-1)


def _field(value: str | bytes | None) -> bytes:
    if value is None:
        return _NONE
    raw = value.encode() if isinstance(value, str) else value
    return _LEN.pack(len(raw)) + raw


def record_checksum(
    position: int,
    stream_version: int,
    schema_version: int,
    recorded_at_us: int,
    event_id: str,
    stream: str,
    type_name: str,
    correlation_id: str | None,
    causation_id: str | None,
    run_id: str | None,
    actor: str | None,
    data: bytes,
    metadata: bytes,
) -> bytes:
    """SHA-256 over the canonical framing of every stored field of one record."""
    return hashlib.sha256(
        b"".join(
            (
                _HEADER.pack(position, stream_version, schema_version, recorded_at_us),
                _field(event_id),
                _field(stream),
                _field(type_name),
                _field(correlation_id),
                _field(causation_id),
                _field(run_id),
                _field(actor),
                _field(data),
                _field(metadata),
            )
        )
    ).digest()


def chain_link(previous: bytes, checksum: bytes) -> bytes:
    return hashlib.sha256(previous + checksum).digest()
