"""``labledger export-parquet`` (issue #9): envelope + flattened payload, pandas and polars."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl

from labledger.cli.main import run as cli
from labledger.store import EventStore
from tests.api._lab import fill_esper, ring


def test_events_and_read_models_export(
    ledger_url: str, store: EventStore, tmp_path: Path, capsys: object
) -> None:
    fill_esper(store, ring(), "r1")
    fill_esper(store, ring(), "r2")
    out = tmp_path / "pq"
    argv = ["--db", ledger_url, "export-parquet", "--type", "esper.SystemStateReported"]
    assert cli([*argv, "--run", "r2", "--model", "runs", "--out", str(out)]) == 0
    frame = pd.read_parquet(out / "esper.SystemStateReported.parquet")
    assert len(frame) == 6 and set(frame["run_id"]) == {"r2"}
    assert {"position", "stream", "recorded_at", "data.metrics.accuracy"} <= set(frame.columns)
    assert str(frame["recorded_at"].dtype).startswith("datetime64")
    assert list(frame["data.metrics.epoch"]) == list(range(6))
    polar = pl.read_parquet(out / "esper.SystemStateReported.parquet")
    assert polar["data.metrics.loss"].dtype == pl.Float64
    assert polar["data.seed_stages.s0"].to_list() == ["DORMANT"] * 6
    runs = pl.read_parquet(out / "runs.runs.parquet")
    assert sorted(runs["run_id"].to_list()) == ["r1", "r2"]
    assert cli(["--db", ledger_url, "export-parquet", "--type", "no.Such", "--out", str(out)]) == 2
