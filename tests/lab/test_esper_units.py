"""Esper lab pure parts (issue #7): reward rule, alpha schedule, gates, verification, Urza cache."""

from __future__ import annotations

import datetime as dt
import math

import msgspec
import pytest
import torch

from labledger.errors import CorruptionDetected
from labledger.events.esper import (
    ActionHeads,
    AdaptationCommand,
    AlphaCurve,
    DecisionMetadata,
    FieldOutcome,
    LifecycleOp,
    SeedStage,
    TrainingMetrics,
)
from labledger.events.security import CommandSecurity, RejectReason
from labledger.lab.esper import counterfactual, field_reports, kasmina, tolaria, urza
from labledger.lab.esper.slots import SeedSlot
from labledger.projections.esper_training import reward as projection_reward
from labledger.security import KeyRing, sign
from labledger.testing.backends import SqliteBackend
from labledger.testing.projection_contract import fresh_ledger

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def metrics(epoch: int, loss: float, accuracy: float) -> TrainingMetrics:
    return TrainingMetrics(
        epoch=epoch,
        step=10 * epoch,
        loss=loss,
        accuracy=accuracy,
        grad_norm=1.0,
        learning_rate=0.3,
        throughput_samples_per_s=None,
    )


def test_reward_rule_is_the_one_reward_definition_with_the_rent() -> None:
    """Issue #16: the field report, the training set and audit share one reward (with rent)."""
    pending = field_reports.PendingReport(
        command_id="c",
        epoch=1,
        due_epoch=3,
        baseline=metrics(1, 0.8, 0.70),
        added_params=1000,
        host_params=5000,
        latency_ms=2.0,
    )
    report = field_reports.report(pending, metrics(3, 0.5, 0.80))
    d = report.delta
    assert (d.observation_window_epochs, d.accuracy_delta) == (2, pytest.approx(0.10))
    assert d.loss_delta == pytest.approx(-0.3)
    rent = 0.01 * 1000 / 5000
    assert report.extra_metrics["param_rent"] == pytest.approx(rent)
    assert report.extra_metrics["reward"] == pytest.approx(0.10 - rent)  # v3: no loss term
    assert report.extra_metrics["reward"] == projection_reward(report)
    assert report.extra_metrics["reward_version"] == 4.0
    assert report.outcome is FieldOutcome.SUCCESS
    worse = field_reports.report(pending, metrics(2, 0.9, 0.69))
    assert worse.outcome is FieldOutcome.REGRESSION
    cut = field_reports.report(pending, metrics(1, 0.8, 0.7))  # the run ended at the decision
    assert cut.outcome is FieldOutcome.ABORTED and cut.extra_metrics["observed_epochs"] == 0


@pytest.mark.parametrize("curve", list(AlphaCurve))
def test_alpha_schedule_rises_monotonically_to_its_target(curve: AlphaCurve) -> None:
    values = [kasmina.alpha_at(i, 4, 0.8, curve) for i in range(5)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.8)
    assert values == sorted(values)


def test_lifecycle_training_blending_holding_and_an_open_breaker_prunes() -> None:
    s = kasmina.SlotState(
        stage=SeedStage.TRAINING, seed_id="s1", kernel_sha="a" * 64, blend_steps=2, train_epochs=1
    )
    seen = kasmina.Observed(
        epoch=2, train_loss=0.5, val_loss=0.4, probe_loss={"r0": 0.55}, breaker_open={}
    )
    changes, pruned = kasmina.tick("r0", s, seen)
    assert pruned is None and [type(c).__name__ for c in changes] == [
        "SeedGateEvaluated",
        "SeedStageChanged",
    ]
    assert (s.stage, s.alpha) == (SeedStage.BLENDING, 0.5)
    kasmina.tick("r0", s, seen)
    assert s.alpha == 1.0
    changes, pruned = kasmina.tick("r0", s, seen)
    assert s.stage is SeedStage.HOLDING and changes[0].passed  # type: ignore[union-attr]
    bad = kasmina.SlotState(stage=SeedStage.TRAINING, seed_id="s2", train_epochs=3)
    broken = kasmina.Observed(2, 0.5, 0.4, {}, {"r0": "kernel output shape (2, 33)"})
    assert kasmina.tick("r0", bad, broken)[1] == "circuit breaker open: kernel output shape (2, 33)"
    assert kasmina.applicable(LifecycleOp.FOSSILIZE, bad) is not None


def command(ring: KeyRing, now: dt.datetime = NOW) -> AdaptationCommand:
    meta = DecisionMetadata(policy_version="p", risk=0.1, blend=None, coverage=1.0)
    cmd = AdaptationCommand(
        command_id="c1",
        target_slot="r0",
        target_seed_id=None,
        blueprint_id="low_rank",
        operation=LifecycleOp.GERMINATE,
        heads=ActionHeads(blueprint="low_rank"),
        metadata=meta,
        security=CommandSecurity(
            signature="",
            nonce="n",
            issued_at=now,
            key_id="k",
            freshness_window=dt.timedelta(seconds=60),
        ),
    )
    signed = sign(cmd, ring, now=now)
    assert isinstance(signed, AdaptationCommand)
    return signed


def test_kasmina_verifies_admission_signature_freshness_nonce_and_slot() -> None:
    ring = KeyRing({"k1": b"s" * 32})
    cmd = command(ring)
    ok = {"in_log": True, "now": NOW, "nonces_seen": set[str](), "slots": {"r0", "r1"}}
    assert kasmina.verify(cmd, ring, **ok) is None  # type: ignore[arg-type]
    forged = msgspec.structs.replace(cmd, blueprint_id="residual_mlp")
    cases = [
        (cmd, {"in_log": False}, RejectReason.MALFORMED),
        (forged, {}, RejectReason.BAD_SIGNATURE),
        (cmd, {"now": NOW + dt.timedelta(minutes=5)}, RejectReason.STALE),
        (cmd, {"now": NOW - dt.timedelta(minutes=5)}, RejectReason.FUTURE),
        (cmd, {"nonces_seen": {cmd.security.nonce}}, RejectReason.REPLAYED_NONCE),
        (cmd, {"slots": {"r1"}}, RejectReason.MALFORMED),
    ]
    for c, change, reason in cases:
        problem = kasmina.verify(c, ring, **(ok | change))  # type: ignore[arg-type]
        assert problem is not None and problem[0] is reason, (change, problem)
    assert kasmina.verify(cmd, KeyRing({"k2": b"t" * 32}), **ok)[0] is RejectReason.UNKNOWN_KEY  # type: ignore[arg-type,index]


def test_kernel_cache_verifies_refuses_pickles_and_evicts_lru_by_size(
    sqlite_backend: SqliteBackend,
) -> None:
    with fresh_ledger(sqlite_backend) as store:
        kernels, events = urza.register_kernels(store, list(urza.BLUEPRINTS), 32, seed=1)
        assert [e.blueprint_id for e in events] == list(urza.BLUEPRINTS)
        again, _ = urza.register_kernels(store, ["low_rank"], 32, seed=1)
        assert again["low_rank"].sha256 != kernels["low_rank"].sha256  # seeded by position
        sizes = sorted(k.size for k in kernels.values())
        cache = urza.KernelCache(store, max_bytes=sizes[-1] + sizes[-2])
        for k in kernels.values():
            module = cache.instantiate(k.sha256)
            x = torch.randn(3, 32)
            assert module(x).shape == (3, 32)
        assert cache.misses == len(kernels) and cache.evictions >= 1
        assert cache.size <= cache.max_bytes
        first = next(iter(kernels.values())).sha256
        assert first not in cache  # least recently used went first
        last = list(kernels.values())[-1].sha256
        cache.fetch(last)
        assert cache.hits == 1
        pickled = store.put_blob(b"\x80\x04K\x01.")
        with pytest.raises(CorruptionDetected, match="not a TorchScript archive"):
            cache.instantiate(pickled)


def test_slot_falls_back_to_identity_and_the_breaker_isolates_a_failing_kernel() -> None:
    data, _ = urza.compile_blueprint("broken_shape", 32, seed=0)
    import io

    with urza._jit_quiet():
        kernel = torch.jit.load(io.BytesIO(data))  # type: ignore[no-untyped-call]
    slot = SeedSlot("r0", 32)
    slot.attach(kernel)
    slot.mode, slot.alpha = "blend", 0.5
    x = torch.randn(4, 32)
    for _ in range(5):
        assert torch.equal(slot(x), x)  # the identity path
    assert slot.breaker.open and slot.breaker.total == 3  # isolated: not called after opening
    assert "shape" in slot.breaker.last_error


def test_divergence_rule_and_checkpoint_round_trip_without_pickle() -> None:
    assert tolaria.diverged(math.inf, None) and tolaria.diverged(2.0, 0.5)
    assert not tolaria.diverged(1.4, 0.5)
    host = tolaria.Host(seed=3)
    blob = tolaria.encode_checkpoint(dict(host.state_dict()), {"epoch": 2})
    assert not blob.startswith(b"\x80")
    tensors, state = tolaria.decode_checkpoint(blob)
    assert state == {"epoch": 2}
    assert all(torch.equal(tensors[k], v) for k, v in host.state_dict().items())
    with pytest.raises(CorruptionDetected):
        tolaria.decode_checkpoint(b"\x80\x04garbage")


def test_a_counterfactual_report_judges_against_the_control_branch_issue_16() -> None:
    pending = field_reports.PendingReport(
        command_id="c",
        epoch=1,
        due_epoch=3,
        baseline=metrics(1, 0.8, 0.40),
        added_params=0,
        host_params=100,
        latency_ms=0.0,
        control={2: (0.7, 0.50), 3: (0.6, 0.55)},
    )
    report = field_reports.report(pending, metrics(3, 0.5, 0.60))
    # the host's own learning (0.40 -> 0.55) is the control's, not the decision's
    assert report.delta.accuracy_delta == pytest.approx(0.05)
    assert report.delta.loss_delta == pytest.approx(-0.1)
    assert report.extra_metrics["counterfactual"] == 1.0
    assert report.extra_metrics["control_accuracy"] == 0.55
    cut = field_reports.report(pending, metrics(2, 0.65, 0.52))  # the run ended after epoch 2
    assert cut.delta.accuracy_delta == pytest.approx(0.02)
    # an emergency halt after epoch 2 freezes the run there: the control is read at its window's end
    halted = field_reports.report(pending, metrics(2, 0.65, 0.52), halted=True)
    assert halted.delta.accuracy_delta == pytest.approx(0.52 - 0.55)
    unchanged = msgspec.structs.replace(pending, control=None, unchanged=True)
    same = field_reports.report(unchanged, metrics(3, 0.5, 0.60))
    assert (same.delta.accuracy_delta, same.delta.loss_delta) == (0.0, 0.0)
    assert same.outcome is FieldOutcome.NEUTRAL


def test_sweep_tasks_are_made_from_the_seed_with_their_own_shape() -> None:
    a = tolaria.load_data(3, task_name="rings_w2")
    b = tolaria.load_data(3, task_name="rings_w2")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, tolaria.load_data(4, task_name="rings_w2").x_train)
    radius = a.x_train.norm(dim=1)
    for cls, r in enumerate((0.3, 0.6, 0.9)):
        assert abs(float(radius[a.y_train == cls].mean()) - r) < 0.02
    twisted = tolaria.load_data(3, task_name="spirals_t2_w4").x_train
    assert not torch.equal(twisted, tolaria.load_data(3, task_name="spirals").x_train)
    assert tolaria.Host(0, tolaria.task("rings_w2")).host_parameter_count() == 21


def test_the_control_branch_replays_the_divergence_rollback_issue_16() -> None:
    # at lr 50 plain SGD blows the spirals host up: the session would roll back, so must the control
    shape = tolaria.task("spirals")
    data = tolaria.load_data(5, task_name="spirals")
    host = tolaria.Host(5, shape)
    start_loss, _ = tolaria.evaluate(host, data)
    start = {k: v.clone() for k, v in host.state_dict().items()}
    fork = counterfactual.fork_host(host, {}, urza.KernelCache(1 << 20))
    control = counterfactual.control_branch(
        fork,
        {},
        data,
        seed=5,
        lr=50.0,
        batch=32,
        first_epoch=0,
        epochs=3,
        last_good_loss=start_loss,
    )
    assert control.rollbacks == 3  # every epoch diverged and was undone
    assert all(loss == pytest.approx(start_loss) for loss, _ in control.epochs.values())
    assert all(torch.equal(start[k], v) for k, v in fork.state_dict().items())
    # at the lr of an episode nothing diverges: no rollback, and the control learns
    calm = counterfactual.control_branch(
        counterfactual.fork_host(host, {}, urza.KernelCache(1 << 20)),
        {},
        data,
        seed=5,
        lr=0.3,
        batch=32,
        first_epoch=0,
        epochs=2,
        last_good_loss=start_loss,
    )
    assert calm.rollbacks == 0 and calm.epochs[1][0] < start_loss


def test_the_mixed_task_draws_easy_or_hard_spirals_from_the_seed_issue_16() -> None:
    mix = tolaria.task("spirals_mix")
    turns = [mix.turns_of(seed) for seed in range(100, 130)]
    assert set(turns) == {0.5, 1.5} and turns == [mix.turns_of(s) for s in range(100, 130)]
    easy = next(s for s in range(100, 130) if mix.turns_of(s) == 0.5)
    hard = next(s for s in range(100, 130) if mix.turns_of(s) == 1.5)
    for seed, half_turns in ((easy, 0.5), (hard, 1.5)):
        x, _ = tolaria.spirals(seed, turns=half_turns)
        data = tolaria.load_data(seed, task_name="spirals_mix")
        both = torch.cat([data.x_train, data.x_val]).flatten()
        assert torch.equal(torch.sort(both).values, torch.sort(x.flatten()).values)
    assert (
        tolaria.Host(0, mix).host_parameter_count()
        == tolaria.Host(0, tolaria.task("spirals")).host_parameter_count()
    )


def test_the_pre_activation_task_puts_the_seed_before_the_relu_issue_16() -> None:
    pre, post = tolaria.task("spirals_mix_pre"), tolaria.task("spirals_mix")
    assert pre.pre_activation and not post.pre_activation
    assert set(pre.turns_of(s) for s in range(100, 130)) == {0.5, 1.5}
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    a, b = tolaria.Host(0, pre), tolaria.Host(0, post)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))  # empty slots: the same network either way
        kernel = urza.ResidualMLP(pre.hidden)
        for p in kernel.parameters():
            p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(p.numel()))
        for host in (a, b):
            host.slot("r0").attach(kernel)
            host.slot("r0").mode, host.slot("r0").alpha = "blend", 1.0
        z = a.fc1(x)
        before = torch.relu(z + kernel(z))  # the seed widens the first layer
        after = torch.relu(z) + kernel(torch.relu(z))  # the seed refines rectified features
        expect_pre = a.out(torch.relu(a.fc2(before)))
        expect_post = b.out(torch.relu(b.fc2(after)))
        assert torch.allclose(a(x), expect_pre) and torch.allclose(b(x), expect_post)
        assert not torch.allclose(a(x), b(x))
