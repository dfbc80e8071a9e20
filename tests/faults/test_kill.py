"""Harness 1 — kill -9 during continuous appends (issue #8).

Three writer processes append batches of 1-5 events over 5 streams; SQLite
checkpoints every 4 WAL pages so kills land mid-checkpoint. Each kill SIGKILLs
one writer at a random moment; its replacement first appends again (same ids)
the batch it died in, and the log is checked against the acknowledgement
ledger while the survivors keep appending. On PostgreSQL the writers are
killed too, and separately the *server* is SIGKILLed and restarted under
writers that ride out the outage.

Broken variants caught here: a writer that acknowledges before its commit,
and PostgreSQL with ``synchronous_commit = off`` under a server kill.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack

import pytest

from labledger import init_store, open_store
from labledger.testing.backends import Backend, PostgresBackend
from labledger.testing.faults import FaultWorker
from tests.faults.harness import (
    AckLedger,
    Findings,
    ThrowawayPostgres,
    fault_seed,
    figure,
    scaled,
)

WRITERS = 3
KILLS = scaled(8, 200)
PG_KILLS = scaled(4, 60)
SERVER_KILLS = scaled(2, 30)
MAX_DELAY_S = 0.25


def _wait_ack(worker: FaultWorker) -> None:
    """Block until the worker acknowledged something (it is appending for real)."""
    while (line := worker.next_line()) is not None:
        if line.startswith(("ACK ", "RETRY ")):
            return
    raise AssertionError(f"{worker.name} ended early: {worker.lines[-5:]}\n{worker.stderr()}")


def _carry(ledger: AckLedger, worker: FaultWorker, retry: str) -> str:
    """What the next writer must append again: the open batch, or an unfinished retry."""
    if (open_batch := ledger.killed(worker.name)) or not retry:
        return open_batch
    return "" if any(line.startswith("RETRY ") for line in worker.lines) else retry


def kill_writers(
    url: str, kills: int, seed: int, *, broken: str = ""
) -> tuple[AckLedger, Findings]:
    """SIGKILL one of 3 running writers at a random moment, ``kills`` times; all violations.

    The killed writer's replacement first appends again (same ids) the batch it died
    in; the log is checked after every kill while the two survivors keep appending.
    """
    rng = random.Random(seed)
    ledger, total = AckLedger(), Findings()
    spawned = 0

    def spawn(retry: str) -> FaultWorker:
        nonlocal spawned
        spawned += 1
        options = ["--seed", str(rng.getrandbits(32)), "--wal-autocheckpoint", "4"]
        options += (["--retry", retry] if retry else []) + (["--broken", broken] if broken else [])
        return FaultWorker("writer", url, *options, name=f"w{spawned}")

    workers = [spawn("") for _ in range(WRITERS)]
    retries = [""] * WRITERS
    try:
        for _ in range(kills):
            victim = rng.randrange(WRITERS)
            _wait_ack(workers[victim])
            time.sleep(rng.uniform(0, MAX_DELAY_S))
            dead = workers[victim]
            dead.sigkill()
            dead.drain()
            ledger.sync(dead)
            retries[victim] = _carry(ledger, dead, retries[victim])
            dead.close()
            workers[victim] = spawn(retries[victim])
            total.merge(ledger.live_check(url, workers))
        for w in workers:
            w.sigkill()
            w.drain()
            ledger.sync(w)
            ledger.killed(w.name)
        with open_store(url) as store:
            events = list(store.read_all())
            ledger.unresolved(events)
            total.merge(ledger.check(store, events))
    finally:
        for w in workers:
            w.close()
    return ledger, total


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_writers_killed_lose_nothing_acknowledged(
    request: pytest.FixtureRequest, backend_name: str
) -> None:
    backend: Backend = request.getfixturevalue(f"{backend_name}_backend")
    kills = KILLS if backend_name == "sqlite" else PG_KILLS
    url = backend.fresh_url()
    init_store(url)
    started = time.monotonic()
    ledger, found = kill_writers(url, kills, fault_seed(f"kill -9 writers ({backend_name})"))
    summary = ledger.summary(found, f"{kills} kills of {WRITERS} concurrent writers")
    figure(f"1 kill -9 writers [{backend_name}]", f"{summary} [{time.monotonic() - started:.0f}s]")
    assert not found.violations, found.violations[:10]
    assert len(ledger.acks) >= kills


def test_harness_catches_acknowledging_before_commit(sqlite_backend: Backend) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    _, found = kill_writers(
        url, 3, fault_seed("kill -9 (broken: ACK before commit)"), broken="ack-early"
    )
    figure("1 broken ack-early", f"harness found {found.lost} lost acknowledged batches")
    assert found.lost > 0


# -- PostgreSQL server killed under the writers --------------------------------------------


def server_kills(
    cluster: ThrowawayPostgres, kills: int, seed: int, *, broken: str = ""
) -> tuple[AckLedger, Findings]:
    rng = random.Random(seed)
    url = PostgresBackend(cluster.url).fresh_url()
    init_store(url)
    ledger, total = AckLedger(), Findings()
    options = ["--persist", *(["--broken", broken] if broken else [])]
    workers = [
        FaultWorker("writer", url, "--seed", str(rng.getrandbits(32)), *options, name=f"pg{i}")
        for i in range(WRITERS)
    ]
    with ExitStack() as stack:
        for w in workers:
            stack.callback(w.close)
        for _ in range(kills):
            for w in workers:
                _wait_ack(w)
            time.sleep(rng.uniform(0, MAX_DELAY_S))
            cluster.kill()
            cluster.start()
            for w in workers:  # the first append after the restart
                _wait_ack(w)
            total.merge(ledger.live_check(url, workers))
    return ledger, total


def test_postgres_server_killed_loses_nothing_acknowledged(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    started = time.monotonic()
    ledger, found = server_kills(throwaway_postgres, SERVER_KILLS, fault_seed("server kill"))
    summary = ledger.summary(found, f"{SERVER_KILLS} PostgreSQL server kills")
    figure("1 kill -9 PostgreSQL server", f"{summary} [{time.monotonic() - started:.0f}s]")
    assert not found.violations, found.violations[:10]


def test_harness_catches_asynchronous_commit(throwaway_postgres: ThrowawayPostgres) -> None:
    _, found = server_kills(
        throwaway_postgres, 2, fault_seed("server kill (broken: async)"), broken="async-commit"
    )
    figure(
        "1 broken synchronous_commit=off", f"harness found {found.lost} lost acknowledged batches"
    )
    assert found.lost > 0
