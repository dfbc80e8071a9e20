"""Progress (issue #17): log lines go above the bar; the bar shows rate and ETA."""

from __future__ import annotations

import io

import pytest

from labledger.cli._progress import ProgressLine


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_plain_lines_with_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = ProgressLine("rebuild", stream=stream)
    bar(5, 10)
    bar.log("epoch 1: budgets 100 ms")
    bar(10, 10)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "epoch 1: budgets 100 ms"
    assert lines[-1].startswith("rebuild: 10/10 events 100.0% (") and "events/s" in lines[-1]


def test_on_a_terminal_the_log_line_is_printed_above_the_bar() -> None:
    pytest.importorskip("rich")
    stream = _Terminal()
    bar = ProgressLine("rebuild", unit="events", stream=stream)
    bar(3, 10)
    bar.log("applied #3 run.Heartbeat")
    bar(10, 10)
    bar.close()
    out = stream.getvalue()
    assert "applied #3 run.Heartbeat" in out
    assert out.rindex("applied #3") < out.rindex("10/10")  # the bar is redrawn below it
    assert "events/s" in out and "ETA" in out
