"""The notebook face (issue #17): ``open_lab`` read models as DataFrames, typed reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import labledger
from labledger.cli.main import run
from labledger.errors import UsageError
from labledger.events.runs import RunFinished
from labledger.testing.backends import Backend


@pytest.fixture
def lab(backend: Backend, capsys: pytest.CaptureFixture[str]) -> Iterator[labledger.Lab]:
    url = backend.fresh_url()
    assert run(["--db", url, "demo"]) == 0  # a D-REAM run with 8 trials
    capsys.readouterr()
    opened = labledger.open_lab(url)
    yield opened
    opened.close()


def test_runs_and_candidates_are_frames_scoped_to_a_run(lab: labledger.Lab) -> None:
    runs = lab.runs()
    assert list(runs.subsystem) == ["dream"] and list(runs.status) == ["finished"]
    run_id = runs.run_id[0]
    assert (
        str(runs.started_at.dtype).startswith("datetime64[") and runs.started_at.dt.tz is not None
    )
    packs = lab.candidates(run=run_id)
    assert sorted(packs.cand_id) == ["c0", "c1"] and set(packs.run_id) == {run_id}
    assert "score_v2" in packs.columns
    assert lab.candidates(run="another-run").empty


def test_typed_reads_decisions_and_audit(lab: labledger.Lab) -> None:
    run_id = lab.runs().run_id[0]
    finished = list(lab.read_all(types=["run.RunFinished"], run_id=run_id))
    assert len(finished) == 1 and isinstance(finished[0].event, RunFinished)
    assert finished[0].record.run_id == run_id
    assert list(lab.read_all(types=["run.RunFinished"], run_id="nope")) == []
    assert lab.decisions().empty and lab.leaderboard(run=run_id).empty
    with pytest.raises(UsageError, match=r"lab\.decisions"):
        lab.audit("no-such-command")


def test_training_set_is_a_torch_dataset(lab: labledger.Lab, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    dataset = lab.training_set(f"{tmp_path}/train.pt")
    assert isinstance(dataset, labledger.TrainingSetDataset) and len(dataset) == 0
