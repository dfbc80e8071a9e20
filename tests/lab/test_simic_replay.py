"""`labledger replay RUN_ID` (issue #7): read models rebuilt from the log equal the live ones,
and a tampered read model is caught; Simic's held-out comparison with the heuristic."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from labledger.ledger import open_ledger
from labledger.projections import ProjectionEngine, all_projections
from labledger.security import KeyRing
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger
from tests.cli.test_cli import cli
from tests.lab.test_simic import synthetic_log
from tests.lab.test_weatherlight import LOG as EMERGENCIES
from tests.projections.test_esper_training import KEY_ID, SECRET, append_esper_log


@pytest.fixture
def ledger_url(backend: Backend, capsys: pytest.CaptureFixture[str]) -> str:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    with open_ledger(url, keyring=KeyRing({KEY_ID: SECRET})) as store:
        append_esper_log(store, synthetic_log(runs=2))
        append_esper_log(store, EMERGENCIES)
    return url


def test_replay_equals_live(ledger_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(ledger_url, "project", "run", capsys=capsys)[0] == 0  # live, caught up
    code, out, err = cli(ledger_url, "replay", "t1", capsys=capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["projection"] for r in rows] == sorted(p.name for p in all_projections())
    assert all(r["equal"] for r in rows)
    assert "telemetry_contract" in err and " NO" not in err


def test_replay_catches_a_tampered_read_model(
    ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_ledger(ledger_url) as store:
        engine = ProjectionEngine(store, all_projections())
        engine.catch_up("esper_training")
        with engine.read("esper_training") as tx:
            table = tx.table("transitions")
        with store.write() as conn:
            conn.execute(sa.update(table).where(table.c.run_id == "t1").values(reward=42.0))
    code, out, _ = cli(ledger_url, "replay", "t1", capsys=capsys)
    assert code == 1
    unequal = [r["projection"] for r in map(json.loads, out.splitlines()) if not r["equal"]]
    assert unequal == ["esper_training"]
    assert cli(ledger_url, "replay", "no-such-run", capsys=capsys)[0] == 2


HAS_SESSION = importlib.util.find_spec("labledger.lab.esper.session") is not None


@pytest.mark.skipif(not HAS_SESSION, reason="needs labledger.lab.esper.session (run_session)")
def test_held_out_comparison_runs_both_policies(backend: Backend, tmp_path: Path) -> None:
    from labledger.lab.esper.session import SessionConfig, run_session
    from labledger.lab.esper.simic import (
        SimicConfig,
        compare_with_heuristic,
        record_policy_update,
        train_policy,
    )
    from tests.projections.test_esper_training import built

    with fresh_ledger(backend) as store:
        for seed in (0, 1):
            run_session(store, SessionConfig(epochs=4, seed=seed), run_id=f"train-{seed}")
        from labledger.projections.training_data import write_training_set

        rows, _ = built(store)
        out = tmp_path / "t.pt"
        write_training_set(rows, out, head_position=store.head(), head_hash="0" * 64, pending=0)
        config = SimicConfig(epochs=10)
        checkpoint, report = train_policy(out, config)
        sha, _ = record_policy_update(store, checkpoint, report, config)
        result = compare_with_heuristic(store, sha, [50], epochs=3)
    assert [s.seed for s in result.heuristic] == [50] == [s.seed for s in result.learned]
    assert result.learned[0].policy == f"ckpt:{sha}" and result.heuristic[0].policy == "heuristic"
    for score in (*result.heuristic, *result.learned):
        expected = score.final_accuracy / ((score.host_params + score.params_added) / 1000)
        assert score.score == pytest.approx(expected, abs=1e-6)
    assert result.learned_wins == (result.learned_mean > result.heuristic_mean)
