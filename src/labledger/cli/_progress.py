"""Progress on stderr for long operations (replay, rebuild, export, training).

On a terminal, a rich progress bar: done/total, percent, rate, elapsed and
ETA, with :meth:`ProgressLine.log` lines printed *above* the bar, so a verb's
log never collides with it. Elsewhere (logs, CI) — or without rich — a plain
line every few seconds and at the end, so progress is visible either way.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _rich_bar(label: str, unit: str, stream: TextIO) -> Any:
    """A started rich Progress with one task, or ``None`` when rich is not installed."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ModuleNotFoundError:
        return None
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=False,
    )
    bar.add_task(label, total=None, rate="", unit=unit)
    bar.start()
    return bar


class ProgressLine:
    """``label: done/total events (rate ev/s, elapsed, ETA)`` for a long operation.

    Call it with ``(done, total)`` as work advances; :meth:`log` prints a line
    above it; :meth:`close` draws the final state.
    """

    def __init__(self, label: str, unit: str = "events", stream: TextIO | None = None) -> None:
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_draw = 0.0 if self.tty else self.start
        self._last = (0, 0)
        self._bar = _rich_bar(label, unit, self.stream) if self.tty else None

    def __call__(self, done: int, total: int) -> None:
        self._last = (done, total)
        now = time.monotonic()
        if self._bar is not None:
            rate = done / max(now - self.start, 1e-9)
            task = self._bar.task_ids[0]
            self._bar.update(
                task, completed=done, total=total or None, rate=f"{rate:,.0f} {self.unit}/s"
            )
            return
        interval = 0.1 if self.tty else 5.0
        if now - self._last_draw >= interval:
            self._draw(done, total, now)

    def log(self, message: str) -> None:
        """One line for people, above the bar (or simply on the stream without one)."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            self.stream.write(("\n" if self.tty and self._last != (0, 0) else "") + message + "\n")
            self.stream.flush()

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
        if self._bar is not None:
            self(done, total)
            self._bar.stop()
            return
        self._draw(done, total, time.monotonic(), final=True)
