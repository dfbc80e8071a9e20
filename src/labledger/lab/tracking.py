"""Your own runs in the ledger: ``labledger.track`` for any training script.

::

    with labledger.track("sqlite:///lab.db", experiment="mnist", params={"lr": 0.01}) as run:
        for step in range(100):
            run.log(step=step, loss=loss, acc=acc)

A tracked run is an ordinary run of subsystem ``track`` (``run.RunStarted``
with the params as its config, heartbeats, ``run.RunFinished``), so it shows
up in ``labledger runs``, ``runs show``, ``runs compare`` and the dashboard
beside the lab's own runs, and the reaper abandons it if the script dies
without a word.

``log`` only buffers. A flush turns the buffered points into one
``track.MetricsLogged`` plus a heartbeat and appends them as one batch — one
durable commit, which the store's group commit shares with other writers — so
logging every step costs a commit per flush, not per step. Points are durable
once :meth:`TrackedRun.flush` returns; it runs every ``flush_every`` points
and on exit. An exception leaving the ``with`` block finishes the run as
``failed`` (with the exception in its detail) and is re-raised.
"""

from __future__ import annotations

import math
import platform
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from labledger._version import __version__
from labledger.errors import UsageError
from labledger.events._types import Scalar
from labledger.events.runs import RunOutcome, RunStarted, Subsystem
from labledger.events.track import MAX_POINTS, MetricPoint, MetricsLogged
from labledger.lab.runs import RunKind, RunLog
from labledger.store import AppendResult, EventStore

TRACK = RunKind("track", uuid.UUID("0b7e4b1c-3f7a-4d55-9a63-17000000aa17"), actor="track")
"""Tracked runs: stream ``track-<run_id>``; the namespace of their event ids (fixed)."""
FLUSH_EVERY = 500
"""Points buffered before a flush happens on its own."""


def _finite(name: str, value: Any) -> float:
    try:
        number = float(value)  # also a torch / numpy scalar
    except (TypeError, ValueError):
        raise UsageError(f"metric {name}={value!r}: not a number") from None
    if not math.isfinite(number):
        raise UsageError(f"metric {name}={value!r}: not finite (a ledger keeps finite numbers)")
    return number


def _params(params: Mapping[str, Any]) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for key, value in params.items():
        if value is None or isinstance(value, str | bool | int | float):
            out[str(key)] = value
        else:
            out[str(key)] = str(value)  # a path, an enum, a dtype: kept as its text
    return out


class TrackedRun:
    """One tracked run: :meth:`log` metrics, :meth:`flush` them, finish on exit.

    Args:
        store: the ledger (opened by :func:`track`, or yours).
        experiment: what the run belongs to (``runs`` shows it; ``compare`` lines up runs).
        params: the run's parameters (scalars; other values are kept as text).
        run_id: default ``t<12 hex digits>``.
        flush_every: points buffered before a flush happens on its own.
        heartbeat_interval_s: the beat the run promises; the reaper allows three missed.
        owns_store: close ``store`` when the run ends.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        experiment: str,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        flush_every: int = FLUSH_EVERY,
        heartbeat_interval_s: float = 300.0,
        owns_store: bool = False,
    ) -> None:
        if not 1 <= flush_every <= MAX_POINTS:
            raise UsageError(f"flush_every={flush_every}: between 1 and {MAX_POINTS}")
        self.store, self.experiment = store, experiment
        self.params = _params(params or {})
        self.run_id = run_id or f"t{uuid.uuid4().hex[:12]}"
        self.flush_every, self.heartbeat_interval_s = flush_every, heartbeat_interval_s
        self._owns_store = owns_store
        self._log = RunLog(store, TRACK, self.run_id)
        self._points: list[MetricPoint] = []
        self._flushes = 0
        self._next_step = 0
        self._flushed_at = time.monotonic()

    @property
    def stream(self) -> str:
        return self._log.stream

    def start(self) -> AppendResult:
        """Write the run's ``run.RunStarted`` (``with`` does it for you)."""
        started = RunStarted(
            subsystem=Subsystem.TRACK,
            config={"experiment": self.experiment, **self.params},
            code_version=__version__,
            host=platform.node() or "localhost",
            heartbeat_interval_s=self.heartbeat_interval_s,
        )
        return self._log.start(started)

    def log(self, step: int | None = None, **metrics: Any) -> None:
        """Buffer the values of ``metrics`` at ``step`` (default: the last step + 1).

        Raises:
            UsageError: a value is not a finite number, or ``step`` is negative.
        """
        at = self._next_step if step is None else int(step)
        if at < 0:
            raise UsageError(f"step {step}: must be >= 0")
        if not metrics:
            return
        values = {name: _finite(name, value) for name, value in metrics.items()}
        self._points.append(MetricPoint(step=at, values=values))
        self._next_step = at + 1
        # Flush when the buffer is full, and often enough that the heartbeat it
        # carries keeps a slow script clear of the reaper (it allows three beats).
        beat_due = time.monotonic() - self._flushed_at >= self.heartbeat_interval_s
        if len(self._points) >= self.flush_every or beat_due:
            self.flush()

    def flush(self) -> AppendResult | None:
        """Append the buffered points (and a heartbeat) as one durable batch.

        Returns:
            Where the batch landed, or ``None`` when nothing was buffered.
        """
        if not self._points:
            return None
        self._flushes += 1
        batch = [self._log.new(MetricsLogged(points=self._points), "metrics", self._flushes)]
        batch.append(self._log.heartbeat(f"{self._next_step} steps"))
        result = self._log.append(batch)
        self._points, self._flushed_at = [], time.monotonic()
        return result

    def finish(self, outcome: RunOutcome = RunOutcome.SUCCEEDED, detail: str = "") -> None:
        """Flush, then write ``run.RunFinished`` (a second call does nothing)."""
        try:
            self.flush()
            self._log.finish(detail, outcome=outcome)
        finally:
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> TrackedRun:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
        elif isinstance(exc, KeyboardInterrupt):
            self.finish(RunOutcome.CANCELLED, "interrupted")
        else:
            self.finish(RunOutcome.FAILED, f"{type(exc).__name__}: {exc}"[:8000])


def track(
    url: str | None = None,
    *,
    experiment: str,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    store: EventStore | None = None,
    flush_every: int = FLUSH_EVERY,
) -> TrackedRun:
    """A tracked run in the ledger at ``url`` (or in ``store``), for a ``with`` block.

    Args:
        url: the ledger (default: ``$LABLEDGER_DB``, then ``sqlite:///labledger.db``).
        experiment: what the run belongs to.
        params: its parameters.
        run_id: default ``t<12 hex digits>``.
        store: an open store to use instead of ``url`` (it is not closed).
        flush_every: points buffered before a flush happens on its own.

    Returns:
        The run, not yet started: ``with track(...) as run`` starts it.

    Raises:
        SchemaNotInitialized: the ledger at ``url`` has no schema (``labledger init``).
    """
    from labledger.ledger import open_ledger

    owned = store is None
    opened = open_ledger(url) if store is None else store
    return TrackedRun(
        opened,
        experiment=experiment,
        params=params,
        run_id=run_id,
        flush_every=flush_every,
        owns_store=owned,
    )


class LedgerCallback:
    """A PyTorch Lightning-style callback that logs into a :class:`TrackedRun`.

    Lightning is not needed (nor imported): the hooks have Lightning's names and
    arguments, so ``Trainer(callbacks=[LedgerCallback(run)])`` works, and a
    plain loop calls them itself. Metrics come from ``trainer.callback_metrics``
    (a mapping of names to numbers or 0-d tensors); the step from
    ``trainer.global_step``.

    Args:
        run: the run to log into (its lifetime is yours: the callback never finishes it).
        every_n_steps: log training metrics every n-th batch.
    """

    def __init__(self, run: TrackedRun, every_n_steps: int = 1) -> None:
        self.run, self.every_n_steps = run, max(1, every_n_steps)

    def _log(self, trainer: Any, prefix: str = "") -> None:
        metrics = getattr(trainer, "callback_metrics", {}) or {}
        values = {f"{prefix}{k}": v for k, v in metrics.items() if _is_number(v)}
        if values:
            self.run.log(step=int(getattr(trainer, "global_step", 0)), **values)

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        if int(getattr(trainer, "global_step", 0)) % self.every_n_steps == 0:
            self._log(trainer)

    def on_validation_epoch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self._log(trainer)

    def on_train_epoch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self.run.flush()

    def on_fit_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self.run.flush()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.run.flush()  # what was logged before the failure stays


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):
        return False  # a non-scalar tensor, a string, …


__all__ = ["FLUSH_EVERY", "TRACK", "LedgerCallback", "TrackedRun", "track"]
