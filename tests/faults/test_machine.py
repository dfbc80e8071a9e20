"""Harness 7 — a hypothesis state machine with faults: the store against an in-memory model.

Besides appends with expected versions, the rules crash and reopen the store
(its files copied while it is open — exactly what a killed process leaves on
disk — and the copy opened), export it and import the archive into a fresh
store, submit signed commands (valid, replayed, stale, forged), advance the
store's clock, and run and rebuild a projection. Invariants after every step:
the log equals the model, positions are 1..n, stream versions are contiguous,
``verify`` passes, and refused commands burn no nonce.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from labledger import (
    ANY,
    NO_STREAM,
    CommandRefused,
    EventStore,
    NewEvent,
    WrongExpectedVersion,
    init_store,
    open_store,
)
from labledger.events.runs import Heartbeat
from labledger.ledger import open_ledger
from labledger.projections import ProjectionEngine
from labledger.security import REJECTIONS_STREAM, KeyRing, portable, sign
from labledger.store.archive import export_archive
from labledger.testing.faults import TallyProjection, tally_fold, tally_state
from labledger.testing.profile import examples
from labledger.testing.security_contract import SECRET, Clock, command
from tests.faults.harness import figure, scaled

RING = KeyRing({"k1": SECRET})
STREAMS = st.sampled_from(["alpha", "beta", "run-1", "run-2"])
STEPS = {"crash": 0, "import": 0, "valid": 0, "refused": 0, "rebuild": 0}


class FaultMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ll-machine-"))
        self.generation = 0
        self.clock = Clock(dt.datetime.now(dt.UTC))
        self.url = f"sqlite:///{self.dir / 'g0.db'}"
        init_store(self.url)
        self.store = self._open(self.url)
        self.model: list[tuple[str, str]] = []  # (stream, id) — rejections as (stream, type)
        self.accepted: list[NewEvent] = []
        self.nonces = 0

    def _open(self, url: str) -> EventStore:
        return open_ledger(url, keyring=RING, clock=self.clock, strict=False)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _version(self, stream: str) -> int:
        return sum(1 for s, _ in self.model if s == stream) - 1

    # -- appends ---------------------------------------------------------------------

    @rule(
        stream=STREAMS,
        n=st.integers(1, 3),
        seqs=st.lists(st.integers(0, 99), min_size=3),
        exact=st.booleans(),
    )
    def append(self, stream: str, n: int, seqs: list[int], exact: bool) -> None:
        events = [Heartbeat(seq=seqs[i]).to_new_event(id=str(uuid.uuid4())) for i in range(n)]
        current = self._version(stream)
        expected = (current if current >= 0 else NO_STREAM) if exact else ANY
        self.store.append(stream, events, expected)
        self.model += [(stream, e.id) for e in events]

    @rule(stream=STREAMS)
    def stale_expected_version(self, stream: str) -> None:
        head = self.store.head()
        try:
            self.store.append(stream, [NewEvent.from_json("test.X", {})], self._version(stream) + 1)
        except WrongExpectedVersion as exc:
            assert exc.actual == self._version(stream)
        else:
            raise AssertionError("a conflict was not detected")
        assert self.store.head() == head

    # -- faults ----------------------------------------------------------------------

    @rule()
    def crash_and_reopen(self) -> None:
        """Copy the files of the open store (what a killed process leaves) and open the copy."""
        self.generation += 1
        old = self.url.removeprefix("sqlite:///")
        new = self.dir / f"g{self.generation}.db"
        for suffix in ("", "-wal", ".anchor", ".anchor.key"):
            if Path(old + suffix).exists():
                shutil.copyfile(old + suffix, f"{new}{suffix}")
        self.store.close()
        self.url = f"sqlite:///{new}"
        self.store = self._open(self.url)
        STEPS["crash"] += 1

    @rule()
    def export_and_import_into_a_fresh_store(self) -> None:
        archive = self.dir / "export.llar"
        export_archive(self.store, archive)
        url = f"sqlite:///{self.dir / f'import-{uuid.uuid4().hex[:6]}.db'}"
        init_store(url)
        # As `labledger import` does: signed commands are history, admitted if they verify
        # (and their nonces are new to the log); the gate's records come along (#18).
        gate = portable.import_gate(RING)
        with open_store(url, gate=gate, clock=self.clock) as fresh:
            report = portable.import_verified(fresh, archive, gate)
            assert report.imported == len(self.model)
            mine = [msgspec.structs.asdict(e) for e in self.store.read_all()]
            theirs = [msgspec.structs.asdict(e) for e in fresh.read_all()]
            assert theirs == mine
            assert portable.import_verified(fresh, archive, gate).imported == 0  # idempotent
        STEPS["import"] += 1

    @rule(seconds=st.integers(0, 300))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # -- signed commands -------------------------------------------------------------

    @rule()
    def valid_command(self) -> None:
        signed = sign(command(f"c{len(self.accepted)}"), RING, now=self.clock.now).to_new_event()
        self.store.append("cmds", [signed])
        self.model.append(("cmds", signed.id))
        self.accepted.append(signed)
        self.nonces += 1
        STEPS["valid"] += 1

    @rule(kind=st.sampled_from(["replay", "stale", "future", "forged"]), data=st.data())
    def refused_command(self, kind: str, data: st.DataObject) -> None:
        if kind == "replay":
            if not self.accepted:
                return
            event = msgspec.structs.replace(
                data.draw(st.sampled_from(self.accepted)), id=str(uuid.uuid4())
            )
        else:
            shift = {"stale": -61, "future": 61, "forged": 0}[kind]
            cmd = sign(command("x"), RING, now=self.clock.now + dt.timedelta(seconds=shift))
            if kind == "forged":
                cmd = msgspec.structs.replace(cmd, command_id="forged")
            event = cmd.to_new_event()
        size = self.store.nonce_stats().size
        try:
            self.store.append("cmds", [event])
        except CommandRefused:
            pass
        else:
            raise AssertionError(f"a {kind} command was accepted")
        assert self.store.nonce_stats().size == size, "a refused command burned a nonce"
        self.model.append((REJECTIONS_STREAM, "security.CommandRejected"))
        STEPS["refused"] += 1

    # -- projections -----------------------------------------------------------------

    @precondition(lambda self: self.model)
    @rule(rebuild=st.booleans())
    def project(self, rebuild: bool) -> None:
        engine = ProjectionEngine(self.store, [TallyProjection()], batch_size=3)
        engine.catch_up(TallyProjection.name)
        live = engine.state_hash(TallyProjection.name)
        if rebuild:
            engine.rebuild(TallyProjection.name)
            assert engine.state_hash(TallyProjection.name) == live
            STEPS["rebuild"] += 1
        position, rows = tally_state(engine)
        assert rows == tally_fold(list(self.store.read_all()), position)

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def log_matches_model(self) -> None:
        stored = list(self.store.read_all(batch_size=7))
        assert [e.position for e in stored] == list(range(1, len(self.model) + 1))
        seen = [(e.stream, e.type if e.stream == REJECTIONS_STREAM else e.id) for e in stored]
        assert seen == self.model
        versions: dict[str, int] = {}
        for e in stored:
            assert e.stream_version == versions.get(e.stream, -1) + 1
            versions[e.stream] = e.stream_version
        assert self.store.nonce_stats().size <= self.nonces
        report = self.store.verify()
        assert report.ok, report.message


MACHINE_SETTINGS = settings(
    max_examples=examples(40),
    stateful_step_count=scaled(20, 50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _new_machine() -> FaultMachine:
    return FaultMachine()


def test_fault_machine() -> None:
    # A function factory, not ``FaultMachine.TestCase``: hypothesis digests the factory's source,
    # and for a class CPython 3.11 runs ``ast.parse``, which intermittently raised
    # "SystemError: AST constructor recursion depth mismatch" under CI.
    run_state_machine_as_test(_new_machine, settings=MACHINE_SETTINGS)


def test_machine_figures() -> None:
    """Runs after the machine (same module, file order): reports what it exercised."""
    figure(
        "7 state machine",
        f"{examples(40)} runs of ≤{scaled(20, 50)} steps; steps taken: "
        f"{STEPS}; invariants held after every step",
    )
