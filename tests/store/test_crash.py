"""SIGKILL a writer at random moments: acknowledged events survive, batches never tear.

A worker (``python -m labledger.testing.workers crash``) appends batches of
1-5 events to a few streams, printing ``TRY <ids> ...`` before each append and
``ACK <ids> <first_pos> <last_pos>`` after it returned. The test kills it with
SIGKILL a random delay after its first acknowledgement, reopens the store and
checks everything printed so far; the next round continues on the same store,
first appending again (same ids, same content) the batch the killed worker
had tried without acknowledging: it must land exactly once either way.

The RNG seed is printed (shown with a failure's captured output); set
``LABLEDGER_CRASH_SEED`` to replay a run's choices (not its timing).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from labledger import EventStore, RecordedEvent, open_store
from labledger.testing.backends import Backend
from labledger.testing.store_contract import BackendFixtures
from labledger.testing.workers import Worker

KILLS = 22
MAX_DELAY_S = 0.3
SEED_ENV = "LABLEDGER_CRASH_SEED"


@dataclass
class Ledger:
    """Everything the killed workers printed, across rounds, and what the log held."""

    tries: list[tuple[str, ...]] = field(default_factory=list)
    acks: list[tuple[tuple[str, ...], int, int]] = field(default_factory=list)
    landed: set[tuple[str, ...]] = field(default_factory=set)  # batches seen in the log
    in_flight: str = ""  # "STREAM SEED N IDS" of the batch tried but not acknowledged
    retries: Counter[str] = field(default_factory=Counter)

    def record(self, lines: list[str]) -> None:
        self.in_flight = ""
        for n, line in enumerate(lines):
            if not line.endswith("\n"):  # cut off by the kill: only ever the last line
                assert n == len(lines) - 1, lines[n - 2 : n + 2]
                continue
            tag, _, payload = line.rstrip("\n").partition(" ")
            if tag == "TRY":
                ids, stream, seed, number = payload.split(" ")
                self.tries.append(tuple(ids.split(",")))
                self.in_flight = f"{stream} {seed} {number} {ids}"
            elif tag in ("ACK", "RETRY"):
                ids, first, last, *already = payload.split(" ")
                self.acks.append((tuple(ids.split(",")), int(first), int(last)))
                if tag == "ACK":
                    assert self.acks[-1][0] == self.tries[-1], "ACK for another batch than TRY"
                    self.in_flight = ""
                else:
                    assert self.acks[-1][0] in self.tries, "RETRY of a batch never tried"
                    self.retries["landed before" if already == ["1"] else "appended now"] += 1
            elif tag != "READY":
                pytest.fail(f"the crash worker said {line!r}")

    def check(self, store: EventStore) -> None:
        # On PostgreSQL a COMMIT the killed worker sent may still land while we read:
        # it can only add a whole batch after the head, so compare against what was read.
        events = list(store.read_all())
        head = len(events)
        assert [e.position for e in events] == list(range(1, head + 1)), "positions have a gap"
        by_id: dict[str, RecordedEvent] = {e.id: e for e in events}
        assert len(by_id) == len(events), "an event id is stored twice"

        tried = {i for batch in self.tries for i in batch}
        assert not set(by_id) - tried, "the log holds events nobody tried to append"
        for batch in self.tries:
            present = [i in by_id for i in batch]
            if not any(present):
                assert batch not in self.landed, f"batch {batch} vanished after it had landed"
                continue
            assert all(present), f"partial batch visible: {present} for {batch}"
            stored = [by_id[i] for i in batch]
            first = stored[0]
            assert [e.position for e in stored] == list(
                range(first.position, first.position + len(batch))
            ), "batch not contiguous"
            assert {e.stream for e in stored} == {first.stream}
            assert [e.stream_version for e in stored] == list(
                range(first.stream_version, first.stream_version + len(batch))
            )
            self.landed.add(batch)
        for ids, first_pos, last_pos in self.acks:
            assert all(i in by_id for i in ids), f"acknowledged batch {ids} was lost"
            assert [by_id[i].position for i in ids] == list(range(first_pos, last_pos + 1)), (
                f"acknowledged batch {ids} is not at {first_pos}..{last_pos}"
            )

        for stream in {e.stream for e in events}:
            top = max(e.stream_version for e in events if e.stream == stream)
            assert store.stream_version(stream) >= top
        report = store.verify()
        assert report.ok, report.message
        assert report.head == report.events_checked >= head


class CrashContract(BackendFixtures):
    def test_sigkilled_writer_loses_nothing_acknowledged(self, backend: Backend, url: str) -> None:
        if "multiprocess" not in backend.capabilities:
            pytest.skip(f"the {backend.name} backend lacks the 'multiprocess' capability")
        seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
        print(f"crash test on {backend.name}: {SEED_ENV}={seed}")
        rng = random.Random(seed)
        ledger = Ledger()
        for kill in range(KILLS):
            worker_seed = rng.getrandbits(32)
            delay = rng.uniform(0.0, MAX_DELAY_S)
            options = ["--seed", str(worker_seed), "--streams", "3"]
            if ledger.in_flight:  # the killed worker's last batch: append it again
                options += ["--retry", ledger.in_flight]
            with Worker("crash", url, *options, name=f"crash-{kill}") as worker:
                worker.expect("READY")
                while (line := worker.next_line()) is not None and not line.startswith("ACK "):
                    pass  # at least one append per round has returned
                time.sleep(delay)
                worker.sigkill()
                worker.drain()
                ledger.record(worker.lines)
                assert worker.proc.returncode == -9, worker.stderr()
            with open_store(url) as store:
                ledger.check(store)
        assert len(ledger.acks) >= KILLS
        print(
            f"{KILLS} kills, {len(ledger.tries)} batches tried, {len(ledger.acks)} acknowledged,"
            f" {len(ledger.landed)} landed; retries: {dict(ledger.retries)}"
        )


class TestSqliteCrash(CrashContract):
    backend_fixture = "sqlite_backend"


class TestPostgresCrash(CrashContract):
    backend_fixture = "postgres_backend"
