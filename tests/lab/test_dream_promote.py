"""``dream promote``: a signed command, allowed only for a safe candidate that improved (issue #14).

The log is written with seeded trials so the verdicts are known: B (the
baseline), G (+20 % perf, 10 trials: improves), S (as good as G but capped:
unsafe) and T (+20 % with 3 trials: inconclusive).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from labledger import EventStore
from labledger.errors import CommandRefused
from labledger.events.dream import (
    CapMetric,
    GenerationCompleted,
    Provenance,
    Regime,
    SafetyCapExceeded,
    SensorProvenance,
    TrialKpis,
    TrialRecorded,
)
from labledger.lab.dream.promote import PROMOTIONS_STREAM, promote
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.dream import candidate_pack
from labledger.projections.dream_promoted import promoted
from labledger.security import KeyRing
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

SENSORS = SensorProvenance(watts=Provenance.ABSENT, temp_peak_c=Provenance.ABSENT)


def trials(cand: str, gen: int, perf: float, n: int, seed: int) -> list[TrialRecorded]:
    rng = random.Random(seed)
    return [
        TrialRecorded(
            domain="cpu",
            regime=regime,
            cand_id=cand,
            generation=gen,
            trial=t,
            genome={"threads": 2, "who": cand},
            kpis=TrialKpis(
                perf=rng.gauss(perf, perf * 0.03),
                p95_ms=rng.gauss(1.0, 0.03),
                watts=None,
                temp_peak_c=None,
                errors=0,
                oom=0,
                requests=100,
            ),
            sensors=SENSORS,
            units={"perf": "MiB/s hashed", "p95_ms": "ms"},
        )
        for regime in (Regime.IDLE, Regime.NORMAL)
        for t in range(n)
    ]


def done(gen: int) -> GenerationCompleted:
    return GenerationCompleted(
        domain="cpu",
        generation=gen,
        candidates=1,
        regimes=[Regime.IDLE, Regime.NORMAL],
        trials_per_regime=10,
        best_cand_id=None,
        packs=[],
        best_fitness=None,
    )


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({"op1": bytes(range(32))})


@pytest.fixture
def store(backend: Backend, ring: KeyRing) -> Iterator[EventStore]:
    with fresh_ledger(backend, keyring=ring) as s:
        events = [*trials("B", 0, 100.0, 10, 1), done(0)]
        events += trials("G", 1, 120.0, 10, 2) + trials("S", 1, 120.0, 10, 3)
        events += trials("T", 1, 120.0, 3, 4)
        events.append(
            SafetyCapExceeded(
                domain="cpu",
                regime=Regime.IDLE,
                cand_id="S",
                generation=1,
                trial=0,
                metric=CapMetric.P95_MS,
                sensor=None,
                cap=0.5,
                observed=1.0,
            )
        )
        for e in events:
            s.append("dream-r1", [e.to_new_event(run_id="r1")])
        yield s


def pack(store: EventStore, cand: str) -> dict[str, object]:
    engine = ProjectionEngine(store, all_projections())
    engine.catch_up("dream_candidates")
    with engine.read("dream_candidates") as tx:
        found = candidate_pack(tx, "cpu", cand)
    assert found is not None
    return found


def test_an_improved_candidate_is_promoted_with_its_evidence(store: EventStore) -> None:
    got = pack(store, "G")
    assert got["aggregate"]["improves_over_baseline"] is True  # type: ignore[index]
    command = promote(store, got, promoted_by="alice", reason="faster")
    assert command.security.key_id == "op1" and command.security.signature
    engine = ProjectionEngine(store, all_projections())
    engine.catch_up("dream_promoted")
    with engine.read("dream_promoted") as tx:
        (line,) = promoted(tx, "cpu")
    assert (line["cand_id"], line["promoted_by"], line["key_id"]) == ("G", "alice", "op1")
    assert line["genome"] == {"threads": 2, "who": "G"}
    assert line["evidence"]["ci95"][0] > 0.01 and line["evidence"]["trials"] == 10
    assert line["evidence"]["baseline_ids"]


@pytest.mark.parametrize(("cand", "why"), [("S", "unsafe"), ("T", "inconclusive")])
def test_an_unsafe_or_inconclusive_candidate_is_refused_and_nothing_is_written(
    store: EventStore, cand: str, why: str
) -> None:
    got = pack(store, cand)
    head = store.head()
    with pytest.raises(CommandRefused, match=why):
        promote(store, got, promoted_by="alice")
    assert store.head() == head
    assert store.read_stream(PROMOTIONS_STREAM) == []


def test_a_command_signed_with_a_key_the_gate_does_not_know_is_rejected(
    store: EventStore,
) -> None:
    stranger = KeyRing({"mallory": bytes(range(1, 33))})
    with pytest.raises(CommandRefused):
        promote(store, pack(store, "G"), promoted_by="mallory", ring=stranger)
    assert store.read_stream(PROMOTIONS_STREAM) == []
