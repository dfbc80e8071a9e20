"""A small progress line on stderr for long operations (replay, rebuild, export, training)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """``label: done/total events (rate ev/s, elapsed, ETA)``, redrawn at most 10 times a second.

    On a terminal the line is redrawn in place; elsewhere (logs, CI) a line is
    printed every few seconds and at the end, so progress is visible either way.
    """

    def __init__(self, label: str, unit: str = "events", stream: TextIO | None = None) -> None:
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_draw = 0.0 if self.tty else self.start
        self._last = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        self._last = (done, total)
        now = time.monotonic()
        interval = 0.1 if self.tty else 5.0
        if now - self._last_draw >= interval:
            self._draw(done, total, now)

    def _draw(self, done: int, total: int, now: float, *, final: bool = False) -> None:
        self._last_draw = now
        elapsed = max(now - self.start, 1e-9)
        pct = f" {100 * done / total:5.1f}%" if total else ""
        rate = done / elapsed
        eta = f", ETA {(total - done) / rate:.1f}s" if rate and total > done else ""
        line = (
            f"{self.label}: {done:,}/{total:,} {self.unit}{pct} "
            f"({rate:,.0f} {self.unit}/s, {elapsed:.1f}s{eta})"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        done, total = self._last
        self._draw(done, total, time.monotonic(), final=True)
