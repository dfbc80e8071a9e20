"""Harness 5 — a projection killed mid-batch, over and over.

:class:`~labledger.testing.faults.TallyProjection` is deliberately not
idempotent (``events = events + 1``), so an effect applied twice shows. A worker
runs it slowly; the parent SIGKILLs it right after a batch began, appends more
heartbeats, and checks that the read model equals a plain fold of the log up
to the projection's checkpoint — after every kill, and at the end after a
clean catch-up.

Broken variant caught here: an engine that commits the rows and the
checkpoint in two transactions (killed between them, the batch is applied twice).
"""

from __future__ import annotations

import random
import time

import pytest

from labledger import EventStore, NewEvent, init_store, open_store
from labledger.events.runs import Heartbeat
from labledger.projections import ProjectionEngine
from labledger.testing.backends import Backend
from labledger.testing.faults import FaultWorker, TallyProjection, tally_fold, tally_state
from tests.faults.harness import fault_seed, figure, scaled

KILLS = scaled(6, 100)


def append_heartbeats(store: EventStore, rng: random.Random, n: int) -> None:
    for _ in range(n):
        stream = f"run-{rng.randrange(4)}"
        event = Heartbeat(seq=rng.randrange(1000)).to_new_event()
        noise = NewEvent.from_json("test.Noise", {"x": 1})  # not handled: skipped in a batch
        store.append(stream, [event, noise] if rng.random() < 0.2 else [event])


def mismatch(store: EventStore) -> str:
    """'' when the read model equals the fold of the log up to its checkpoint."""
    engine = ProjectionEngine(store, [TallyProjection()])
    position, model = tally_state(engine)
    folded = tally_fold(list(store.read_all()), position)
    return "" if model == folded else f"at checkpoint {position}: {model} != fold {folded}"


def kill_projection(url: str, kills: int, seed: int, broken: str = "") -> tuple[list[str], int]:
    """(mismatches, kills that landed mid-batch)."""
    rng = random.Random(seed)
    mismatches, mid_batch = [], 0
    options = ["--batch", "25", "--pause-ms", "2", *(["--broken", broken] if broken else [])]
    for k in range(kills):
        with open_store(url) as store:
            append_heartbeats(store, rng, 40)
        with FaultWorker("project", url, *options, name=f"project-{k}") as worker:
            worker.expect("READY")
            wanted = "ROWS " if broken else "BEGIN "
            while not (line := worker.next_line() or "").startswith(wanted):
                assert line, worker.stderr()
            time.sleep(0 if broken else rng.uniform(0, 0.04))
            worker.sigkill()
            worker.drain()
            complete = [ln for ln in worker.lines if ln.endswith("\n")]
            mid_batch += complete[-1].startswith(("BEGIN ", "ROWS "))
        with open_store(url) as store:
            if problem := mismatch(store):
                mismatches.append(problem)
    with open_store(url) as store:  # and a clean finish
        ProjectionEngine(store, [TallyProjection()]).catch_up(TallyProjection.name)
        if problem := mismatch(store):
            mismatches.append(f"after the final catch-up {problem}")
    return mismatches, mid_batch


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_projection_killed_mid_batch_equals_a_fold(
    request: pytest.FixtureRequest, backend_name: str
) -> None:
    backend: Backend = request.getfixturevalue(f"{backend_name}_backend")
    url = backend.fresh_url()
    init_store(url)
    started = time.monotonic()
    kills = KILLS if backend_name == "sqlite" else scaled(3, 50)
    mismatches, mid = kill_projection(url, kills, fault_seed(f"projection kills ({backend_name})"))
    with open_store(url) as store:
        head = store.head()
    figure(
        f"5 projection kills [{backend_name}]",
        f"{kills} kills ({mid} mid-batch) of a non-idempotent projection over {head} events: "
        f"read model {'equals' if not mismatches else 'DIFFERS from'} a plain fold of the log "
        f"after every kill [{time.monotonic() - started:.0f}s]",
    )
    assert not mismatches, mismatches[:3]
    assert mid > 0


def test_harness_catches_rows_and_checkpoint_in_two_transactions(sqlite_backend: Backend) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    mismatches, _ = kill_projection(url, 2, fault_seed("projection (broken: split)"), "split-txn")
    figure("5 broken split transactions", f"harness found {len(mismatches)} mismatches")
    assert mismatches
