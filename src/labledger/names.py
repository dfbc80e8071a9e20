"""One name policy for stream names, event types and ids: CLI, HTTP API and Python alike.

Every name is checked here, once, by the store's append path (so the CLI, the
API and ``append``/``append_many`` cannot differ), and refused with a message
naming the rule it breaks. A name is never rewritten: what is stored is exactly
what was given, or nothing.

Rules for every name (stream, event type, event id, run, correlation and
causation ids, actor):

1. a non-empty string;
2. valid UTF-8 — no lone surrogates (what Python makes of undecodable bytes in
   ``argv``, or ``\\udcff`` in JSON);
3. no control characters (Unicode category Cc: NUL, newline, tab, ESC, DEL, C1)
   and no bidirectional overrides or isolates (U+202A–U+202E, U+2066–U+2069),
   which make a name display as another one;
4. at most 256 bytes once encoded as UTF-8 (event types: 128).

And, because these are identifiers that travel through shells and URLs:

5. streams, types and ids contain no whitespace (a space would be ``%20`` in one
   place and two arguments in another); an actor may contain inner spaces
   ("Ada Lovelace") but none at either end;
6. a stream name may use ``/`` to separate parts, but no part may be empty,
   ``.`` or ``..``: every name is then one stable URL path, which no client or
   proxy normalises into another stream's name.

HTTP path segments are decoded strictly (:func:`from_url_path`): percent-escapes
that are not UTF-8 are refused, never turned into U+FFFD.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

from labledger.errors import InvalidEvent

MAX_NAME_BYTES = 256
MAX_TYPE_BYTES = 128
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

STREAM = "stream name"
TYPE = "event type"
ACTOR = "actor"


def _refuse(kind: str, value: object, rule: str) -> InvalidEvent:
    shown = ascii(value) if isinstance(value, str) else type(value).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidEvent(f"{kind} {shown} breaks the name rule: {rule} (labledger.names)")


def check(kind: str, value: object, *, limit: int = MAX_NAME_BYTES) -> str:
    """Check ``value`` against the rules for ``kind`` and return it unchanged.

    Args:
        kind: :data:`STREAM`, :data:`TYPE`, :data:`ACTOR`, or an id's field name
            (``"event id"``, ``"run_id"``, ``"correlation_id"``, …).
        value: the name as given.
        limit: the byte limit (rule 4).

    Raises:
        InvalidEvent: naming the rule that ``value`` breaks.
    """
    if not isinstance(value, str) or not value:
        raise _refuse(kind, value, "a name is a non-empty string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _refuse(kind, value, "a name is valid UTF-8 (no lone surrogates)") from exc
    for ch in value:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI:
            raise _refuse(kind, value, f"no control characters (found U+{ord(ch):04X})")
    if size > limit:
        raise _refuse(kind, value, f"at most {limit} bytes of UTF-8 (this one is {size})")
    if kind == ACTOR:
        if value != value.strip():
            raise _refuse(kind, value, "no whitespace at either end")
    elif any(ch.isspace() for ch in value):
        raise _refuse(kind, value, "no whitespace in streams, types and ids")
    if kind == STREAM and any(part in ("", ".", "..") for part in value.split("/")):
        raise _refuse(kind, value, "'/' separates parts, and no part is empty, '.' or '..'")
    return value


def check_stream(value: object) -> str:
    """:func:`check` for a stream name."""
    return check(STREAM, value)


def from_url_path(raw: bytes) -> str:
    """A percent-encoded URL path segment (bytes as sent) as text, strictly.

    Raises:
        InvalidEvent: the bytes are not UTF-8 (rule 2); nothing is replaced.
    """
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(
            STREAM, raw.decode("ascii", "backslashreplace"), "a name is valid UTF-8"
        ) from exc
