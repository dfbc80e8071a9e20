"""The seeds read model (issue #4, item 7): lifecycle state per run and slot.

Checked against :func:`expected_slots`, which derives each slot from a
backward scan of its lifecycle events (the projection folds forward).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labledger import EventStore
from labledger.events import Event
from labledger.events.esper import (
    SeedFossilized,
    SeedGateEvaluated,
    SeedGerminated,
    SeedPruned,
    SeedStage,
    SeedStageChanged,
)
from labledger.events.typed import typed
from labledger.ledger import open_ledger
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.seeds import SeedsProjection, slot_rows
from labledger.security import KeyRing
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import SETTINGS, Log, ProjectionContract, fresh_ledger
from tests.cli.test_cli import cli
from tests.projections.test_esper_training import (
    KEY_ID,
    SECRET,
    SEED_TYPES,
    append_esper_log,
    esper_logs,
    germinated,
)


class SeedsContract(ProjectionContract):
    def make_projection(self) -> Projection:
        return SeedsProjection()

    def logs(self) -> st.SearchStrategy[Log]:
        return esper_logs()

    def prepare(self, store: EventStore, log: Log) -> None:
        append_esper_log(store, log)


class TestSqliteSeeds(SeedsContract):
    backend_fixture = "sqlite_backend"


class TestPostgresSeeds(SeedsContract):
    backend_fixture = "postgres_backend"


def _stage_alpha(event: Any) -> tuple[str, float]:
    return {
        SeedGerminated: lambda e: ("GERMINATED", 0.0),
        SeedStageChanged: lambda e: (e.to_stage.value, e.alpha),
        SeedFossilized: lambda e: ("FOSSILIZED", e.final_alpha),
        SeedPruned: lambda e: ("PRUNED", 0.0),
    }[type(event)](event)


def expected_slots(store: EventStore) -> list[dict[str, Any]]:
    """Each slot from its own events: the last one decides, a backward walk finds the blueprint."""
    history: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    for t in typed(store.read_all()):
        if isinstance(t.event, SEED_TYPES):
            key = (t.record.run_id or "", t.event.slot)
            history.setdefault(key, []).append((t.position, t.event))
    out = []
    for (run_id, slot), events in sorted(history.items()):
        last = events[-1][1]
        blueprint = None
        for _, event in reversed(events):
            if event.seed_id != last.seed_id:
                break
            if isinstance(event, SeedGerminated):
                blueprint = event.blueprint_id
                break
        stage, alpha = _stage_alpha(last)
        out.append(
            {
                "run_id": run_id,
                "slot": slot,
                "stage": stage,
                "seed_id": last.seed_id,
                "blueprint_id": blueprint,
                "alpha": alpha,
                "last_command_id": last.command_id,
                "first_position": events[0][0],
                "last_position": events[-1][0],
                "transitions": len(events),
            }
        )
    return out


def _slots(store: EventStore, run_id: str | None = None) -> list[dict[str, Any]]:
    engine = ProjectionEngine(store, [SeedsProjection()])
    engine.catch_up("seeds")
    with engine.read("seeds") as tx:
        return slot_rows(tx, run_id)


@SETTINGS
@given(log=esper_logs(max_size=24))
def test_slots_equal_an_independent_scan(backend: Backend, log: Log) -> None:
    with fresh_ledger(backend) as store:
        append_esper_log(store, log)
        assert _slots(store) == expected_slots(store)


def _changed(slot: str, seed: str, a: SeedStage, b: SeedStage, alpha: float) -> Event:
    return SeedStageChanged(
        slot=slot, seed_id=seed, from_stage=a, to_stage=b, alpha=alpha, epoch=4, command_id=None
    )


LIFECYCLE: Log = [
    ("r1", germinated("s0", "c1")),
    ("r1", _changed("s0", "seed-1", SeedStage.GERMINATED, SeedStage.TRAINING, 0.0)),
    ("r1", _changed("s0", "seed-1", SeedStage.TRAINING, SeedStage.BLENDING, 0.3)),
    (
        "r1",
        SeedGateEvaluated(
            slot="s0",
            seed_id="seed-1",
            gate="G2",
            stage=SeedStage.BLENDING,
            passed=True,
            metrics={},
            epoch=5,
        ),
    ),
    ("r1", SeedFossilized(slot="s0", seed_id="seed-1", final_alpha=1.0, epoch=9, command_id="c2")),
    ("r1", germinated("s1", None)),
    (
        "r1",
        SeedPruned(
            slot="s1",
            seed_id="seed-1",
            stage=SeedStage.TRAINING,
            reason="no gain",
            epoch=7,
            command_id="c3",
        ),
    ),
    ("r2", _changed("s0", "seed-9", SeedStage.DORMANT, SeedStage.TRAINING, 0.1)),
]


def test_a_lifecycle_by_hand(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    with open_ledger(url, keyring=KeyRing({KEY_ID: SECRET})) as store:
        append_esper_log(store, LIFECYCLE)
        rows = _slots(store)
    got = {(r["run_id"], r["slot"]): r for r in rows}
    s0 = got[("r1", "s0")]
    assert (s0["stage"], s0["alpha"], s0["blueprint_id"], s0["transitions"]) == (
        "FOSSILIZED",
        1.0,
        "conv_light",
        4,  # the gate evaluation is not a transition
    )
    assert (s0["first_position"], s0["last_position"], s0["last_command_id"]) == (1, 5, "c2")
    s1 = got[("r1", "s1")]
    assert (s1["stage"], s1["alpha"], s1["last_command_id"]) == ("PRUNED", 0.0, "c3")
    r2 = got[("r2", "s0")]  # a slot first seen mid-life: no blueprint to vouch for
    assert (r2["stage"], r2["blueprint_id"], r2["transitions"]) == ("TRAINING", None, 1)

    code, out, _ = cli(url, "esper", "seeds", "--run", "r1", capsys=capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(x["slot"], x["stage"]) for x in lines] == [
        ("s0", "FOSSILIZED"),
        ("s1", "PRUNED"),
    ]
    code, out, _ = cli(url, "esper", "seeds", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == 3
