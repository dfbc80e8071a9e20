"""Esper sessions end to end on both backends (issue #7): determinism, forged and replayed
commands, fault drills, SIGKILL + resume, training-set export, plot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from torch.utils.data import DataLoader

import labledger
from labledger import EventStore
from labledger.cli.main import run as cli
from labledger.errors import CommandRefused as Refused
from labledger.events import Event
from labledger.events.esper import AdaptationCommand, FieldReport, RollbackPerformed, SeedPruned
from labledger.events.esper import SystemStateReported as State
from labledger.events.runs import Heartbeat, RunFinished, RunResumed
from labledger.events.security import CommandRejected
from labledger.events.telemetry import TelemetryPacket, TelemetryPriority
from labledger.events.typed import Typed, typed
from labledger.lab.esper._run import ESPER_RUNS, Run, commands_stream
from labledger.lab.esper.session import SessionConfig, run_session
from labledger.projections.esper_training import FEATURE_NAMES
from labledger.security import REJECTIONS_STREAM, KeyRing
from labledger.store import NewEvent, open_store
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

TOL = 1e-6
"""Same seed, same numbers: single-threaded deterministic torch; this is the stated tolerance."""


@pytest.fixture
def store(backend: Backend) -> Iterator[EventStore]:
    with fresh_ledger(backend, KeyRing({"lab": b"k" * 32})) as s:
        yield s


def items(store: EventStore, run_id: str) -> list[Typed[Event]]:
    return list(typed(store.read_stream(ESPER_RUNS.stream(run_id))))


def numbers(run: list[Typed[Event]]) -> list[tuple[int, float, float]]:
    return [
        (e.metrics.epoch, e.metrics.loss, e.metrics.accuracy)
        for e in (i.event for i in run)
        if isinstance(e, State)
    ]


def test_a_seeded_run_is_deterministic_and_adapts(store: EventStore) -> None:
    a = run_session(store, SessionConfig(epochs=5, seed=0), run_id="a")
    run_session(store, SessionConfig(epochs=5, seed=0), run_id="b")
    ia, ib = items(store, "a"), items(store, "b")
    assert [i.record.type for i in ia] == [i.record.type for i in ib]
    for (ea, la, aa), (eb, lb, ab) in zip(numbers(ia), numbers(ib), strict=True):
        assert ea == eb and abs(la - lb) <= TOL and abs(aa - ab) <= TOL
    assert a.tally.accepted == 2 and a.final_accuracy > 0.85  # germinate, fossilize
    types = [i.record.type for i in ia]
    assert types[:3] == ["run.RunStarted", "esper.KernelRegistered", "esper.KernelRegistered"]
    assert types[-1] == "run.RunFinished"
    for t in (
        "esper.SeedGerminated",
        "esper.SeedStageChanged",
        "esper.SeedGateEvaluated",
        "esper.SeedFossilized",
        "security.CommandAccepted",
        "esper.FieldReport",
    ):
        assert t in types
    cmds = [i.event for i in typed(store.read_stream(commands_stream("a")))]
    assert [c.operation.value for c in cmds if isinstance(c, AdaptationCommand)] == [
        "GERMINATE",
        "FOSSILIZE",
    ]


def test_forged_and_replayed_commands_are_rejected_recorded_and_training_goes_on(
    store: EventStore,
) -> None:
    refused: list[str] = []

    def inject(run: Run, epoch: int) -> None:
        if epoch != 2:
            return
        (admitted,) = run.store.read_stream(commands_stream(run.run_id))
        cmd = typed([admitted]).__next__().event
        assert isinstance(cmd, AdaptationCommand)
        replay = NewEvent(type=admitted.type, data=admitted.data, run_id=run.run_id)
        forged_cmd = msgspec.structs.replace(
            cmd, target_slot="r1", security=msgspec.structs.replace(cmd.security, nonce="forged-1")
        )
        for event in (replay, forged_cmd.to_new_event(run_id=run.run_id)):
            try:
                run.store.append(commands_stream(run.run_id), [event])
            except Refused as exc:
                refused.append(exc.reason)
        # A forged command that reached the log by a path without the gate: Kasmina refuses it.
        with open_store(run.store.url) as raw:
            bypass = msgspec.structs.replace(
                forged_cmd, security=msgspec.structs.replace(cmd.security, nonce="forged-2")
            )
            raw.append(commands_stream(run.run_id), [bypass.to_new_event(run_id=run.run_id)])

    summary = run_session(store, SessionConfig(epochs=4, seed=0), run_id="inj", hook=inject)
    assert refused == ["replayed_nonce", "bad_signature"]
    gate_records = [i.event for i in typed(store.read_stream(REJECTIONS_STREAM))]
    assert [r.reason.value for r in gate_records if isinstance(r, CommandRejected)] == refused
    run = items(store, "inj")
    (by_kasmina,) = [i for i in run if isinstance(i.event, CommandRejected)]
    assert (
        by_kasmina.event.reason.value == "bad_signature"
        and by_kasmina.record.actor == "esper.kasmina"
    )
    alerts = [
        i.event
        for i in run
        if isinstance(i.event, TelemetryPacket) and i.event.priority is TelemetryPriority.CRITICAL
    ]
    assert alerts and alerts[0].events[0].description == "command_rejected"
    assert summary.tally.rejected_by_kasmina == 1
    assert isinstance(run[-1].event, RunFinished) and len(numbers(run)) == 4


def test_divergence_rolls_back_and_a_failing_kernel_is_isolated(store: EventStore) -> None:
    cfg = SessionConfig(epochs=5, seed=0, diverge_epoch=3, blueprints=("broken_shape",))
    summary = run_session(store, cfg, run_id="drill")
    run = items(store, "drill")
    (rollback,) = [i.event for i in run if isinstance(i.event, RollbackPerformed)]
    assert rollback.epoch == 3 and rollback.checkpoint_id == "epoch-2"
    packets = [i.event for i in run if isinstance(i.event, TelemetryPacket)]
    critical = [p for p in packets if p.priority is TelemetryPriority.CRITICAL]
    assert critical[0].source == "tolaria" and critical[0].events[0].description == "rollback"
    high = [p for p in packets if p.priority is TelemetryPriority.HIGH]
    assert high and high[0].events[0].description == "kernel_failure"
    assert high[0].events[0].attributes["fallback"] == "identity"
    pruned = next(i.event for i in run if isinstance(i.event, SeedPruned))
    assert pruned.reason.startswith("circuit breaker open: kernel output shape")
    accuracy = [a for _, _, a in numbers(run)]
    assert accuracy[3] > 0.5 and summary.tally.rollbacks == 1  # restored, not diverged


def test_prefetch_past_its_budget_is_a_recorded_timeout(store: EventStore) -> None:
    cfg = SessionConfig(epochs=3, seed=0, prefetch_budget_s=0.05, prefetch_delay_s=0.3)
    run_session(store, cfg, run_id="slow")
    run = items(store, "slow")
    notes = [e for i in run if isinstance(i.event, TelemetryPacket) for e in i.event.events]
    assert "prefetch_timeout" in [n.description for n in notes]
    assert "esper.SeedGerminated" not in [i.record.type for i in run]


def test_training_set_export_loads_in_a_dataloader(store: EventStore, tmp_path: Path) -> None:
    from labledger.projections.training_data import TrainingSetDataset

    run_session(store, SessionConfig(epochs=5, seed=0), run_id="ts")
    out = tmp_path / "ts.pt"
    assert cli(["--db", store.url, "esper", "training-set", "export", "--out", str(out)]) == 0
    loader = DataLoader(TrainingSetDataset(out), batch_size=2)
    (batch,) = list(loader)
    assert batch["observation"].shape == (2, len(FEATURE_NAMES))
    assert batch["next"]["observation"].shape == (2, len(FEATURE_NAMES))
    assert batch["next"]["reward"].shape == (2, 1) and batch["action"]["op"].shape == (2,)
    png = tmp_path / "ts.png"
    assert cli(["--db", store.url, "esper", "plot", "ts", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sigkill_mid_training_then_resume_from_the_log(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = "lab:" + (b"k" * 32).hex()
    monkeypatch.setenv("LABLEDGER_KEYS", keys)
    src = str(Path(labledger.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "LABLEDGER_KEYS": keys}
    args = ["--db", store.url, "esper", "train", "--epochs", "12", "--seed", "0", "--run-id", "k"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "labledger", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        beats = [i for i in items(store, "k") if isinstance(i.event, Heartbeat)]
        if len(beats) >= 3:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not any(isinstance(i.event, RunFinished) for i in items(store, "k"))
    assert cli(["--db", store.url, "esper", "train", "--resume", "k"]) == 0
    assert '"attempt":1' in capsys.readouterr().out
    run = items(store, "k")
    (resumed,) = [i.event for i in run if isinstance(i.event, RunResumed)]
    assert resumed.checkpoint_sha256 is not None and isinstance(run[-1].event, RunFinished)
    after = [i for i in run if i.position > resumed.checkpoint_position]
    by_epoch = {e: (loss, acc) for e, loss, acc in numbers(after)}
    before = {
        e: v for e, *v in numbers([i for i in run if i.position <= resumed.checkpoint_position])
    }
    assert sorted({*before, *by_epoch}) == list(range(12))  # no epoch lost
    reference = run_session(store, SessionConfig(epochs=12, seed=0), run_id="ref")
    ref = {e: (loss, acc) for e, loss, acc in numbers(items(store, "ref"))}
    for epoch, (loss, acc) in by_epoch.items():  # the replayed epochs match an unbroken run
        assert abs(loss - ref[epoch][0]) <= TOL and abs(acc - ref[epoch][1]) <= TOL
    reports = [i.event.command_id for i in run if isinstance(i.event, FieldReport)]
    assert len(reports) == len(set(reports)) and reference.final_accuracy > 0.9
