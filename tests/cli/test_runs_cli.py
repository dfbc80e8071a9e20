"""The CLI user's day (issue #17): runs, show, compare, reap, resume, doctor, --format."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

import labledger
from labledger.events.runs import RunStarted, Subsystem
from labledger.lab.runs import RunKind, RunLog
from labledger.ledger import open_ledger
from labledger.testing.backends import Backend
from tests.cli.test_cli import cli

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def url(backend: Backend, capsys: Capsys) -> str:
    """A ledger with two tracked runs (one failed) and one silent esper-style run."""
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    for lr in (0.1, 0.01):
        with labledger.track(url, experiment="toy", params={"lr": lr}, run_id=f"toy-{lr}") as r:
            for step in range(5):
                r.log(step=step, loss=1.0 / (1 + step * lr * 10))
    with pytest.raises(ZeroDivisionError), labledger.track(url, experiment="toy", run_id="bad"):
        _ = 1 / 0
    with open_ledger(url, strict=False) as store:
        kind = RunKind("silent", uuid.UUID("00000000-0000-4000-8000-000000000171"))
        RunLog(store, kind, "silent1").start(
            RunStarted(subsystem=Subsystem.ESPER, config={}, code_version="v", host="h")
        )
    return url


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_runs_lists_every_run_with_params_and_metrics(url: str, capsys: Capsys) -> None:
    code, out, _ = cli(url, "runs", capsys=capsys)  # piped: JSON lines
    rows = {r["run_id"]: r for r in _lines(out)}
    assert code == 0 and set(rows) == {"toy-0.1", "toy-0.01", "bad", "silent1"}
    assert rows["toy-0.1"]["config"] == {"experiment": "toy", "lr": 0.1}
    assert rows["toy-0.1"]["metrics"] == {"loss": pytest.approx(1 / 5)}
    assert (rows["bad"]["status"], rows["bad"]["outcome"]) == ("finished", "failed")
    assert str(rows["toy-0.1"]["started"]).endswith("Z")  # ISO 8601 UTC beside the µs
    code, out, _ = cli(url, "runs", "--status", "running", "--format", "csv", capsys=capsys)
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["run_id"] for r in table] == ["silent1"] and table[0]["started"].endswith("Z")
    code, out, _ = cli(url, "runs", "--format", "table", capsys=capsys)
    assert code == 0 and "toy-0.01" in out and "lr=0.01" in out


def test_show_and_compare(url: str, capsys: Capsys) -> None:
    code, out, _ = cli(url, "runs", "show", "toy-0.1", capsys=capsys)
    shown = json.loads(out)
    assert code == 0 and shown["run"]["run_id"] == "toy-0.1"
    assert [t["type"] for t in shown["timeline"]] == ["run.RunStarted", "run.RunFinished"]
    assert shown["event_counts"]["track.MetricsLogged"] == 1
    code, out, _ = cli(url, "runs", "compare", "toy-0.1", "toy-0.01", capsys=capsys)
    rows = {(r["kind"], r["key"]): r for r in _lines(out)}
    assert rows[("param", "lr")]["differs"] is True
    assert (rows[("param", "lr")]["toy-0.1"], rows[("param", "lr")]["toy-0.01"]) == (0.1, 0.01)
    assert rows[("param", "experiment")]["differs"] is False
    assert rows[("metric", "loss")]["differs"] is True
    code, out, _ = cli(
        url, "runs", "compare", "toy-0.1", "toy-0.01", "--format", "table", capsys=capsys
    )
    assert code == 0 and "*" in out
    assert cli(url, "runs", "compare", "toy-0.1", capsys=capsys)[0] == 2
    code, _, err = cli(url, "runs", "show", "nope", capsys=capsys)
    assert code == 2 and "labledger runs" in err and "Traceback" not in err


def test_reap_then_resume_dispatch(url: str, capsys: Capsys) -> None:
    code, out, _ = cli(
        url, "runs", "reap", "--now", "2999-01-01T00:00:00Z", "--dry-run", capsys=capsys
    )
    assert code == 0 and [r["run_id"] for r in _lines(out)] == ["silent1"]
    assert _lines(out)[0]["abandoned"] is False
    code, out, _ = cli(url, "runs", "reap", "--now", "2999-01-01T00:00:00Z", capsys=capsys)
    assert code == 0 and _lines(out)[0]["abandoned"] is True
    code, out, _ = cli(url, "runs", "--status", "abandoned", capsys=capsys)
    assert [r["run_id"] for r in _lines(out)] == ["silent1"]
    assert cli(url, "runs", "reap", "--now", "yesterday", capsys=capsys)[0] == 2
    # a tracked run has no checkpoint to continue from; a finished one nothing left to do
    code, _, err = cli(url, "resume", "toy-0.1", capsys=capsys)
    assert code == 2 and "no resume path" in err
    code, _, err = cli(url, "resume", "nope", capsys=capsys)
    assert code == 2 and "no run" in err


def test_doctor_is_truthful(url: str, backend: Backend, capsys: Capsys) -> None:
    later = ("--now", "2999-01-01T00:00:00Z")
    code, out, _ = cli(url, "doctor", "--no-reap", *later, capsys=capsys)
    found = {f["check"]: f for f in _lines(out)}
    assert code == 0, out  # warnings (an overdue run) are not failures
    assert found["runs"]["level"] == "warning" and "silent1" in found["runs"]["detail"]
    assert all(f["level"] != "error" for f in found.values())
    code, out, _ = cli(url, "doctor", "--format", "table", *later, capsys=capsys)
    assert code == 0 and "[FAIL]" not in out and "abandoned 1 runs" in out
    code, out, _ = cli(url, "--read-only", "doctor", "--format", "table", capsys=capsys)
    assert code == 0 and "[FAIL]" not in out and "not checked: --read-only" in out
    empty = backend.fresh_url()
    code, out, _ = cli(empty, "doctor", "--format", "table", capsys=capsys)
    assert code == 5 and out.startswith("[FAIL] schema") and f"--db '{empty}' init" in out


def test_audit_list_and_read_all_filters(url: str, capsys: Capsys) -> None:
    code, out, _ = cli(url, "audit", "--list", capsys=capsys)
    assert code == 0 and out == ""  # no Esper decisions in this log
    code, out, _ = cli(
        url, "read-all", "--type", "track.MetricsLogged", "--run", "toy-0.1", capsys=capsys
    )
    rows = _lines(out)
    assert [(r["type"], r["run_id"]) for r in rows] == [("track.MetricsLogged", "toy-0.1")]
    code, out, _ = cli(url, "read-all", "--limit", "2", "--format", "csv", capsys=capsys)
    assert out.splitlines()[0] == "position,recorded_at_us,stream,version,type,run_id,data"


def test_serve_reaps_silent_runs_before_it_serves(url: str, capsys: Capsys) -> None:
    from labledger.cli import serve

    serve._reap_at_start(url)  # now: nothing is overdue yet
    assert "abandoned" not in capsys.readouterr().err
    serve._reap_at_start(url, now_us=2**62)
    assert "abandoned 1 silent runs: silent1" in capsys.readouterr().err
