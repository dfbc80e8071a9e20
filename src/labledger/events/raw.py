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
from labledger.store import NewEvent

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 64
INT64 = (-(2**63), 2**63 - 1)
INT64_DIGITS = 19


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidEvent(f"duplicate key {key!r}")
        out[key] = value
    return out


def _bounded_int(digits: str) -> int:
    # Checked on the digits, before int(): Python refuses to convert more than
    # 4300 digits with a bare ValueError, and printing such a number fails too.
    if len(digits.lstrip("-")) > INT64_DIGITS:
        raise InvalidEvent(
            f"an integer of {len(digits.lstrip('-'))} digits does not fit in 64 bits"
        )
    return int(digits)


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
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_int=_bounded_int,
        )
    except RecursionError as exc:
        raise InvalidEvent(f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
    _check_values(value)
    return value


ENVELOPE_KEYS = {"correlation_id", "causation_id", "run_id", "actor", "schema_version"}
ALLOWED_KEYS = {"type", "data", "id", "metadata"} | ENVELOPE_KEYS


def event_from_json(obj: Any) -> NewEvent:
    """One ``{"type", "data", "id"?, "metadata"?, …}`` object → a NewEvent."""
    if not isinstance(obj, dict):
        raise InvalidEvent("each line must be a JSON object")
    unknown = set(obj) - ALLOWED_KEYS
    if unknown:
        raise InvalidEvent(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}")
    if not isinstance(obj.get("type"), str):
        raise InvalidEvent('"type" must be a string')
    if not isinstance(obj.get("data"), dict):
        raise InvalidEvent('"data" must be a JSON object')
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidEvent('"metadata" must be a JSON object')
    envelope = {k: obj[k] for k in ENVELOPE_KEYS if k in obj}
    for key, value in envelope.items():
        if key == "schema_version":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidEvent('"schema_version" must be an integer')
        elif not isinstance(value, str):
            raise InvalidEvent(f'"{key}" must be a string')
    try:
        return NewEvent.from_json(
            obj["type"], obj["data"], id=obj.get("id"), metadata=metadata, **envelope
        )
    except ValueError as exc:
        raise InvalidEvent(f"bad event id {obj.get('id')!r}: must be a UUID") from exc
