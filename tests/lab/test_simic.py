"""Simic and the learned Tamiyo (issue #7): training set → DataLoader → update → checkpoint
blob → decisions; the CLI; the refusal of bad checkpoints."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import msgspec
import pytest
import torch

from labledger.errors import CorruptionDetected
from labledger.events import decode
from labledger.events.esper import (
    ActionHeads,
    AdaptationCommand,
    BlendStyle,
    LifecycleOp,
    PolicyUpdated,
    SeedStage,
    SeedStageChanged,
    TrainingMetrics,
)
from labledger.lab.esper.policy import LiveState
from labledger.lab.esper.simic import POLICY_STREAM, SimicConfig, train_policy
from labledger.lab.esper.tamiyo_learned import MAGIC, load_policy, read_checkpoint
from labledger.ledger import open_ledger
from labledger.projections.training_data import TrainingSetDataset
from labledger.security import KeyRing
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import Log
from tests.cli.test_cli import cli
from tests.projections.test_esper_training import (
    KEY_ID,
    SECRET,
    append_esper_log,
    command,
    report,
    state,
)

FAST = SimicConfig(epochs=150, lr=1e-2, hidden=32, seed=3)


def _germinate(cid: str, blueprint: str) -> AdaptationCommand:
    heads = ActionHeads(blueprint=blueprint, style=BlendStyle.RESIDUAL, alpha_target=0.8)
    return msgspec.structs.replace(command(cid), blueprint_id=blueprint, heads=heads)


def synthetic_log(runs: int = 8, per_run: int = 6, seed: int = 7) -> Log:
    """Decisions whose field reports reward a learnable rule.

    Germinating on a dormant slot pays at low accuracy (``wide`` more than
    ``narrow``) and costs at high accuracy; on a HOLDING slot fossilizing pays
    and pruning costs.
    """
    rng = random.Random(seed)
    log: list[tuple[str, object]] = []
    for r in range(runs):
        run = f"t{r}"
        for i in range(per_run):
            acc = rng.uniform(0.1, 0.9)
            log.append((run, state(i, 2.0 - acc, acc)))
            cid = f"{run}-c{i}"
            if i == per_run - 1:
                held = SeedStageChanged(
                    slot="s1",
                    seed_id=f"{run}-seed",
                    epoch=i,
                    command_id=None,
                    from_stage=SeedStage.BLENDING,
                    to_stage=SeedStage.HOLDING,
                    alpha=1.0,
                )
                op = rng.choice([LifecycleOp.FOSSILIZE, LifecycleOp.PRUNE])
                gain = 0.04 if op is LifecycleOp.FOSSILIZE else -0.02
                log += [(run, held), (run, command(cid, "s1", op)), (run, report(cid, 0.0, gain))]
                continue
            blueprint = rng.choice(["wide", "narrow"])
            gain = (0.06 if blueprint == "wide" else 0.02) if acc < 0.5 else -0.04
            log += [(run, _germinate(cid, blueprint)), (run, report(cid, 0.0, gain))]
    return log  # type: ignore[return-value]


@pytest.fixture
def exported(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[str, Path]:
    """A ledger holding :func:`synthetic_log`, and its exported training set."""
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    with open_ledger(url, keyring=KeyRing({KEY_ID: SECRET})) as store:
        append_esper_log(store, synthetic_log())
    out = tmp_path / "train.pt"
    assert cli(url, "esper", "training-set", "export", "--out", str(out), capsys=capsys)[0] == 0
    return url, out


def live(acc: float, **slots: SeedStage) -> LiveState:
    metrics = TrainingMetrics(
        epoch=2,
        step=200,
        loss=2.0 - acc,
        accuracy=acc,
        grad_norm=1.5,
        learning_rate=0.01,
        throughput_samples_per_s=None,
    )
    return LiveState(metrics=metrics, slots={k: (v, 1.0) for k, v in slots.items()})


def test_export_loads_in_a_dataloader_and_one_update_runs(exported: tuple[str, Path]) -> None:
    _, path = exported
    data = TrainingSetDataset(path, torch.float32)
    assert len(data) == 48
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=16, shuffle=False)))
    assert batch["observation"].shape == (16, len(data.feature_names))
    assert batch["action"]["op"].dtype == torch.int64 and batch["next"]["reward"].shape == (16, 1)
    checkpoint, report = train_policy(path, SimicConfig(epochs=1))
    assert checkpoint.startswith(MAGIC) and report.transitions == 48
    assert report.train + report.held_out == 48 and report.policy_version.startswith("simic-")
    assert report.metrics.approx_kl == 0.0  # no previous policy


def test_learned_policy_round_trips_through_a_blob_and_decides(exported: tuple[str, Path]) -> None:
    url, path = exported
    checkpoint, report = train_policy(path, FAST)
    assert train_policy(path, FAST)[0] == checkpoint  # deterministic for a seed
    with open_ledger(url) as store:
        sha = store.put_blob(checkpoint)
        policy = load_policy(store, sha)
    assert policy.version == report.policy_version
    low = policy.decide(live(0.2), ["s0"])
    assert low is not None and low.operation is LifecycleOp.GERMINATE
    assert (low.slot, low.blueprint_id, low.heads.blueprint) == ("s0", "wide", "wide")
    assert low.metadata.policy_version == report.policy_version
    assert 0.0 <= low.metadata.risk <= 1.0 and "GERMINATE" in low.metadata.reason
    assert low.metadata.coverage == pytest.approx(1 - 7 / 33, abs=1e-6)  # no health/priority
    assert policy.decide(live(0.85), ["s0"]) is None  # predicted to cost: wait
    held = policy.decide(live(0.85, s1=SeedStage.HOLDING), ["s1"])
    assert held is not None and held.operation is LifecycleOp.FOSSILIZE
    assert policy.decide(LiveState(), []) is None


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CorruptionDetected):
        read_checkpoint(b"not a checkpoint")
    # a pickle that would run code: weights_only refuses it, nothing executes
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    blob = io.BytesIO()
    torch.save({"x": Evil()}, blob)
    header = b'{"format_version":1}'
    with pytest.raises(CorruptionDetected):
        read_checkpoint(MAGIC + len(header).to_bytes(8, "big") + header + blob.getvalue())
    assert not marker.exists()


def test_cli_simic_records_policy_updates(
    exported: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, path = exported
    code, out, err = cli(url, "esper", "simic", "--epochs", "20", capsys=capsys)
    assert code == 0, err
    first = json.loads(out)
    assert "ckpt:" + first["checkpoint_sha256"] in err and first["transitions"] == 48
    code, out, err = cli(
        url, "esper", "simic", "--epochs", "25", "--from-export", str(path), capsys=capsys
    )
    assert code == 0, err
    second = json.loads(out)
    with open_ledger(url) as store:
        records = store.read_stream(POLICY_STREAM)
        events = [decode(r.type, r.schema_version, r.data) for r in records]
        assert all(isinstance(e, PolicyUpdated) for e in events) and len(events) == 2
        one, two = events
        assert isinstance(one, PolicyUpdated) and isinstance(two, PolicyUpdated)
        assert one.checkpoint_sha256 == first["checkpoint_sha256"]
        assert (two.previous_version, two.transitions) == (one.policy_version, 48)
        assert two.metrics.approx_kl > 0.0 and two.hyperparameters["epochs"] == 25
        assert load_policy(store, two.checkpoint_sha256).version == second["policy_version"]
