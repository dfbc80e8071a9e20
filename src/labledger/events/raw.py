"""Untrusted JSON under documented limits, shared by the CLI and the raw append path.

A document over ``MAX_DOCUMENT_BYTES`` is refused before decoding; nesting
deeper than ``MAX_DEPTH``, duplicate keys (what is verified must be what is
stored), NaN/Infinity, integers outside 64 bits and invalid UTF-8 are refused
with a clear message.
"""

from __future__ import annotations

import json
import math
from typing import Any

from labledger.errors import InvalidEvent

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 64
INT64 = (-(2**63), 2**63 - 1)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidEvent(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise InvalidEvent(f"{name} is not a finite number")


def _check_values(value: Any) -> None:
    """Depth, 64-bit integers and finite floats, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and not INT64[0] <= item <= INT64[1]:
            raise InvalidEvent(f"integer {item} does not fit in 64 bits")
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidEvent("number is not finite")


def parse_json(raw: bytes) -> Any:
    """Decode one JSON document under the limits above."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InvalidEvent(f"{len(raw)} bytes is over the {MAX_DOCUMENT_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"not valid UTF-8 at byte {exc.start}") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError as exc:
        raise InvalidEvent(f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
    _check_values(value)
    return value
