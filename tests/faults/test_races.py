"""Harness 4 — racing writers: 8 processes append with the same expected version, in lockstep.

Every round all racers read the stream's version, wait for each other, then
append one event expecting it: exactly one may win, the rest must get the typed
``WrongExpectedVersion`` (never "database is locked" or another error). Then
every winner's event is appended again with its id: it must exist exactly once.

Broken variant caught here: a check-then-act append (read the version, compare
in Python, append with ANY) — several racers win the same round.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import ExitStack

import msgspec
import pytest

from labledger import ANY, EventStore, NewEvent, init_store, open_store
from labledger.testing.backends import Backend
from labledger.testing.workers import RaceOutcome, Worker
from tests.faults.harness import figure, scaled

RACERS = 8
ROUNDS = scaled(20, 300)
STREAM = "race"


def race_violations(store: EventStore, outcomes: list[RaceOutcome]) -> list[str]:
    """Every round must have one winner and typed conflicts only; the log must agree."""
    found = [f"round {o.round}: {o.worker} leaked {o.error}" for o in outcomes if o.kind == "error"]
    by_round: dict[int, Counter[str]] = {}
    for o in outcomes:
        by_round.setdefault(o.round, Counter())[o.kind] += 1
    found += [f"round {r}: {dict(c)}" for r, c in sorted(by_round.items()) if c["ok"] != 1]
    events = store.read_stream(STREAM)
    winners = {o.event_id for o in outcomes if o.kind == "ok"}
    if {e.id for e in events} != winners or len(events) != len(winners):
        found.append(f"{len(events)} events stored for {len(winners)} reported winners")
    if [e.stream_version for e in events] != list(range(len(events))):
        found.append("stream versions are not contiguous")
    return found


def reappend_winners(store: EventStore, outcomes: list[RaceOutcome]) -> int:
    """Append every winner's event again (same id, same content): how many were duplicated."""
    duplicated = 0
    for o in outcomes:
        if o.kind != "ok":
            continue
        event = NewEvent.from_json(
            "test.Raced", {"worker": o.worker, "round": o.round}, id=o.event_id
        )
        result = store.append(STREAM, [event], ANY)
        duplicated += not (result.already_appended and result.first_position == o.position)
    return duplicated + len(store.read_stream(STREAM)) - sum(o.kind == "ok" for o in outcomes)


def race(url: str) -> list[RaceOutcome]:
    decode = msgspec.json.Decoder(RaceOutcome).decode
    outcomes: list[RaceOutcome] = []
    options = ["--stream", STREAM, "--rounds", str(ROUNDS), "--lockstep"]
    with ExitStack() as stack:
        racers = [
            stack.enter_context(
                Worker("race", url, *options, "--worker", f"p{i}", name=f"race-{i}")
            )
            for i in range(RACERS)
        ]
        for w in racers:
            w.expect("READY")
        for _ in range(ROUNDS):
            for w in racers:
                w.go()
            for w in racers:
                w.expect("READ")
            for w in racers:
                w.go()
            outcomes += [decode(w.expect("OUT")) for w in racers]
        for w in racers:
            w.expect("DONE")
            w.finish()
    return outcomes


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_racing_writers_one_winner_per_round(
    request: pytest.FixtureRequest, backend_name: str
) -> None:
    backend: Backend = request.getfixturevalue(f"{backend_name}_backend")
    url = backend.fresh_url()
    init_store(url)
    started = time.monotonic()
    outcomes = race(url)
    with open_store(url) as store:
        violations = race_violations(store, outcomes)
        duplicated = reappend_winners(store, outcomes)
        assert store.verify().ok
    kinds = Counter(o.kind for o in outcomes)
    figure(
        f"4 racing writers [{backend_name}]",
        f"{RACERS} processes × {ROUNDS} rounds: {kinds['ok']} winners, {kinds['conflict']} "
        f"typed conflicts, {kinds['error']} other errors; {len(violations)} bad rounds; "
        f"{kinds['ok']} winners re-appended by id, {duplicated} duplicated "
        f"[{time.monotonic() - started:.0f}s]",
    )
    assert not violations, violations[:10]
    assert duplicated == 0


def test_harness_catches_check_then_act_appends(sqlite_backend: Backend) -> None:
    """Racers that check the version in Python and append with ANY: several win a round."""
    url = sqlite_backend.fresh_url()
    init_store(url)
    barrier = threading.Barrier(RACERS)
    outcomes: list[RaceOutcome] = []
    lock = threading.Lock()

    def racer(store: EventStore, name: str) -> None:
        for r in range(3):
            barrier.wait()
            read = store.stream_version(STREAM)
            barrier.wait()
            if store.stream_version(STREAM) != read:  # the bug: check, then act
                kind, event_id, position = "conflict", None, None
            else:
                event = NewEvent.from_json("test.Raced", {"worker": name, "round": r})
                position = store.append(STREAM, [event], ANY).first_position
                kind, event_id = "ok", event.id
            with lock:
                outcomes.append(
                    RaceOutcome(
                        worker=name,
                        round=r,
                        read_version=read,
                        kind=kind,
                        event_id=event_id,
                        position=position,
                    )
                )

    with open_store(url) as store:
        threads = [threading.Thread(target=racer, args=(store, f"t{i}")) for i in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        violations = race_violations(store, outcomes)
    figure("4 broken check-then-act", f"harness found {len(violations)} rounds with ≠1 winner")
    assert violations
