"""Your own runs in the ledger (issue #17): ``labledger.track`` and the Lightning-style callback."""

from __future__ import annotations

from typing import Any

import pytest

import labledger
from labledger.errors import UsageError
from labledger.events.runs import RunFinished, RunOutcome, RunStarted, Subsystem
from labledger.events.track import MetricsLogged
from labledger.events.typed import typed
from labledger.lab.tracking import LedgerCallback, TrackedRun
from labledger.ledger import read_typed
from labledger.store import init_store
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger


def test_metrics_are_batched_and_durable_at_flush(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        run = TrackedRun(store, experiment="toy", params={"lr": 0.1}, run_id="t1", flush_every=4)
        run.start()
        head = store.head()
        for step in range(3):
            run.log(step=step, loss=1.0 / (step + 1))
        assert store.head() == head  # buffered: nothing written yet
        run.log(step=3, loss=0.25)  # the 4th point fills the buffer: one batch
        batches = [t.event for t in read_typed(store, head + 1, types=["track.MetricsLogged"])]
        assert [len(b.points) for b in batches] == [4]  # type: ignore[attr-defined]
        run.log(loss=0.2)  # step defaults to the last + 1
        run.flush()
        run.finish()
        events = [t.event for t in typed(store.read_stream(run.stream))]
        assert isinstance(events[0], RunStarted) and events[0].subsystem is Subsystem.TRACK
        assert events[0].config == {"experiment": "toy", "lr": 0.1}
        points = [p for e in events if isinstance(e, MetricsLogged) for p in e.points]
        assert [(p.step, p.values["loss"]) for p in points][-1] == (4, 0.2)
        assert isinstance(events[-1], RunFinished) and events[-1].outcome is RunOutcome.SUCCEEDED


def test_a_failing_script_marks_its_run_failed_and_keeps_its_metrics(backend: Backend) -> None:
    url = backend.fresh_url()
    init_store(url)
    tracked = labledger.track(url, experiment="toy", params={"lr": 9}, run_id="bad")
    with pytest.raises(RuntimeError, match="diverged"), tracked as run:
        run.log(step=0, loss=3.0)
        raise RuntimeError("diverged")
    lab = labledger.open_lab(url)
    try:
        runs = lab.runs()
        row = runs[runs.run_id == "bad"].iloc[0]
        assert (row.status, row.outcome, row.metrics) == ("finished", "failed", {"loss": 3.0})
        assert list(lab.metrics("bad").loss) == [3.0]
    finally:
        lab.close()


def test_bad_values_are_refused_before_anything_is_written(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        run = TrackedRun(store, experiment="toy")
        run.start()
        head = store.head()
        for bad in (float("nan"), float("inf"), "fast"):
            with pytest.raises(UsageError):
                run.log(step=0, loss=bad)
        with pytest.raises(UsageError):
            run.log(step=-1, loss=1.0)
        run.flush()
        assert store.head() == head


class _Trainer:
    """What the callback reads from a Lightning Trainer, and nothing more."""

    def __init__(self) -> None:
        self.global_step = 0
        self.callback_metrics: dict[str, Any] = {}


def test_the_lightning_style_callback_logs_what_the_trainer_reports(backend: Backend) -> None:
    torch = pytest.importorskip("torch")
    with fresh_ledger(backend) as store:
        run = TrackedRun(store, experiment="cb", run_id="cb1")
        run.start()
        callback, trainer = LedgerCallback(run, every_n_steps=2), _Trainer()
        for step in range(4):
            trainer.global_step = step
            trainer.callback_metrics = {"loss": torch.tensor(1.0 / (step + 1)), "name": "x"}
            callback.on_train_batch_end(trainer, None, None, None, step)
        callback.on_train_epoch_end(trainer, None)  # flushes
        points = [
            p
            for t in read_typed(store, types=["track.MetricsLogged"])
            for p in t.event.points  # type: ignore[attr-defined]
        ]
        assert [p.step for p in points] == [0, 2]
        assert points[1].values == {"loss": pytest.approx(1 / 3)}
        run.finish()
