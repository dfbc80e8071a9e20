"""``toolgen run``: the tournament and RepairLab together, in one anyio task group.

The tournament runs its trials in a worker thread (subprocesses and appends
block); RepairLab follows the run's handoffs concurrently. Before it breeds a
generation the tournament waits until RepairLab has answered every handoff so
far (the challengers must be in the archive, whatever the timing). When every
trial is recorded, the run waits for the last answers, then records
``RunFinished`` and stops the worker. Killed at any point, the run
is continued by :func:`run_toolgen` with ``resume=True`` (see ``tournament.py``
and ``repairlab.py`` for why nothing is lost or duplicated).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import anyio.to_thread
import msgspec

from labledger.lab.toolgen import tournament
from labledger.lab.toolgen.plan import Trial
from labledger.lab.toolgen.repairlab import RepairLab
from labledger.lab.toolgen.tournament import TournamentConfig, TournamentState
from labledger.store import AppendResult, EventStore

POLL_S = 0.05


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What one invocation did."""

    run_id: str
    attempt: int
    trials: int
    trials_run: int
    handoffs: int
    repaired: int


async def _drain(repairlab: RepairLab, state: TournamentState) -> None:
    while not state.handoffs <= repairlab.answered:
        await anyio.sleep(POLL_S)


async def run_toolgen(
    store: EventStore,
    run_id: str,
    config: TournamentConfig | None = None,
    *,
    resume: bool = False,
    on_trial: Callable[[Trial, AppendResult, TournamentState], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run (or resume) tournament ``run_id`` with RepairLab until both are done.

    Args:
        store: the ledger.
        run_id: the run's id (new unless ``resume``).
        config: the settings of a new run (ignored on resume: they come from the log).
        resume: continue an existing run from what its streams hold.
        on_trial: called after each recorded trial (progress display).
        log: one line per repair attempt.

    Raises:
        UsageError: a new run that exists, or a resumed run that does not.
    """
    if resume:
        state = await anyio.to_thread.run_sync(tournament.resume_run, store, run_id)
    else:
        assert config is not None, "a new run needs a config"
        state = await anyio.to_thread.run_sync(tournament.start_run, store, run_id, config)
    before = len(state.done)
    worker = RepairLab(
        store,
        run_id=run_id,
        timeout_s=state.config.repair_timeout_s,
        max_attempts=state.config.repair_attempts,
        timed_runs=state.config.timed_runs,
        log=log,
    )

    def wait_for_repairs() -> None:  # in the tournament's thread: RepairLab runs meanwhile
        while not state.handoffs <= worker.answered:
            time.sleep(POLL_S)

    def trial_done(trial: Trial, result: AppendResult) -> None:
        if on_trial is not None:
            on_trial(trial, result, state)

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await anyio.to_thread.run_sync(
            tournament.run_epochs, store, run_id, state, trial_done, wait_for_repairs
        )
        await _drain(worker, state)
        tg.cancel_scope.cancel()
    detail = f"{len(state.done)} trials, {len(state.handoffs)} handoffs"
    await anyio.to_thread.run_sync(tournament.finish_run, store, run_id, state, detail)
    return RunSummary(
        run_id=run_id,
        attempt=state.attempt,
        trials=len(state.done),
        trials_run=len(state.done) - before,
        handoffs=len(state.handoffs),
        repaired=len(worker.repaired),
    )
