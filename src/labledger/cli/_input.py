"""Parsing untrusted input: JSON lines into events, before anything touches the log,
and the number types of the verbs' options.

The limits are those of :mod:`labledger.events.raw` (README "Input limits"),
reported with the line number.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from labledger.errors import InvalidEvent
from labledger.events.raw import MAX_DOCUMENT_BYTES, event_from_json, parse_json
from labledger.store import NewEvent

MAX_LINE_BYTES = MAX_DOCUMENT_BYTES


def bounded_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines of ``stream``, never reading more than one over-limit line into memory."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            raise InvalidEvent(f"a line is over the {MAX_LINE_BYTES}-byte limit")
        yield line


def events_from_lines(lines: Iterable[bytes]) -> list[NewEvent]:
    """Every line parsed, or an InvalidEvent naming the first bad line."""
    events: list[NewEvent] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(event_from_json(parse_json(line)))
        except InvalidEvent as exc:
            raise InvalidEvent(f"line {number}: {exc}") from exc
    return events


MAX_DIGITS = 18
"""The most digits a number option takes: anything longer overflows 64 bits somewhere."""


def _whole(value: str, least: int) -> int:
    # ASCII digits only: str.isdigit() admits "²" and "٣", which int() refuses or reads
    # as another number; and no more than 18 of them (int() refuses over 4300 digits).
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS):
        shown = value if len(value) <= 40 else f"{value[:20]}… ({len(value)} characters)"
        raise argparse.ArgumentTypeError(
            f"{shown!r} is not a number >= {least} (0-9 digits, at most {MAX_DIGITS})"
        )
    number = int(value)
    if number < least:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= {least}")
    return number


def positive(value: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _whole(value, 1)


def nonnegative(value: str) -> int:
    """An argparse type: a whole number >= 0."""
    return _whole(value, 0)
