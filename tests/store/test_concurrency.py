"""Concurrency on both backends: racing writers, a reader that must never skip, init races.

Worker processes live in :mod:`labledger.testing.workers`. Timing is random;
every assertion holds for every interleaving (lockstep rounds make the number
of winners exact, free-running rounds only the invariants).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import msgspec
import pytest
import sqlalchemy as sa

from labledger import EventStore, NewEvent, init_store, open_store
from labledger.store.migrations import HEAD_REVISION, VERSION_TABLE
from labledger.testing.backends import Backend, sa_url
from labledger.testing.store_contract import BackendFixtures
from labledger.testing.workers import GUARD_S, RaceOutcome, Worker, race_append, race_read

WORKERS = 4
ROUNDS = 50
STREAM = "race"


def _needs(backend: Backend, capability: str) -> None:
    if capability not in backend.capabilities:
        pytest.skip(f"the {backend.name} backend lacks the {capability!r} capability")


@contextlib.contextmanager
def _workers(make: Callable[[int], Worker], n: int) -> Iterator[list[Worker]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(make(i)) for i in range(n)]


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(sa_url(url))


def check_race(store: EventStore, outcomes: list[RaceOutcome], *, lockstep: bool) -> None:
    """The invariants of racing exact-version appends to one stream."""
    errors = [o for o in outcomes if o.kind == "error"]
    assert not errors, f"errors leaked out of append (expected WrongExpectedVersion): {errors}"
    wins = [o for o in outcomes if o.kind == "ok"]
    conflicts = [o for o in outcomes if o.kind == "conflict"]
    assert len(wins) + len(conflicts) == len(outcomes)
    assert not [o for o in wins if o.already_appended]
    for o in conflicts:
        assert o.actual is not None and o.actual > o.read_version, o

    events = store.read_stream(STREAM)
    # No lost update: one stored event per reported success, and the very same ones.
    assert len(events) == len(wins)
    assert {e.id for e in events} == {o.event_id for o in wins}
    assert [e.stream_version for e in events] == list(range(len(events)))
    stored = {e.id: e for e in events}
    for o in wins:
        e = stored[o.event_id or ""]
        assert (e.position, e.stream_version) == (o.position, o.version), o
        assert o.version == o.read_version + 1, o  # a win extends exactly what was read
    assert len({o.version for o in wins}) == len(wins)  # no duplicate stream version

    positions = [e.position for e in store.read_all()]
    assert positions == list(range(1, store.head() + 1))
    assert store.stream_version(STREAM) == len(events) - 1
    report = store.verify()
    assert report.ok, report.message

    if lockstep:
        by_round: dict[int, list[RaceOutcome]] = {}
        for o in outcomes:
            by_round.setdefault(o.round, []).append(o)
        for r, round_outcomes in sorted(by_round.items()):
            kinds = Counter(o.kind for o in round_outcomes)
            assert kinds == Counter(ok=1, conflict=len(round_outcomes) - 1), (r, round_outcomes)
            assert {o.read_version for o in round_outcomes} == {r - 1}, (r, round_outcomes)
            assert {o.actual for o in round_outcomes if o.kind == "conflict"} == {r}
        assert len(events) == len(by_round)


def check_log(store: EventStore) -> None:
    positions = [e.position for e in store.read_all()]
    assert positions == list(range(1, store.head() + 1))
    report = store.verify()
    assert report.ok, report.message


class ConcurrencyContract(BackendFixtures):
    # -- racing writers, one OS process each --------------------------------------------

    def _race_processes(self, backend: Backend, url: str, *, lockstep: bool) -> None:
        _needs(backend, "multiprocess")
        options = ["--stream", STREAM, "--rounds", str(ROUNDS)]
        if lockstep:
            options.append("--lockstep")
        outcomes: list[RaceOutcome] = []
        decode = msgspec.json.Decoder(RaceOutcome).decode

        def make(i: int) -> Worker:
            return Worker("race", url, *options, "--worker", f"p{i}", name=f"race-{i}")

        with _workers(make, WORKERS) as workers:
            for w in workers:
                w.expect("READY")
            for r in range(ROUNDS):
                if lockstep or r == 0:
                    for w in workers:
                        w.go()
                if lockstep:
                    for w in workers:
                        w.expect("READ")
                    for w in workers:
                        w.go()
                    outcomes.extend(decode(w.expect("OUT")) for w in workers)
            if not lockstep:
                for w in workers:
                    outcomes.extend(decode(w.expect("OUT")) for _ in range(ROUNDS))
            for w in workers:
                w.expect("DONE")
                w.finish()
        assert len(outcomes) == WORKERS * ROUNDS
        with open_store(url) as store:
            check_race(store, outcomes, lockstep=lockstep)

    def test_racing_processes_in_lockstep(self, backend: Backend, url: str) -> None:
        self._race_processes(backend, url, lockstep=True)

    def test_racing_processes_free_running(self, backend: Backend, url: str) -> None:
        self._race_processes(backend, url, lockstep=False)

    # -- racing writers, threads sharing one store ----------------------------------------

    def _race_threads(self, store: EventStore, *, lockstep: bool) -> None:
        barrier = threading.Barrier(WORKERS)
        outcomes: list[RaceOutcome] = []
        lock = threading.Lock()
        crashed: list[BaseException] = []

        def racer(name: str) -> None:
            try:
                barrier.wait()
                for r in range(ROUNDS):
                    if lockstep:
                        barrier.wait()
                    read = race_read(store, STREAM)
                    if lockstep:
                        barrier.wait()
                    outcome = race_append(store, STREAM, name, r, read)
                    with lock:
                        outcomes.append(outcome)
            except BaseException as exc:  # reported below; a broken barrier frees the others
                crashed.append(exc)
                barrier.abort()

        threads = [
            threading.Thread(target=racer, args=(f"t{i}",), daemon=True) for i in range(WORKERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(GUARD_S)  # a hang guard only
        assert not [t for t in threads if t.is_alive()], f"racers hung for {GUARD_S:.0f}s"
        assert not crashed, crashed
        assert len(outcomes) == WORKERS * ROUNDS
        check_race(store, outcomes, lockstep=lockstep)

    def test_racing_threads_in_lockstep(self, store: EventStore) -> None:
        self._race_threads(store, lockstep=True)

    def test_racing_threads_free_running(self, store: EventStore) -> None:
        self._race_threads(store, lockstep=False)

    # -- a polling reader never skips a position ------------------------------------------

    def test_polling_reader_never_skips(self, backend: Backend, url: str) -> None:
        _needs(backend, "multiprocess")
        seen: list[int] = []
        polls = 0

        def make(i: int) -> Worker:
            options = ["--worker", f"w{i}", "--batches", "150", "--streams", "25", "--seed", str(i)]
            return Worker("write", url, *options, name=f"write-{i}")

        with open_store(url) as reader, _workers(make, WORKERS) as workers:

            def poll() -> None:
                nonlocal polls
                polls += 1
                last = seen[-1] if seen else 0
                for e in reader.read_all(from_position=last + 1, batch_size=50):
                    # A hole here would never be revisited: from_position moves past it.
                    assert e.position == (seen[-1] if seen else 0) + 1, (
                        f"reader saw position {e.position} after {seen[-5:]} (poll {polls})"
                    )
                    seen.append(e.position)

            for w in workers:
                w.expect("READY")
            for w in workers:
                w.go()
            while any(w.proc.poll() is None for w in workers):
                poll()
            written = sum(int(w.expect("DONE")) for w in workers)
            for w in workers:
                w.finish()
            poll()
            assert seen == list(range(1, reader.head() + 1))
            assert len(seen) == written
            check_log(reader)

    # -- concurrent `labledger init` on a fresh database -----------------------------------

    @pytest.mark.parametrize("attempt", range(2))
    def test_concurrent_init(self, backend: Backend, attempt: int) -> None:
        _needs(backend, "multiprocess")
        url = backend.fresh_url()

        def make(i: int) -> Worker:
            return Worker("init", url, name=f"init-{i}")

        with _workers(make, WORKERS) as workers:
            for w in workers:
                w.expect("READY")
            for w in workers:
                w.go()
            codes = [w.expect("EXIT") for w in workers]
            for w in workers:
                w.finish()
        assert codes == ["0"] * WORKERS
        engine = _engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        finally:
            engine.dispose()
        assert [tuple(r) for r in rows] == [(HEAD_REVISION,)]
        assert init_store(url) == HEAD_REVISION  # and once more is a no-op
        with open_store(url) as store:
            assert store.head() == 0 and store.verify().ok
            store.append(STREAM, [NewEvent.from_json("test.Init", {"ok": True})])
            check_log(store)


class TestSqliteConcurrency(ConcurrencyContract):
    backend_fixture = "sqlite_backend"


class TestPostgresConcurrency(ConcurrencyContract):
    backend_fixture = "postgres_backend"
