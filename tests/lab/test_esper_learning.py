"""Esper that learns (issue #16): counterfactual reports, determinism for every policy,
safety in the loop, the graph policy trained by AWR, and a reproducible evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from labledger import EventStore
from labledger.cli._engine import caught_up
from labledger.cli.main import run as cli
from labledger.errors import UsageError
from labledger.events import Event
from labledger.events.esper import (
    AdaptationCommand,
    ConservativeModeEntered,
    EmergencyHalt,
    EpisodeEnded,
    EvaluationCompleted,
    FieldReport,
    GrowthRefused,
    LifecycleOp,
    SafetyTrigger,
    SeedGerminated,
    SystemStateReported,
)
from labledger.events.typed import Typed, typed
from labledger.lab.esper import collect, evaluate, simic_awr
from labledger.lab.esper._run import ESPER_RUNS, commands_stream
from labledger.lab.esper.session import SessionConfig, run_session
from labledger.lab.esper.tamiyo import load_policy
from labledger.projections.esper_training import (
    FEATURE_NAMES,
    REWARD_VERSION,
    EsperTrainingProjection,
    Transition,
    completed,
    reward,
)
from labledger.security import KeyRing
from labledger.testing.backends import SqliteBackend
from labledger.testing.projection_contract import fresh_ledger

SPEC = collect.EpisodeSpec(epochs=5, window=2)


@pytest.fixture
def store(sqlite_backend: SqliteBackend) -> Iterator[EventStore]:
    with fresh_ledger(sqlite_backend, KeyRing({"lab": b"k" * 32})) as s:
        yield s


def items(store: EventStore, run_id: str) -> list[Typed[Event]]:
    return list(typed(store.read_stream(ESPER_RUNS.stream(run_id))))


def accuracies(store: EventStore, run_id: str) -> dict[int, float]:
    return {
        e.metrics.epoch: e.metrics.accuracy
        for e in (i.event for i in items(store, run_id))
        if isinstance(e, SystemStateReported)
    }


def commands(store: EventStore, run_id: str) -> list[tuple[str, str, str | None]]:
    return [
        (c.operation.value, c.target_slot, c.blueprint_id)
        for c in (i.event for i in typed(store.read_stream(commands_stream(run_id))))
        if isinstance(c, AdaptationCommand)
    ]


def test_the_control_branch_is_the_host_without_the_adaptation(store: EventStore) -> None:
    """The first GERMINATE's control equals a no-op run of the same seed, epoch for epoch."""
    run_session(store, SPEC.config(3, "noop"), run_id="noop")
    run_session(store, SPEC.config(3, "heuristic"), run_id="grow")
    untouched = accuracies(store, "noop")
    reports = [i.event for i in items(store, "grow") if isinstance(i.event, FieldReport)]
    first = reports[0]
    assert first.extra_metrics["counterfactual"] == 1.0
    judged = int(first.extra_metrics["decision_epoch"]) + first.delta.observation_window_epochs
    assert first.extra_metrics["control_accuracy"] == untouched[judged]
    grown = accuracies(store, "grow")
    assert first.delta.accuracy_delta == pytest.approx(grown[judged] - untouched[judged])
    assert first.extra_metrics["reward"] == reward(first)


@pytest.mark.parametrize("policy", ["heuristic", "random", "noop", "fixed:wide_mlp:r0"])
def test_same_seed_and_policy_give_the_same_commands_and_accuracies(
    store: EventStore, policy: str
) -> None:
    run_session(store, SPEC.config(7, policy), run_id="a")
    run_session(store, SPEC.config(7, policy), run_id="b")
    assert commands(store, "a") == commands(store, "b")
    assert accuracies(store, "a") == accuracies(store, "b")


def test_the_fixed_reference_grows_once_at_epoch_0_and_keeps_it(store: EventStore) -> None:
    spec = collect.EpisodeSpec(epochs=5, window=2)
    run_session(store, spec.config(0, "fixed:wide_mlp:r0"), run_id="fixed")
    assert commands(store, "fixed") == [
        ("GERMINATE", "r0", "wide_mlp"),
        ("FOSSILIZE", "r0", None),
    ]
    with pytest.raises(UsageError):
        load_policy("fixed:no_such:r0", store, spec.blueprints)
    with pytest.raises(UsageError):
        load_policy("fixed:wide_mlp:r9", store, spec.blueprints)
    with pytest.raises(UsageError):
        load_policy("fixed:wide_mlp:r0:soon", store, spec.blueprints)


def test_the_fixed_reference_can_grow_at_a_later_epoch(store: EventStore) -> None:
    spec = collect.EpisodeSpec(epochs=6, window=2)
    run_session(store, spec.config(0, "fixed:wide_mlp:r0:2"), run_id="late")
    assert commands(store, "late") == [("GERMINATE", "r0", "wide_mlp"), ("FOSSILIZE", "r0", None)]
    seen_epoch = None
    for item in typed(store.read_all()):
        if isinstance(item.event, SystemStateReported) and item.record.run_id == "late":
            seen_epoch = item.event.metrics.epoch
        if isinstance(item.event, AdaptationCommand):
            break
    assert isinstance(item.event, AdaptationCommand) and seen_epoch == 2  # after epoch 2
    assert item.event.metadata.policy_version == "tamiyo-fixed-1-e2"  # not the epoch-0 policy's


def test_a_risky_command_puts_kasmina_into_conservative_mode(store: EventStore) -> None:
    cfg = SessionConfig(epochs=4, seed=0, risk_threshold=0.2)  # the heuristic germinates at 0.3
    run_session(store, cfg, run_id="risky")
    events = [i.event for i in items(store, "risky")]
    entered = [e for e in events if isinstance(e, ConservativeModeEntered)]
    refused = [e for e in events if isinstance(e, GrowthRefused)]
    assert entered and entered[0].trigger is SafetyTrigger.RISK and "0.3" in entered[0].detail
    assert refused and refused[0].command_id == entered[0].command_id
    assert not any(isinstance(e, SeedGerminated) for e in events)
    report = next(e for e in events if isinstance(e, FieldReport))
    assert (report.delta.accuracy_delta, report.extra_metrics["reward"]) == (0.0, 0.0)


def test_rollbacks_in_a_row_halt_the_run(store: EventStore) -> None:
    cfg = SessionConfig(epochs=5, seed=0, diverge_epoch=1, halt_after_rollbacks=1)
    summary = run_session(store, cfg, run_id="halt")
    events = [i.event for i in items(store, "halt")]
    (halt,) = [e for e in events if isinstance(e, EmergencyHalt)]
    (ended,) = [e for e in events if isinstance(e, EpisodeEnded)]
    assert (halt.epoch, halt.rollbacks_in_a_row) == (1, 1)
    assert ended.truncated and max(summary.accuracy) == 1


def _rows(store: EventStore) -> list[Transition]:
    engine = caught_up(store, EsperTrainingProjection.name, progress=False)
    with engine.read(EsperTrainingProjection.name) as tx:
        return list(completed(tx))


def test_awr_learns_a_deterministic_graph_policy_and_evaluate_reproduces(
    store: EventStore,
) -> None:
    done = collect.collect(store, [0, 1, 2], spec=SPEC)
    assert (done.episodes, collect.collect(store, [0, 1, 2], spec=SPEC).skipped) == (3, 3)
    rows = _rows(store)
    config = simic_awr.AwrConfig(steps=30, horizon=SPEC.epochs)
    blob, report = simic_awr.train(rows, SPEC.blueprints, config)
    assert simic_awr.train(rows, SPEC.blueprints, config)[0] == blob
    assert report.transitions == len(rows) == 3 * SPEC.epochs
    sha, _ = simic_awr.record(store, blob, report, config)
    learned = f"learned:{sha}"
    policies = ["noop", "random", learned]
    first = evaluate.run_all(store, policies, [100, 101], spec=SPEC, tag="e1")
    again = evaluate.run_all(store, policies, [100, 101], spec=SPEC, tag="e2")
    for policy in policies:
        assert [(r.final_accuracy, r.params_added, r.reward) for r in first[policy]] == [
            (r.final_accuracy, r.params_added, r.reward) for r in again[policy]
        ]
    one = evaluate.completed_event(
        first, [100, 101], SPEC, bootstrap_seed=0, resamples=200, estimates={}
    )
    two = evaluate.completed_event(
        again, [100, 101], SPEC, bootstrap_seed=0, resamples=200, estimates={}
    )
    assert (one.policies, one.differences) == (two.policies, two.differences)
    assert one.evaluation_id == two.evaluation_id
    assert {d.baseline for d in one.differences} == {"noop", "random"}
    position = evaluate.record(store, one)
    (stored,) = typed(store.read_stream(evaluate.EVALUATIONS_STREAM))
    assert stored.position == position and isinstance(stored.event, EvaluationCompleted)
    assert all(
        c[0] != LifecycleOp.WAIT.value for r in first[learned] for c in commands(store, r.run_id)
    )


def test_a_fixed_reference_is_compared_without_a_checkpoint_and_lengths_get_own_ids() -> None:
    def score(policy: str, seed: int, accuracy: float) -> evaluate.RunScore:
        return evaluate.RunScore(policy, seed, f"{policy}-{seed}", accuracy, 0, 81, 0.0)

    scores = {
        p: [score(p, s, a + s / 100) for s in (100, 101, 102)]
        for p, a in (("noop", 0.7), ("fixed:wide_mlp:r0", 0.8))
    }
    event = evaluate.completed_event(
        scores, [100, 101, 102], SPEC, bootstrap_seed=0, resamples=200, estimates={}
    )
    assert [p.checkpoint_sha256 for p in event.policies] == [None, None]
    (diff,) = event.differences
    assert (diff.policy, diff.baseline, diff.mean) == ("fixed:wide_mlp:r0", "noop", 0.1)
    assert collect.run_id(collect.EpisodeSpec(), "eval", "noop", 3) == "eval-spirals-noop-s3"
    longer = collect.EpisodeSpec(epochs=20)
    assert collect.run_id(longer, "eval", "noop", 3) == "eval-spirals-e20-noop-s3"


def test_evaluate_refuses_bad_seeds_with_exit_2(store: EventStore) -> None:
    assert cli(["--db", store.url, "esper", "evaluate", "--seeds", "9-3"]) == 2
    assert store.stream_version(evaluate.EVALUATIONS_STREAM) < 0  # nothing recorded


def test_one_reward_everywhere_and_slot_counts_from_the_start_issue_16(store: EventStore) -> None:
    """The report, the training set and audit agree on every reward; every slot is counted."""
    from labledger.projections import audit

    run_session(store, SPEC.config(5, "heuristic"), run_id="agree")
    reports = {
        e.command_id: e.extra_metrics["reward"]
        for e in (i.event for i in items(store, "agree"))
        if isinstance(e, FieldReport)
    }
    rows = [t for t in _rows(store) if t.run_id == "agree"]
    assert reports and {t.command_id: t.reward for t in rows} == reports
    engine = caught_up(store, audit.AuditProjection.name, progress=False)
    with engine.read(audit.AuditProjection.name) as tx:
        for command_id, value in reports.items():
            (link,) = [x for x in audit.trail(tx, command_id) if x["step"] == "reward"]
            assert link["value"] == value and link["reward_version"] == REWARD_VERSION == 4
    first = dict(zip(FEATURE_NAMES, rows[0].obs, strict=True))
    assert rows[0].heads["op"] == "GERMINATE"
    assert first["slots.count.DORMANT"] == 2.0  # both slots, though no lifecycle event yet
    assert not any("throughput" in name for name in FEATURE_NAMES)  # no clock in the input


def test_the_once_behaviour_grows_once_is_judged_at_the_end_and_q_stays_in_its_support(
    store: EventStore,
) -> None:
    """A clean collect (issue #16, round 4): one germination per episode at a random
    (epoch, slot, blueprint), each report judged at the episode's last epoch, a fitted-Q
    graph policy that never acts where the behaviour could not, and a per-episode OPE."""
    from labledger.lab.esper import actions, baselines, ope
    from labledger.lab.esper.tamiyo_graph import GraphState

    spec = collect.EpisodeSpec(epochs=5, window=5)
    seeds = [0, 1, 2, 3]
    collect.collect(store, seeds, policy="once:2", spec=spec)
    for seed in seeds:
        rid = collect.run_id(spec, "collect", "once:2", seed)
        assert rid == f"collect-spirals-e5-w5-once-2-s{seed}"
        at, grow = baselines.once_plan(seed, 2, ["r0", "r1"], spec.blueprints)
        done = commands(store, rid)
        assert len(done) == spec.epochs  # every epoch is a transition, waits included
        assert [c for c in done if c[0] == "GERMINATE"] == [
            ("GERMINATE", grow.slot, grow.blueprint)
        ]
        assert done.index(("GERMINATE", grow.slot, grow.blueprint)) == at
        germination = next(
            e
            for e in (i.event for i in items(store, rid))
            if isinstance(e, FieldReport) and e.extra_metrics["added_params"] > 0
        )
        judged = germination.extra_metrics["decision_epoch"]
        assert judged + germination.delta.observation_window_epochs == spec.epochs - 1
    rows = _rows(store)
    for t in rows:
        state = GraphState.from_transition(t)
        legal = actions.exploring(actions.legal(state.stages(), spec.blueprints))
        mu = ope.behaviour_probabilities(t, state, legal)
        assert sum(mu) == pytest.approx(1.0)
        taken = actions.as_action(t.heads["op"], t.slot, t.blueprint)
        assert mu[[a.key for a in legal].index(taken.key)] > 0.0
    config = simic_awr.AwrConfig(
        steps=30, horizon=spec.epochs, method="q", temperature=0.01, support="once:2"
    )
    blob, report = simic_awr.train(rows, spec.blueprints, config)
    assert simic_awr.train(rows, spec.blueprints, config)[0] == blob
    sha, _ = simic_awr.record(store, blob, report, config)
    scores = evaluate.run_all(store, [f"learned:{sha}"], [100, 101], spec=spec, tag="q")
    for r in scores[f"learned:{sha}"]:
        grows = [c for c in commands(store, r.run_id) if c[0] == "GERMINATE"]
        assert len(grows) <= 1 and not any(c[0] == "PRUNE" for c in commands(store, r.run_id))
    # the per-episode estimate of a policy that replays seed 0's plan: its matching episodes
    at, grow = baselines.once_plan(0, 2, ["r0", "r1"], spec.blueprints)

    def replay(state: GraphState) -> actions.Action:
        return actions.once_action(state.stages(), state.epoch, at, grow)

    returns: dict[str, float] = {}
    for seed in seeds:
        if baselines.once_plan(seed, 2, ["r0", "r1"], spec.blueprints) == (at, grow):
            rid = collect.run_id(spec, "collect", "once:2", seed)
            grown = [t for t in rows if t.run_id == rid and t.heads["op"] == "GERMINATE"]
            returns[rid] = sum(t.reward for t in grown)
    estimate = ope.episode_wis(rows, replay, spec.blueprints)
    assert estimate is not None and estimate.matched == len(returns)
    assert estimate.per_episode == pytest.approx(sum(returns.values()) / len(returns))
    never = ope.episode_wis(rows, lambda s: actions.Action(LifecycleOp.WAIT, None), spec.blueprints)
    assert never is None  # the behaviour always grows: no episode of it waits throughout
    with pytest.raises(UsageError):
        simic_awr.train(rows, spec.blueprints, simic_awr.AwrConfig(method="q", support="x"))
    assert collect.EpisodeSpec(batch=16, window=12).label == "spirals-b16-w12"


class _TableQ(torch.nn.Module):
    """Q as a free table (row × action): the backup itself, without a network's generalisation."""

    def __init__(self, rows: int, actions: int) -> None:
        super().__init__()
        self.q = torch.nn.Parameter(torch.zeros(rows, actions))
        self.v = torch.nn.Parameter(torch.zeros(rows))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.q, x @ self.v


def test_fitted_q_iteration_backs_the_next_decision_up_into_waiting_issue_16() -> None:
    from labledger.lab.esper import simic_fqi

    # one run: WAIT (r 0) → GERMINATE (r +0.1, the only supported action there) → FOSSILIZE (r 0)
    x = torch.eye(3)
    allowed = torch.tensor([[True, True], [True, False], [False, True]])
    a, r = torch.tensor([1, 0, 1]), torch.tensor([0.0, 0.1, 0.0])
    following = [1, 2, -1]

    def fitted(iterations: int) -> torch.Tensor:
        model = _TableQ(3, 2)
        simic_fqi.fit(
            model,
            x,
            allowed,
            a,
            r,
            following,  # type: ignore[arg-type]
            iterations=iterations,
            steps=300,
            lr=0.05,
            temperature=1.0,
        )
        return model.q.detach()

    one, three = fitted(1), fitted(3)
    assert one[0, 1] == pytest.approx(0.0, abs=1e-3)  # one-step: waiting is worth its reward
    assert three[0, 1] == pytest.approx(0.1, abs=1e-3)  # …and with backups what it leads to
    assert three[1, 0] == pytest.approx(0.1, abs=1e-3) and three[2, 1] == pytest.approx(
        0.0, abs=1e-3
    )


def test_fqi_trains_from_a_once_collect_is_deterministic_and_may_wait_anywhere(
    store: EventStore,
) -> None:
    from labledger.lab.esper import simic_fqi, tamiyo_graph
    from labledger.lab.esper.tamiyo_graph import GraphState

    spec = collect.EpisodeSpec(epochs=5, window=5)
    collect.collect(store, [0, 1, 2, 3], policy="once:2", spec=spec)
    rows = simic_fqi.in_log_order(_rows(store))
    following = simic_fqi.next_decisions(rows)
    for i, j in enumerate(following):
        if j >= 0:
            assert rows[j].run_id == rows[i].run_id
            assert rows[j].command_position > rows[i].command_position
    assert following.count(-1) == 4  # each run's last decision
    config = simic_awr.AwrConfig(
        steps=20,
        iterations=3,
        horizon=spec.epochs,
        method="fqi",
        temperature=0.01,
        support="once:2",
    )
    blob, report = simic_awr.train(rows, spec.blueprints, config)
    assert simic_awr.train(rows, spec.blueprints, config)[0] == blob
    header, _ = tamiyo_graph.load_bytes(blob)
    assert header.training["wait_anywhere"] is True
    assert header.training["iterations"] == 3 and header.training["method"] == simic_fqi.FQI_METHOD
    # past the behaviour's last germination epoch only WAIT is supported; WAIT is supported anywhere
    late = GraphState(
        epoch=4,
        accuracy=0.5,
        loss=1.0,
        critical=False,
        slots={"r0": ("DORMANT", 0.0), "r1": ("DORMANT", 0.0)},
    )
    mask = tamiyo_graph.supported_mask(late, spec.blueprints, 2, wait_anywhere=True)
    keys = [k.key for k, ok in zip(tamiyo_graph.layout(spec.blueprints), mask, strict=True) if ok]
    assert keys == [actions_wait_key()]
    early = GraphState(epoch=2, accuracy=0.5, loss=1.0, critical=False, slots=late.slots)
    forced = tamiyo_graph.supported_mask(early, spec.blueprints, 2, wait_anywhere=False)
    assert not forced[
        [k.key for k in tamiyo_graph.layout(spec.blueprints)].index(actions_wait_key())
    ]
    held = GraphState(
        epoch=3,
        accuracy=0.5,
        loss=1.0,
        critical=False,
        slots={"r0": ("HOLDING", 1.0), "r1": ("DORMANT", 0.0)},
    )
    keep = tamiyo_graph.supported_mask(held, spec.blueprints, 2, wait_anywhere=True)
    assert [
        k.key for k, ok in zip(tamiyo_graph.layout(spec.blueprints), keep, strict=True) if ok
    ] == ["FOSSILIZE:r0"]  # a HOLDING seed is fossilized, as the behaviour did
    sha, _ = simic_awr.record(store, blob, report, config)
    scores = evaluate.run_all(store, [f"learned:{sha}"], [100, 101], spec=spec, tag="fqi")
    for score in scores[f"learned:{sha}"]:
        done = commands(store, score.run_id)
        assert sum(c[0] == "GERMINATE" for c in done) <= 1 and all(c[0] != "PRUNE" for c in done)
    with pytest.raises(UsageError, match="support"):
        simic_awr.train(rows, spec.blueprints, simic_awr.AwrConfig(method="fqi"))
    learn = ["--db", store.url, "esper", "learn", "--method", "fqi", "--support", "once:2"]
    learn += ["--steps", "5", "--iterations", "2", "--horizon", "5", "--dry-run"]
    assert cli([*learn, "--task", "spirals_mix"]) == 2  # these episodes are plain spirals
    assert cli([*learn, "--task", "spirals"]) == 0


def actions_wait_key() -> str:
    from labledger.lab.esper import actions

    return actions.Action(LifecycleOp.WAIT, None).key


def test_growth_decides_a_hard_seed_of_the_pre_activation_task_issue_16(store: EventStore) -> None:
    from labledger.lab.esper import tolaria

    mix = tolaria.task("spirals_mix_pre")
    hard = next(s for s in range(300, 320) if mix.turns_of(s) == max(mix.mix))
    easy = next(s for s in range(300, 320) if mix.turns_of(s) == min(mix.mix))
    spec = collect.EpisodeSpec(task="spirals_mix_pre", epochs=20, window=20)
    policies = ["noop", "fixed:wide_mlp:r0"]
    scores = evaluate.run_all(store, policies, [hard, easy], spec=spec, tag="pre")
    (noop_hard, noop_easy), (grown_hard, grown_easy) = scores["noop"], scores["fixed:wide_mlp:r0"]
    # the seed widens the host's first layer: far above what the host reaches alone
    assert grown_hard.final_accuracy > noop_hard.final_accuracy + 0.1
    assert grown_hard.metric > noop_hard.metric + 0.05  # net of the rent
    # easy spirals: the host solves them alone, and growth only costs its rent
    assert noop_easy.final_accuracy > 0.97 and grown_easy.metric < noop_easy.metric
    grow = ["esper", "collect", "--task", "spirals_mix_pre", "--seeds", "500", "--policy", "once:2"]
    assert cli(["--db", store.url, *grow, "--epochs", "3", "--window", "end"]) == 0
