"""``labledger resume RUN_ID`` (issue #17): one verb, each subsystem's own resume path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from labledger.events.runs import RunStarted, Subsystem
from labledger.lab.runs import RunKind, RunLog
from labledger.lab.toolgen.records import trials_stream
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger
from tests.cli.test_cli import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("subsystem", "verb"),
    [
        ("dream", "dream run --resume"),
        ("toolgen", "toolgen run --resume"),
        ("esper", "esper train --resume"),
    ],
)
def test_resume_dispatches_by_the_runs_subsystem(
    backend: Backend, subsystem: str, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_ledger(backend) as store:
        kind = RunKind(f"odd{subsystem}", uuid.uuid4())  # a stream the subsystem does not know
        started = RunStarted(subsystem=Subsystem(subsystem), config={}, code_version="v", host="h")
        RunLog(store, kind, "r1").start(started)
        url = store.url
    code, _, err = cli(url, "resume", "r1", capsys=capsys)
    # the subsystem's own resume path ran, and refused a run it has no record of
    assert f"labledger {verb} r1" in err and code == 2 and "Traceback" not in err


def test_a_killed_run_is_reaped_then_resumed_to_the_end(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_ledger(backend) as store:
        url = store.url
        argv = [sys.executable, "-m", "labledger", "--db", url, "toolgen", "run", "--epochs", "4"]
        argv += ["--specs", "text_deduplicate", "--seed", "3", "--timed-runs", "3"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen(
            [*argv, "--run-id", "killed"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while store.stream_version(trials_stream("killed")) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    code, out, _ = cli(url, "runs", "reap", "--now", "2999-01-01T00:00:00Z", capsys=capsys)
    assert code == 0 and [json.loads(line)["run_id"] for line in out.splitlines()] == ["killed"]
    assert cli(url, "resume", "killed", capsys=capsys)[0] == 0
    code, out, _ = cli(url, "runs", "show", "killed", capsys=capsys)
    shown = json.loads(out)["run"]
    assert (shown["status"], shown["outcome"], shown["attempt"]) == ("finished", "succeeded", 1)
    assert [t["type"] for t in json.loads(out)["timeline"]] == [
        "run.RunStarted",
        "run.RunAbandoned",
        "run.RunResumed",
        "run.RunFinished",
    ]
