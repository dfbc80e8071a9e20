"""The Simic training set (issue #4, item 4): transitions, export, Dataset, CLI.

The projection is checked against :func:`expected_transitions`, an
independent computation that *scans* the stored log for each command (the
projection folds it incrementally). The log strategies and the signing
``prepare`` are shared with ``test_audit`` and ``test_seeds``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labledger import EventStore
from labledger.errors import CommandRefused
from labledger.events import Event
from labledger.events.esper import (
    ActionHeads,
    AdaptationCommand,
    BlendStyle,
    DecisionMetadata,
    EpisodeEnded,
    FieldOutcome,
    FieldReport,
    FieldReportDelta,
    LifecycleOp,
    SeedFossilized,
    SeedGerminated,
    SeedPruned,
    SeedStage,
    SeedStageChanged,
    SystemStateReported,
    TrainingMetrics,
)
from labledger.events.runs import RunAbandoned
from labledger.events.security import CommandSecurity
from labledger.events.telemetry import (
    HealthStatus,
    SystemHealth,
    TelemetryPacket,
    TelemetryPriority,
)
from labledger.events.typed import Typed, typed
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.esper_training import (
    FEATURE_NAMES,
    EsperTrainingProjection,
    Transition,
    completed,
    pending_count,
)
from labledger.projections.training_data import TrainingSetDataset, manifest_path
from labledger.security import KeyRing, LabGate, sign
from labledger.testing.backends import Backend
from labledger.testing.event_strategies import events_of
from labledger.testing.projection_contract import SETTINGS, Log, ProjectionContract, fresh_ledger
from tests.cli.test_cli import cli

RUNS = ("r1", "r2")
SLOTS = ("s0", "s1")
COMMAND_IDS = ("c1", "c2", "c3")
SEED_IDS = ("seed-a", "seed-b")
KEY_ID, SECRET = "k1", b"projection-test-key-0123456789ab"
ACTORS = {"esper.AdaptationCommand": "tamiyo", "esper.FieldReport": "tamiyo"}
SEED_TYPES = (SeedGerminated, SeedStageChanged, SeedFossilized, SeedPruned)

# -- logs -------------------------------------------------------------------------


def _replace(strategy: st.SearchStrategy[Any], **fields: st.SearchStrategy[Any]) -> Any:
    return st.tuples(strategy, st.fixed_dictionaries(fields)).map(
        lambda pair: msgspec.structs.replace(pair[0], **pair[1])
    )


def _events() -> st.SearchStrategy[Event]:
    ids, slots = st.sampled_from(COMMAND_IDS), st.sampled_from(SLOTS)
    seed = st.one_of(*(events_of(cls) for cls in SEED_TYPES))
    return st.one_of(
        _replace(events_of(AdaptationCommand), command_id=ids, target_slot=slots),
        _replace(events_of(AdaptationCommand), command_id=ids, target_slot=slots),
        _replace(events_of(FieldReport), command_id=ids),
        _replace(events_of(FieldReport), command_id=ids),
        events_of(SystemStateReported),
        events_of(TelemetryPacket),
        _replace(
            seed,
            slot=slots,
            seed_id=st.sampled_from(SEED_IDS),
            command_id=st.sampled_from((None, *COMMAND_IDS)),
        ),
        events_of(EpisodeEnded),
        events_of(RunAbandoned),
    )


EVENTS = _events()


@st.composite
def esper_logs(draw: st.DrawFn, max_size: int = 16) -> Log:
    """Esper events of two runs; a stream ``run|unsigned`` or ``run|replay`` gets refused."""
    log: list[tuple[str, Event]] = []
    for _ in range(draw(st.integers(0, max_size))):
        event = draw(EVENTS)
        twist = ""
        if isinstance(event, AdaptationCommand):
            twist = draw(st.sampled_from(["", "", "", "|unsigned", "|replay"]))
        log.append((draw(st.sampled_from(RUNS)) + twist, event))
    return log


def _signed(event: AdaptationCommand, ring: KeyRing, twist: str, nonces: list[str], i: int) -> Any:
    now = dt.datetime.now(dt.UTC)
    if twist == "unsigned":
        security = CommandSecurity(
            signature="",
            nonce=f"n{i}",
            issued_at=now,
            freshness_window=dt.timedelta(seconds=60),
            key_id=KEY_ID,
        )
        return msgspec.structs.replace(event, security=security)
    nonce = nonces[-1] if (twist == "replay" and nonces) else f"n{i}"
    nonces.append(nonce)
    return sign(event, ring, key_id=KEY_ID, now=now, nonce=nonce)


def append_esper_log(store: EventStore, log: Log) -> list[int]:
    """Append ``log`` (signing commands) to ``esper-<run>``; the position of each item."""
    gate = getattr(store, "gate", None)
    assert isinstance(gate, LabGate)
    if KEY_ID not in gate.keyring:
        gate.keyring.add(KEY_ID, SECRET)
    nonces: list[str] = []
    positions = []
    for i, (stream, event) in enumerate(log):
        run, _, twist = stream.partition("|")
        if isinstance(event, AdaptationCommand):
            event = _signed(event, gate.keyring, twist, nonces, i)
        new = event.to_new_event(run_id=run, actor=ACTORS.get(event.TYPE, "kasmina"))
        try:
            positions.append(store.append(f"esper-{run}", [new]).first_position)
        except CommandRefused as exc:
            positions.append(exc.position or 0)
    return positions


# -- the independent computation ---------------------------------------------------


def _run(t: Typed[Event]) -> str:
    return t.record.run_id or ""


def _stage_alpha(event: Event) -> tuple[str, float]:
    if isinstance(event, SeedGerminated):
        return "GERMINATED", 0.0
    if isinstance(event, SeedStageChanged):
        return event.to_stage.value, event.alpha
    if isinstance(event, SeedFossilized):
        return "FOSSILIZED", event.final_alpha
    return "PRUNED", 0.0


def features(log: list[Typed[Event]], run: str, slot: str, before: int) -> tuple[Any, ...]:
    """Features of ``slot`` from the events of ``run`` before ``before``, by scanning."""
    prior = [t for t in log if t.position < before and _run(t) == run]
    states = [t for t in prior if isinstance(t.event, SystemStateReported)]
    packets = [t for t in prior if isinstance(t.event, TelemetryPacket)]
    last = {t.event.slot: t.event for t in prior if isinstance(t.event, SEED_TYPES)}
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    if states:
        assert isinstance(states[-1].event, SystemStateReported)
        m = states[-1].event.metrics
        for name in ("epoch", "step", "loss", "accuracy", "grad_norm", "learning_rate"):
            f[f"metrics.{name}"] = float(getattr(m, name))
        f["metrics.present"] = 1.0  # no throughput: no clock in the observation (issue #16)
    stage, alpha = _stage_alpha(last[slot]) if slot in last else ("DORMANT", 0.0)
    f[f"slot.stage.{stage}"], f["slot.alpha"] = 1.0, alpha
    for event in last.values():
        f[f"slots.count.{_stage_alpha(event)[0]}"] += 1.0
    if states:  # every slot of the run counts from its start; untouched ones are DORMANT
        assert isinstance(states[-1].event, SystemStateReported)
        f["slots.count.DORMANT"] += len(set(states[-1].event.seed_stages) - set(last))
    if packets:
        assert isinstance(packets[-1].event, TelemetryPacket)
        packet = packets[-1].event
        f[f"health.{packet.health.status.value}"] = 1.0
        f[f"priority.{packet.priority.value}"] = 1.0
    state_at = states[-1].position if states else 0
    return [f[n] for n in FEATURE_NAMES], state_at, packets[-1].position if packets else 0


def expected_transitions(store: EventStore) -> tuple[list[dict[str, Any]], int]:
    """Completed transitions (in command order) and the pending count, from a scan."""
    log = list(typed(store.read_all()))
    commands: dict[int, Typed[Event]] = {}
    queue: dict[str, list[int]] = {}
    reports: dict[int, Typed[Event]] = {}
    for t in log:
        if isinstance(t.event, AdaptationCommand):
            commands[t.position] = t
            queue.setdefault(t.event.command_id, []).append(t.position)
        elif isinstance(t.event, FieldReport) and queue.get(t.event.command_id):
            reports[queue[t.event.command_id].pop(0)] = t
    out = []
    for p in sorted(reports):
        cmd, rep = commands[p].event, reports[p]
        assert isinstance(cmd, AdaptationCommand) and isinstance(rep.event, FieldReport)
        run = _run(commands[p])
        enders = [
            t
            for t in log
            if p < t.position < rep.position
            and _run(t) == run
            and isinstance(t.event, EpisodeEnded | RunAbandoned)
        ]
        aborted = rep.event.outcome is FieldOutcome.ABORTED
        ends = [isinstance(t.event, RunAbandoned) or t.event.truncated for t in enders]  # type: ignore[attr-defined]
        end = enders[0].position if enders else rep.position
        obs, state_at, health_at = features(log, run, cmd.target_slot, p)
        next_obs, next_state_at, next_health_at = features(log, run, cmd.target_slot, end)
        done_at = enders[0].position if enders else (rep.position if aborted else 0)
        delta = rep.event.delta
        out.append(
            {
                "command_position": p,
                "command_id": cmd.command_id,
                "op": cmd.operation.value,
                "obs": obs,
                "next_obs": next_obs,
                "reward": delta.accuracy_delta - rep.event.extra_metrics.get("param_rent", 0.0),
                "terminated": any(not cut for cut in ends),
                "truncated": any(ends) or aborted,
                "positions": [
                    *(p, state_at, health_at, rep.position),
                    *(next_state_at, next_health_at, done_at),
                ],
            }
        )
    return out, len(commands) - len(reports)


def actual(rows: list[Transition]) -> list[dict[str, Any]]:
    return [
        {
            "command_position": r.command_position,
            "command_id": r.command_id,
            "op": r.heads["op"],
            "obs": r.obs,
            "next_obs": r.next_obs,
            "reward": r.reward,
            "terminated": r.terminated,
            "truncated": r.truncated,
            "positions": r.positions,
        }
        for r in rows
    ]


def built(store: EventStore) -> tuple[list[Transition], int]:
    engine = ProjectionEngine(store, [EsperTrainingProjection()])
    engine.catch_up("esper_training")
    with engine.read("esper_training") as tx:
        return completed(tx), pending_count(tx)


# -- contract and property ---------------------------------------------------------


class EsperTrainingContract(ProjectionContract):
    def make_projection(self) -> Projection:
        return EsperTrainingProjection()

    def logs(self) -> st.SearchStrategy[Log]:
        return esper_logs()

    def prepare(self, store: EventStore, log: Log) -> None:
        append_esper_log(store, log)


class TestSqliteEsperTraining(EsperTrainingContract):
    backend_fixture = "sqlite_backend"


class TestPostgresEsperTraining(EsperTrainingContract):
    backend_fixture = "postgres_backend"


@SETTINGS
@given(log=esper_logs(max_size=24))
def test_transitions_equal_an_independent_scan(backend: Backend, log: Log) -> None:
    with fresh_ledger(backend) as store:
        append_esper_log(store, log)
        rows, pending = built(store)
        want, want_pending = expected_transitions(store)
        assert actual(rows) == want
        assert pending == want_pending


# -- scenarios ---------------------------------------------------------------------


def command(cid: str, slot: str = "s0", op: LifecycleOp = LifecycleOp.GERMINATE) -> Any:
    return AdaptationCommand(
        command_id=cid,
        target_slot=slot,
        target_seed_id=None,
        blueprint_id="conv_light",
        operation=op,
        heads=ActionHeads(blueprint="conv_light", style=BlendStyle.GATED, alpha_target=0.75),
        metadata=DecisionMetadata(
            policy_version="tamiyo-v3", risk=0.2, blend=None, coverage=0.9, reason="plateau"
        ),
        security=CommandSecurity(
            signature="",
            nonce="x",
            issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            freshness_window=dt.timedelta(seconds=60),
            key_id=KEY_ID,
        ),
    )


def state(epoch: int, loss: float, accuracy: float) -> SystemStateReported:
    metrics = TrainingMetrics(
        epoch=epoch,
        step=epoch * 100,
        loss=loss,
        accuracy=accuracy,
        grad_norm=1.5,
        learning_rate=0.01,
        throughput_samples_per_s=None,
    )
    return SystemStateReported(metrics=metrics, seed_stages={})


def report(
    cid: str, loss: float, acc: float, outcome: FieldOutcome = FieldOutcome.SUCCESS
) -> FieldReport:
    delta = FieldReportDelta(
        loss_delta=loss, accuracy_delta=acc, latency_ms=2.0, observation_window_epochs=2
    )
    return FieldReport(command_id=cid, outcome=outcome, delta=delta, extra_metrics={})


def health(status: HealthStatus, priority: TelemetryPriority) -> TelemetryPacket:
    return TelemetryPacket(
        source="kasmina",
        priority=priority,
        health=SystemHealth(status=status, indicators={}),
        metrics=[],
        events=[],
    )


def germinated(slot: str, cid: str | None) -> SeedGerminated:
    return SeedGerminated(
        slot=slot,
        seed_id="seed-1",
        blueprint_id="conv_light",
        kernel_sha256=None,
        command_id=cid,
        epoch=3,
    )


SCENARIO: Log = [
    ("r1", state(1, 0.9, 0.50)),  # 1
    ("r1", health(HealthStatus.DEGRADED, TelemetryPriority.HIGH)),  # 2
    ("r1", command("good")),  # 3  admitted, reported
    (
        "r1|unsigned",
        command("forged"),
    ),  # 4  refused: a security.CommandRejected record takes position 4
    ("r1", germinated("s0", "good")),  # 5
    ("r1", state(2, 0.7, 0.60)),  # 6
    ("r1", report("good", -0.2, 0.1)),  # 7
    ("r2", command("cut")),  # 8  its run is abandoned before the report
    ("r2", state(5, 0.5, 0.8)),  # 9
    ("r2", RunAbandoned(last_heartbeat_seq=None, silent_for_s=90.0, reaper="reaper")),  # 10
    ("r2", state(6, 0.4, 0.9)),  # 11 after the cut: not the next state
    ("r1", command("open", "s1")),  # 12 never reported: pending
    ("r2", report("cut", 0.1, -0.05, FieldOutcome.NEUTRAL)),  # 13 late report
    ("r1", report("ghost", 0.0, 0.0)),  # 14 no such command: ignored
]


def test_scenario_by_hand(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        assert append_esper_log(store, SCENARIO) == list(range(1, 15))
        rows, pending = built(store)
    good, cut = rows
    assert (good.command_id, cut.command_id, pending) == ("good", "cut", 1)
    names = dict(zip(FEATURE_NAMES, good.obs, strict=True))
    assert (names["metrics.epoch"], names["metrics.loss"], names["slot.stage.DORMANT"]) == (
        1.0,
        0.9,
        1.0,
    )
    assert (names["health.DEGRADED"], names["priority.HIGH"], names["metrics.present"]) == (1, 1, 1)
    after = dict(zip(FEATURE_NAMES, good.next_obs, strict=True))
    assert after["metrics.epoch"] == 2.0 and after["slot.stage.GERMINATED"] == 1.0
    assert after["slots.count.GERMINATED"] == 1.0 and after["slots.count.DORMANT"] == 0.0
    assert good.reward == pytest.approx(0.1)  # reward v3: accuracy minus rent, no loss term
    assert (good.terminated, good.truncated, good.positions) == (
        False,
        False,
        [3, 1, 2, 7, 6, 2, 0],
    )
    assert (good.heads["style"], good.blueprint, good.alpha_target) == ("GATED", "conv_light", 0.75)
    # abandoned mid-window: truncated, next state frozen at the abandonment (epoch 5, not 6)
    assert (cut.terminated, cut.truncated, cut.positions) == (False, True, [8, 0, 0, 13, 9, 0, 10])
    assert dict(zip(FEATURE_NAMES, cut.next_obs, strict=True))["metrics.epoch"] == 5.0
    assert cut.reward == pytest.approx(-0.05)  # v3: the loss delta no longer counts


def test_episode_end_terminates_and_aborted_report_truncates(backend: Backend) -> None:
    end = EpisodeEnded(
        episode=1, steps=9, final_accuracy=0.9, episode_reward=1.0, success=True, truncated=False
    )
    log: Log = [
        ("r1", command("a")),
        ("r1", command("b", "s1")),
        ("r1", end),
        ("r1", report("a", 0.0, 0.0)),
        ("r1", command("c")),
        ("r1", report("c", 0.0, 0.0, FieldOutcome.ABORTED)),
        ("r1", report("b", 0.0, 0.0)),
    ]
    with fresh_ledger(backend) as store:
        append_esper_log(store, log)
        rows, pending = built(store)
    flags = {r.command_id: (r.terminated, r.truncated, r.positions[-1]) for r in rows}
    assert flags == {"a": (True, False, 3), "b": (True, False, 3), "c": (False, True, 6)}
    assert pending == 0


# -- export, Dataset, CLI ----------------------------------------------------------


def test_export_loads_back_through_the_dataset(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    from labledger.ledger import open_ledger

    with open_ledger(url, keyring=KeyRing({KEY_ID: SECRET})) as store:
        append_esper_log(store, SCENARIO)
        want, _ = expected_transitions(store)
        head_hash = store.verify().head_hash
    out = tmp_path / "train.pt"
    code, stdout, err = cli(
        url, "esper", "training-set", "export", "--out", str(out), capsys=capsys
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["transitions"], summary["pending_excluded"], summary["head_position"]) == (
        2,
        1,
        14,
    )
    doc = json.loads(manifest_path(out).read_text())
    assert doc["log"] == {"head_position": 14, "head_hash": head_hash}
    assert doc["source_position_range"] == [1, 13]
    assert doc["observation_features"] == list(FEATURE_NAMES)
    assert doc["tensors"]["observation"] == {"shape": [2, len(FEATURE_NAMES)], "dtype": "float64"}
    assert doc["tensors"]["next.reward"]["shape"] == [2, 1]

    data = TrainingSetDataset(out)
    assert len(data) == 2 and data.feature_names == list(FEATURE_NAMES)
    for i, expected in enumerate(want):
        item = data[i]
        assert item["observation"].tolist() == expected["obs"]
        assert item["next"]["observation"].tolist() == expected["next_obs"]
        assert item["next"]["reward"].item() == expected["reward"]
        assert item["next"]["terminated"].item() == expected["terminated"]
        assert item["next"]["truncated"].item() == expected["truncated"]
        assert item["next"]["done"].item() == (expected["terminated"] or expected["truncated"])
        assert item["source_positions"].tolist() == expected["positions"]
        op = doc["action_vocabularies"]["op"][item["action"]["op"].item()]
        assert op == expected["op"]
    blueprint = doc["action_vocabularies"]["blueprint"][int(data[0]["action"]["blueprint"])]
    assert blueprint == "conv_light" and bool(data[0]["action"]["alpha_target_mask"])
    batch = next(iter(torch.utils.data.DataLoader(TrainingSetDataset(out, torch.float32), 2)))
    assert batch["observation"].dtype == torch.float32 and batch["next"]["reward"].shape == (2, 1)


def test_tampered_export_is_refused(backend: Backend, tmp_path: Path) -> None:
    from labledger.errors import CorruptionDetected
    from labledger.projections.training_data import write_training_set

    with fresh_ledger(backend) as store:
        append_esper_log(store, SCENARIO)
        rows, pending = built(store)
    out = tmp_path / "t.pt"
    write_training_set(rows, out, head_position=14, head_hash="0" * 64, pending=pending)
    out.write_bytes(out.read_bytes() + b"x")
    with pytest.raises(CorruptionDetected):
        TrainingSetDataset(out)


def test_empty_export(backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    out = tmp_path / "empty.pt"
    assert cli(url, "esper", "training-set", "export", "--out", str(out), capsys=capsys)[0] == 0
    assert len(TrainingSetDataset(out)) == 0
    assert json.loads(manifest_path(out).read_text())["source_position_range"] is None


def test_stage_names_cover_the_catalog() -> None:
    assert {f"slot.stage.{s.value}" for s in SeedStage} <= set(FEATURE_NAMES)
