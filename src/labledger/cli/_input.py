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


def positive(value: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 1")
    return int(value)


def nonnegative(value: str) -> int:
    """An argparse type: a whole number >= 0."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 0")
    return int(value)
