"""The main job: `labledger lab` runs a real short session and shows its read models."""

from __future__ import annotations

from pathlib import Path

import pytest

from labledger.cli.main import run
from labledger.store import open_store


def test_lab_session_fills_the_read_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/lab.db"
    assert run(["--db", url, "lab", "--epochs", "2", "--budget-ms", "10"]) == 0
    out = capsys.readouterr().out
    for section in ("Baselines", "Best candidates", "Leaderboard", "Runs", "Integrity"):
        assert f"== {section}" in out
    assert "candidate_pack" not in out and "score_v2" in out and '"ok":true' in out
    assert (tmp_path / "dream-report.png").stat().st_size > 1000
    with open_store(url) as store:
        types = {e.type for e in store.read_all()}
        assert {"dream.TrialRecorded", "toolgen.ToolEvaluated", "run.RunFinished"} <= types
        assert store.verify().ok
