"""The projection engine: exactly-once batches, version bumps, swaps under readers, status."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from typing import ClassVar

import pytest
import sqlalchemy as sa

from labledger import EventStore, NewEvent, RecordedEvent
from labledger.events import Event
from labledger.events.runs import Heartbeat
from labledger.events.typed import Typed
from labledger.projections import Projection, ProjectionEngine, TableSet, Tx
from labledger.projections.checkpoint import CheckpointMoved, load
from labledger.projections.status import status
from labledger.testing.backends import Backend
from labledger.testing.profile import rounds
from labledger.testing.projection_contract import fresh_ledger


class BeatCounter(Projection):
    """Counts heartbeats per stream and sums their seq — cheap to check by hand."""

    name = "beats"
    version = 1
    handles: ClassVar[tuple[type[Event], ...]] = (Heartbeat,)

    def define(self, tables: TableSet) -> None:
        tables.add(
            "totals",
            sa.Column("stream", sa.Text, primary_key=True),
            sa.Column("beats", sa.BigInteger, nullable=False),
            sa.Column("seq_sum", sa.BigInteger, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        assert isinstance(item.event, Heartbeat)
        row = tx.get("totals", stream=item.record.stream)
        beats, seq_sum = (row.beats, row.seq_sum) if row else (0, 0)
        tx.upsert(
            "totals",
            {"stream": item.record.stream},
            beats=beats + 1,
            seq_sum=seq_sum + item.event.seq,
        )


class BeatCounterV2(BeatCounter):
    version = 2


def _beats(store: EventStore, n: int, streams: int = 3) -> None:
    for i in range(n):
        store.append(f"s{i % streams}", [Heartbeat(seq=i)])


def _totals(engine: ProjectionEngine) -> dict[str, tuple[int, int]]:
    with engine.read("beats") as tx:
        rows = tx.conn.execute(sa.select(tx.table("totals")))
        return {r.stream: (r.beats, r.seq_sum) for r in rows}


def _fold(n: int, streams: int = 3) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for i in range(n):
        beats, total = out.get(f"s{i % streams}", (0, 0))
        out[f"s{i % streams}"] = (beats + 1, total + i)
    return out


def test_catch_up_skips_other_types_and_counts_exactly(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        _beats(store, 20)
        store.append("noise", [NewEvent.from_json("mylab.Noise", {"x": 1})])
        engine = ProjectionEngine(store, [BeatCounter()], batch_size=3)
        cp = engine.catch_up("beats")
        assert (cp.position, cp.events_applied) == (21, 20)
        assert _totals(engine) == _fold(20)
        engine.catch_up("beats")  # nothing new: nothing applied twice
        assert _totals(engine) == _fold(20)


def test_a_second_runner_cannot_apply_a_batch_twice(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        _beats(store, 6)
        first = ProjectionEngine(store, [BeatCounter()], batch_size=2)
        second = ProjectionEngine(store, [BeatCounter()], batch_size=2)
        stale = first.ensure(first.get("beats"))
        second.catch_up("beats")
        records = list(store.read_all(1, limit=2))
        with pytest.raises(CheckpointMoved):
            first._apply_batch(first.get("beats"), stale, records)
        assert _totals(second) == _fold(6)


def test_runners_that_start_together_build_each_projection_once(backend: Backend) -> None:
    # Four processes' runners finding the same projection unbuilt must not all
    # CREATE its tables: the losers would fail (PostgreSQL: a pg_type unique violation).
    with fresh_ledger(backend) as store:
        _beats(store, 6)
        errors: list[BaseException] = []
        for n in range(5):
            proj = type(f"Beats{n}", (BeatCounter,), {"name": f"beats{n}"})()
            start = threading.Barrier(4)

            def runner(proj: Projection = proj, start: threading.Barrier = start) -> None:
                engine = ProjectionEngine(store, [proj])
                start.wait()
                try:
                    engine.catch_up(proj.name)
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=runner) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            engine = ProjectionEngine(store, [proj])
            with engine.read(proj.name) as tx:
                rows = tx.conn.execute(sa.select(tx.table("totals")))
                assert {r.stream: (r.beats, r.seq_sum) for r in rows} == _fold(6)


def test_a_runner_overtaken_between_batches_goes_on_from_the_other(backend: Backend) -> None:
    # A's unit of work is carried from batch to batch; B catching up in between makes
    # what A holds stale (rows B inserted, rows B changed). A must neither fail on a
    # duplicate key nor count an event twice.
    with fresh_ledger(backend) as store:
        _beats(store, 30, streams=10)
        first = ProjectionEngine(store, [BeatCounter()], batch_size=3)
        second = ProjectionEngine(store, [BeatCounter()], batch_size=3)
        overtaken: list[int] = []

        def after_each_batch(done: int, total: int) -> None:
            if not overtaken:
                overtaken.append(done)
                _beats(store, 6, streams=10)  # more log, so B's head is past A's
                second.catch_up("beats")

        cp = first.catch_up("beats", progress=after_each_batch)
        assert overtaken and cp.position == 36
        expected = _fold(30, streams=10)
        for i in range(6):
            beats, total = expected[f"s{i % 10}"]
            expected[f"s{i % 10}"] = (beats + 1, total + i)
        assert _totals(first) == expected


def test_version_bump_rebuilds_into_new_tables(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        _beats(store, 9)
        ProjectionEngine(store, [BeatCounter()]).catch_up("beats")
        engine = ProjectionEngine(store, [BeatCounterV2()])
        cp = engine.catch_up("beats")
        assert (cp.version, cp.generation, cp.position) == (2, 2, 9)
        assert _totals(engine) == _fold(9)
        assert status(engine)[0].state == "current"


def test_rebuild_while_readers_read_sees_old_or_new_never_half(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        _beats(store, 60)
        engine = ProjectionEngine(store, [BeatCounter()], batch_size=7)
        engine.catch_up("beats")
        expected = _fold(60)
        seen: list[dict[str, tuple[int, int]]] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def reader() -> None:
            reading = ProjectionEngine(store, [BeatCounter()])
            while not done.is_set():
                try:
                    seen.append(_totals(reading))
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for _ in range(3):
            engine.rebuild("beats")
        done.set()
        for t in threads:
            t.join()
        assert not errors, errors
        assert seen and all(state == expected for state in seen)


def test_status_reports_lag_and_stalls(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        engine = ProjectionEngine(store, [BeatCounter()])
        assert (status(engine)[0].state, status(engine)[0].lag_events) == ("not built", 0)
        _beats(store, 4)
        assert status(engine)[0].state == "not built"
        engine.catch_up("beats", until=2)
        behind = status(engine)[0]
        assert (behind.state, behind.lag_events, behind.checkpoint, behind.head) == (
            "behind",
            2,
            2,
            4,
        )
        stalled = status(engine, stall_after_s=-1)[0]
        assert stalled.stalled and stalled.state == "stalled"
        engine.catch_up("beats")
        assert status(engine, stall_after_s=-1)[0].state == "current"


KILL_WORKER = r"""
import sys, time
from labledger.ledger import open_ledger
from labledger.projections import ProjectionEngine
sys.path.insert(0, sys.argv[2])
from tests.projections.test_engine import BeatCounter
store = open_ledger(sys.argv[1], strict=False)
engine = ProjectionEngine(store, [BeatCounter()], batch_size=int(sys.argv[3]))
print("READY", flush=True)
# A short pause after each committed batch keeps the run longer than the kill
# window however fast the engine gets; kills still land inside batches too.
engine.catch_up("beats", progress=lambda done, total: time.sleep(0.003))
print("DONE", flush=True)
"""


EVENTS = 5000


def test_runner_killed_mid_batch_leaves_an_exactly_once_state(backend: Backend) -> None:
    import random
    import time
    from pathlib import Path

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    root = str(Path(__file__).resolve().parents[2])
    with fresh_ledger(backend) as store:
        # Enough batches that a kill within 0.25 s lands mid-way even now that a
        # batch flushes in bulk (issue #19 made catch-up several times faster).
        _beats(store, EVENTS, streams=5)
        url = store.url
        midway = 0
        probe = ProjectionEngine(store, [BeatCounter()])
        for _ in range(rounds(8)):
            proc = subprocess.Popen(
                [sys.executable, "-c", KILL_WORKER, url, root, str(rng.randint(5, 60))],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            time.sleep(rng.uniform(0.0, 0.25))
            proc.kill()
            proc.wait()
            proc.stdout.close()
            with probe.target.read() as conn:
                cp = load(conn, "beats")
            midway += cp is not None and 0 < cp.position < store.head()
        engine = ProjectionEngine(store, [BeatCounter()])
        engine.catch_up("beats")
        assert midway, f"seed {seed}: no kill landed mid-way; the test proved nothing"
        assert _totals(engine) == _fold(EVENTS, streams=5), f"seed {seed}, {midway} kills mid-way"
        live = engine.state_hash("beats")
        engine.rebuild("beats")
        assert engine.state_hash("beats") == live


FLUSH_KILL_WORKER = r"""
import os, signal, sys
from labledger.ledger import open_ledger
from labledger.projections import ProjectionEngine, base
sys.path.insert(0, sys.argv[2])
from tests.projections.test_engine import BeatCounter
store = open_ledger(sys.argv[1], strict=False)
engine = ProjectionEngine(store, [BeatCounter()], batch_size=int(sys.argv[3]))
engine.catch_up("beats", until=int(sys.argv[3]) * int(sys.argv[4]))  # committed batches
bulk_write = base.Tx.flush

def flush_then_die(self):
    bulk_write(self)  # the batch's bulk INSERT/UPDATE went out, its checkpoint not yet
    print("FLUSHED", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

base.Tx.flush = flush_then_die
engine.catch_up("beats")
"""


def test_sigkill_during_the_bulk_flush_keeps_the_old_checkpoint_and_rows(
    backend: Backend,
) -> None:
    """Killed after a batch's bulk writes but before its commit: nothing of it stays."""
    from pathlib import Path

    batch, committed = 40, 3
    root = str(Path(__file__).resolve().parents[2])
    with fresh_ledger(backend) as store:
        _beats(store, batch * (committed + 2), streams=4)
        proc = subprocess.run(
            [sys.executable, "-c", FLUSH_KILL_WORKER, store.url, root, str(batch), str(committed)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == -9, proc.stderr
        assert proc.stdout.split() == ["FLUSHED"]
        engine = ProjectionEngine(store, [BeatCounter()])
        with engine.target.read() as conn:
            cp = load(conn, "beats")
        assert cp is not None and cp.position == batch * committed
        assert _totals(engine) == _fold(batch * committed, streams=4)
        engine.catch_up("beats")
        assert _totals(engine) == _fold(batch * (committed + 2), streams=4)


def _lab_shaped_log(store: EventStore, rounds_: int = 6) -> None:
    """Every example event type, over several runs' streams, in a seeded order."""
    import random

    from labledger.errors import CommandRefused
    from labledger.testing.event_strategies import as_writer_of, example_events

    rng = random.Random(13)
    for n in range(rounds_):
        events = example_events()
        rng.shuffle(events)
        for i, event in enumerate(events):
            # Unsigned commands are refused; the gate's rejection records are in the log.
            with contextlib.suppress(CommandRefused), as_writer_of(event):
                store.append(f"{event.TYPE.split('.')[0]}-{n}-{i % 3}", [event])


def test_one_pass_equals_one_projection_at_a_time(backend: Backend) -> None:
    """Issue #19: run() and rebuild_many() read the log once for every projection."""
    from labledger.projections import all_projections
    from labledger.store import init_store, open_store

    with fresh_ledger(backend) as store:
        _lab_shaped_log(store)
        names = sorted(p.name for p in all_projections())
        hashes = {}
        for way in ("each", "one pass"):
            url = backend.fresh_url()
            init_store(url)
            with open_store(url) as target:
                engine = ProjectionEngine(store, all_projections(), target=target, batch_size=7)
                if way == "each":
                    for name in names:
                        engine.catch_up(name)
                else:
                    points = engine.run(names)
                    assert {cp.position for cp in points.values()} == {store.head()}
                hashes[way] = {n: engine.state_hash(n) for n in names}
        assert hashes["one pass"] == hashes["each"]
        engine = ProjectionEngine(store, all_projections(), batch_size=11)
        engine.run(names[:3])  # some built, some not: rebuild_many handles both
        rebuilt = engine.rebuild_many(names)
        assert {cp.position for cp in rebuilt.values()} == {store.head()}
        assert {n: engine.state_hash(n) for n in names} == hashes["each"]


def test_one_pass_decodes_each_event_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labledger.projections import all_projections
    from labledger.projections import engine as engine_module

    calls: list[int] = []
    real = engine_module.decode_for_fold

    def counting(record: RecordedEvent) -> Typed[Event]:
        calls.append(record.position)
        return real(record)

    monkeypatch.setattr(engine_module, "decode_for_fold", counting)
    with fresh_ledger(backend) as store:
        _lab_shaped_log(store, rounds_=2)
        ProjectionEngine(store, all_projections()).run()
        assert len(calls) == len(set(calls)) > 0
