"""Everything a verb prints on stdout: a record as a JSON line, JSON objects, a table.

One encoder defines the bytes, so every verb's machine-readable output has the
same shape; reasons and progress go to stderr, never through here. The JSON
line of a record is the store's (``labledger.store.json_line``), shared with the
HTTP API.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import msgspec

from labledger.store import RecordedEvent
from labledger.store import json_line as json_line_of

_encode = msgspec.json.Encoder().encode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def records(events: Iterable[RecordedEvent]) -> None:
    """Records as JSON lines."""
    out = sys.stdout.buffer
    for e in events:
        out.write(json_line_of(e))
    out.flush()


def json_line(obj: object, *, sort_keys: bool = False) -> None:
    """One JSON object (a dict, a msgspec Struct, …) on one line."""
    encode = _encode_sorted if sort_keys else _encode
    sys.stdout.buffer.write(encode(obj) + b"\n")
    sys.stdout.flush()


def json_lines(items: Iterable[object]) -> None:
    """One JSON object per line."""
    out = sys.stdout.buffer
    for item in items:
        out.write(_encode(item) + b"\n")
    sys.stdout.flush()


def json_document(obj: object) -> None:
    """One JSON object, indented for people (``dream pack``)."""
    sys.stdout.buffer.write(msgspec.json.format(_encode(obj), indent=2) + b"\n")
    sys.stdout.flush()


def raw(data: bytes) -> None:
    """Bytes that are already a document (a stored JSON Schema)."""
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned text columns, right-aligned numbers, two spaces apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    numeric = [all(_is_number(r[i]) for r in rows) for i in range(len(header))]
    for line in [header, *rows]:
        cells = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(line, widths, numeric, strict=True)
        ]
        print("  ".join(cells).rstrip())


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True
