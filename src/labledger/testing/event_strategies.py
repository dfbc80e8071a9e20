"""Hypothesis strategies for catalog events, derived from the struct definitions.

``hypothesis.strategies.from_type`` does not read msgspec's ``Meta``
constraints, so this module walks ``msgspec.inspect.type_info`` instead: every
field's type and constraints (ranges, lengths, patterns, enums, nesting) become
a strategy that only draws valid values. Cross-field rules that live in a
struct's ``__post_init__`` are honoured by rejecting draws that violate them.

Usable by any test suite (store conformance tests included)::

    from labledger.testing.event_strategies import any_event, events_of

    @given(any_event())
    def test_append_round_trips(event): ...
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from typing import Any

import msgspec
from hypothesis import reject
from hypothesis import strategies as st

import labledger.events as ev
from labledger.events import Event, all_types
from labledger.events.security import KeyAlgorithm, KeyRegistered
from labledger.security.keybook import GATE_ACTOR
from labledger.security.reserved import as_gate

_UTC = dt.UTC
# Wide enough to exercise encodings, narrow enough to keep examples readable.
_MAX_TEXT = 24
_MAX_ITEMS = 4
_MIN_DATETIME = dt.datetime(1970, 1, 1)
_MAX_DATETIME = dt.datetime(2200, 1, 1)
_MAX_TIMEDELTA = dt.timedelta(days=1)


def _ints(t: msgspec.inspect.IntType) -> st.SearchStrategy[int]:
    low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
    high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
    return st.integers(min_value=low, max_value=high)


def _floats(t: msgspec.inspect.FloatType) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=t.ge if t.ge is not None else t.gt,
        max_value=t.le if t.le is not None else t.lt,
        exclude_min=t.gt is not None,
        exclude_max=t.lt is not None,
        allow_nan=False,
        allow_infinity=False,
    )


def _strs(t: msgspec.inspect.StrType) -> st.SearchStrategy[str]:
    low = t.min_length or 0
    high = t.max_length if t.max_length is not None else low + _MAX_TEXT
    if t.pattern is None:
        return st.text(min_size=low, max_size=min(high, low + _MAX_TEXT))
    compiled = re.compile(t.pattern)
    return (
        st.from_regex(compiled)
        .map(lambda s: s[: max(high, low)])
        .filter(lambda s: low <= len(s) <= high and compiled.search(s) is not None)
    )


def _sized(t: msgspec.inspect.ListType | msgspec.inspect.DictType) -> tuple[int, int]:
    low = t.min_length or 0
    high = t.max_length if t.max_length is not None else low + _MAX_ITEMS
    return low, min(high, low + _MAX_ITEMS)


def _union(t: msgspec.inspect.UnionType) -> st.SearchStrategy[Any]:
    return st.one_of(*(from_type_info(member) for member in t.types))


def from_type_info(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """A strategy for values valid against one ``msgspec.inspect`` type node.

    Raises:
        TypeError: the node is of a kind no catalog event uses.
    """
    mi = msgspec.inspect
    simple: dict[type[mi.Type], st.SearchStrategy[Any]] = {
        mi.NoneType: st.none(),
        mi.BoolType: st.booleans(),
        mi.DateTimeType: st.datetimes(_MIN_DATETIME, _MAX_DATETIME, timezones=st.just(_UTC)),
        mi.TimeDeltaType: st.timedeltas(dt.timedelta(microseconds=1), _MAX_TIMEDELTA),
    }
    if type(t) in simple:
        return simple[type(t)]
    match t:
        case mi.Metadata():
            return from_type_info(t.type)
        case mi.IntType():
            return _ints(t)
        case mi.FloatType():
            return _floats(t)
        case mi.StrType():
            return _strs(t)
        case mi.EnumType():
            return st.sampled_from(list(t.cls))
        case mi.LiteralType():
            return st.sampled_from(list(t.values))
        case mi.UnionType():
            return _union(t)
        case mi.ListType():
            low, high = _sized(t)
            return st.lists(from_type_info(t.item_type), min_size=low, max_size=high)
        case mi.DictType():
            low, high = _sized(t)
            keys, values = from_type_info(t.key_type), from_type_info(t.value_type)
            return st.dictionaries(keys, values, min_size=low, max_size=high)
        case mi.StructType():
            return _struct(t)
    raise TypeError(f"no strategy for msgspec type {t!r}")


def _struct(t: msgspec.inspect.StructType) -> st.SearchStrategy[Any]:
    fields = {f.name: from_type_info(f.type) for f in t.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        kwargs = {name: draw(strategy) for name, strategy in fields.items()}
        try:
            return t.cls(**kwargs)
        except ValueError:  # a cross-field rule of __post_init__
            reject()

    return build()


def events_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Valid instances of one event class (current or old version)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    strategy: st.SearchStrategy[Event] = _struct(info)
    return strategy


def any_event() -> st.SearchStrategy[Event]:
    """Valid instances of every current event class."""
    return st.one_of(*(events_of(cls) for cls in all_types()))


def _h(label: str) -> str:
    """A deterministic fake SHA-256 for examples."""
    return hashlib.sha256(label.encode()).hexdigest()


def _security(nonce: str) -> ev.CommandSecurity:
    return ev.CommandSecurity(
        signature="",
        nonce=nonce,
        issued_at=dt.datetime(2025, 10, 8, 10, 55, 17, tzinfo=_UTC),
        freshness_window=dt.timedelta(seconds=30),
        key_id="tamiyo-2025-10",
    )


def _run_examples() -> list[Event]:
    manifest = ev.DreamManifest(
        code_hash=_h("code"),
        regimes_sha256=_h("regimes.yaml"),
        caps_sha256=_h("caps.yaml"),
        rng_seed=1337,
    )
    return [
        ev.RunStarted(
            subsystem=ev.Subsystem.DREAM,
            config={"domain": "cpu", "trials_per_regime": 10, "regimes": ["idle", "stress"]},
            code_version="r317",
            host="kloros",
            manifest=manifest,
        ),
        ev.Heartbeat(seq=3, progress="generation 0: 7/20 candidates"),
        ev.RunFinished(outcome=ev.RunOutcome.SUCCEEDED, detail="4 generations"),
        ev.RunAbandoned(last_heartbeat_seq=3, silent_for_s=95.5, reaper="reaper@kloros"),
        ev.RunResumed(
            attempt=1,
            resumes_attempt=0,
            checkpoint_id="gen2",
            checkpoint_position=1234,
            checkpoint_sha256=_h("ckpt-gen2"),
        ),
    ]


def _dream_examples() -> list[Event]:
    kpis = ev.TrialKpis(
        perf=1.05,
        p95_ms=42.3,
        watts=125.5,
        temp_peak_c=62.0,
        errors=0,
        oom=None,
        requests=480,
        cpu_s=0.21,
        peak_rss_mb=18.5,
        watts_modelled=12.6,
    )
    sensors = ev.SensorProvenance(
        watts=ev.Provenance.MEASURED,
        temp_peak_c=ev.Provenance.MEASURED,
        watts_modelled=ev.Provenance.MODELLED,
        watts_model="15 W per busy CPU second",
    )
    return [
        ev.TrialRecorded(
            domain="cpu",
            regime=ev.Regime.STRESS,
            cand_id="gen0_ind7",
            generation=0,
            trial=4,
            genome={"governor": "schedutil", "swappiness": 60},
            kpis=kpis,
            sensors=sensors,
            units={"perf": "MiB/s hashed", "p95_ms": "ms", "watts": "W"},
            failure=None,
            output_sha256=_h("trial-output"),
        ),
        ev.BaselineRefreshRequested(
            domain="cpu", regime=None, requested_by="operator", reason="new kernel"
        ),
        ev.SafetyCapExceeded(
            domain="gpu",
            regime=ev.Regime.STRESS,
            cand_id="gen1_ind2",
            generation=1,
            trial=8,
            metric=ev.CapMetric.TEMP_PEAK_C,
            sensor="gpu",
            cap=83.0,
            observed=86.5,
        ),
        ev.GenerationCompleted(
            domain="cpu",
            generation=0,
            candidates=20,
            regimes=list(ev.Regime),
            trials_per_regime=10,
            best_cand_id="gen0_ind7",
            packs=["gen0_ind7", "gen0_ind8"],
            best_fitness=0.74,
        ),
        ev.CandidatePromoted(
            command_id="promote-gen0_ind7",
            domain="cpu",
            cand_id="gen0_ind7",
            genome={"threads": 2, "algo": "blake2b"},
            promoted_by="operator",
            evidence=ev.PromotionEvidence(
                score_formula="score_v2.normalised.v1",
                difference=0.12,
                ci95=[0.05, 0.19],
                trials=10,
                tolerance=0.01,
                baseline_ids=["bl-cpu-idle-12"],
            ),
            security=_security("9a1b2c3d"),
        ),
    ]


def _toolgen_examples() -> list[Event]:
    common: dict[str, Any] = {
        "spec_id": "text_deduplicate",
        "impl_style": ev.ImplStyle.TRIE,
        "epoch": 10,
    }
    return [
        ev.ToolSynthesized(
            tool_id="td-e10-trie",
            anneal_temp=1.2,
            code_sha256=_h("tool.py"),
            budgets=ev.Budgets(timeout_ms=1750.0, memory_mb=112.0),
            sbom_sha256=_h("SBOM.json"),
            **common,
        ),
        ev.GenerationPlanned(
            epoch=10,
            spec_id="text_deduplicate",
            members=[
                ev.Member(
                    tool_id="td-e10-trie",
                    genome=ev.Genome(
                        impl_style=ev.ImplStyle.TRIE, anneal_gene=1.2, mutations=["drop_last@1"]
                    ),
                    parent_tool_id="td-e9-set",
                )
            ],
            parents=["td-e9-set", "td-e8-lsh"],
        ),
        ev.ToolEvaluated(
            tool_id="td-e10-trie",
            correctness=1.0,
            median_ms=0.32,
            budget_ms=1750.0,
            performance=0.75,
            reference_ms=0.25,
            peak_kib=434.9,
            stability=0.5,
            diversity_bonus=0.024,
            fitness=0.87,
            components=ev.FitnessComponents(
                correctness=1.0,
                safety=1.0,
                performance=1.0,
                robustness=0.5,
                documentation=0.8,
            ),
            **common,
        ),
        ev.HandoffRequested(
            handoff_id="handoff_1761602235",
            tool_id="td-e10-trie",
            spec_path="toolgen/specs/text_deduplicate.json",
            bundle_dir="bundles/text_deduplicate",
            bundle_sha256=_h("bundle"),
            epoch=10,
            impl_style=ev.ImplStyle.TRIE,
            reason="toolgen_incorrect",
            metrics=ev.HandoffMetrics(correctness=0.0, fitness=0.6),
            report_sha256=_h("report"),
        ),
        ev.RepairAttempted(
            handoff_id="handoff_1761602235", attempt=1, agent="agent_baseline", timeout_s=180.0
        ),
        ev.RepairSucceeded(
            handoff_id="handoff_1761602235",
            attempt=1,
            repaired_code_sha256=_h("fixed"),
            duration_s=41.2,
        ),
        ev.RepairFailed(
            handoff_id="handoff_1761602235",
            attempt=2,
            failure=ev.RepairFailure.TIMEOUT,
            exit_code=None,
            duration_s=180.0,
            detail="no output for 180 s",
        ),
        ev.ChallengerEntered(
            tool_id="td-e10-trie-r1",
            lineage=ev.Lineage.REPAIRLAB_FIXED,
            parent_tool_id="td-e10-trie",
            handoff_id="handoff_1761602235",
            code_sha256=_h("fixed"),
            **common,
        ),
    ]


def _esper_command_examples() -> list[Event]:
    command = ev.AdaptationCommand(
        command_id="cmd-000042",
        target_slot="r0c1",
        target_seed_id=None,
        blueprint_id="conv_light",
        operation=ev.LifecycleOp.GERMINATE,
        heads=ev.ActionHeads(
            blueprint="conv_light",
            style=ev.BlendStyle.LINEAR,
            tempo=ev.Tempo.STANDARD,
            alpha_target=0.7,
            alpha_speed=ev.AlphaSpeed.MEDIUM,
            alpha_curve=ev.AlphaCurve.COSINE,
        ),
        metadata=ev.DecisionMetadata(
            policy_version="tamiyo-v12",
            risk=0.18,
            blend=ev.BlendStyle.LINEAR,
            coverage=0.93,
            reason="plateau on r0",
        ),
        security=_security("3f9c2a7e"),
    )
    return [
        command,
        ev.CommandAccepted(
            command_type=command.TYPE,
            command_id="cmd-000042",
            command_digest=_h("cmd-000042"),
            key_id="tamiyo-2025-10",
            nonce="3f9c2a7e",
        ),
        ev.CommandRejected(
            command_type=command.TYPE,
            command_id="cmd-000043",
            reason=ev.RejectReason.REPLAYED_NONCE,
            command_digest=_h("cmd-000043"),
            key_id="tamiyo-2025-10",
            nonce="3f9c2a7e",
            detail="nonce seen 12 s ago",
        ),
        KeyRegistered(
            key_id="tamiyo-2025-10",
            algorithm=KeyAlgorithm.ED25519,
            public_key=_h("tamiyo-2025-10 public"),
            fingerprint="sha256:" + _h(_h("tamiyo-2025-10 public")),
            registered_by="lab",
        ),
    ]


def _esper_seed_examples() -> list[Event]:
    seed: dict[str, Any] = {"slot": "r0c1", "seed_id": "seed-7"}
    return [
        ev.SeedGerminated(
            blueprint_id="conv_light",
            kernel_sha256=_h("kernel"),
            command_id="cmd-000042",
            epoch=12,
            **seed,
        ),
        ev.SeedStageChanged(
            from_stage=ev.SeedStage.TRAINING,
            to_stage=ev.SeedStage.BLENDING,
            alpha=0.0,
            epoch=15,
            command_id=None,
            **seed,
        ),
        ev.SeedGateEvaluated(
            gate="G2",
            stage=ev.SeedStage.BLENDING,
            passed=True,
            metrics={"isolation_violations": 0.0, "loss_improvement": 0.012},
            epoch=18,
            **seed,
        ),
        ev.SeedFossilized(final_alpha=1.0, epoch=30, command_id="cmd-000051", **seed),
        ev.SeedPruned(
            stage=ev.SeedStage.TRAINING,
            reason="no improvement after 8 epochs",
            epoch=20,
            command_id="cmd-000047",
            **seed,
        ),
    ]


def _esper_state_examples() -> list[Event]:
    return [
        ev.FieldReport(
            command_id="cmd-000042",
            outcome=ev.FieldOutcome.SUCCESS,
            delta=ev.FieldReportDelta(
                loss_delta=-0.041,
                accuracy_delta=0.013,
                latency_ms=3.2,
                observation_window_epochs=3,
            ),
            extra_metrics={"seed_share": 0.21},
        ),
        ev.SystemStateReported(
            metrics=ev.TrainingMetrics(
                epoch=12,
                step=4680,
                loss=0.734,
                accuracy=0.7421,
                grad_norm=1.92,
                learning_rate=0.001,
                throughput_samples_per_s=None,
            ),
            seed_stages={"r0c0": ev.SeedStage.DORMANT, "r0c1": ev.SeedStage.GERMINATED},
        ),
        ev.TelemetryPacket(
            source="kasmina",
            priority=ev.TelemetryPriority.CRITICAL,
            health=ev.SystemHealth(status=ev.HealthStatus.DEGRADED, indicators={"seeds": "3"}),
            metrics=[ev.TelemetryMetric(name="kasmina.prefetch.latency_ms", value=40.1, unit="ms")],
            events=[
                ev.TelemetryEvent(
                    description="command_rejected",
                    level=ev.EventLevel.CRITICAL,
                    attributes={"reason": "replayed_nonce"},
                )
            ],
        ),
        ev.KernelRegistered(
            blueprint_id="conv_light",
            artifact_sha256=_h("kernel"),
            input_shape=[32, 64, 8, 8],
            output_shape=[32, 64, 8, 8],
            dtype="float32",
            devices=["cpu", "cuda"],
            min_memory_mb=12.5,
        ),
        ev.RollbackPerformed(
            checkpoint_id="epoch-11",
            epoch=12,
            reason="loss spike",
            restore_latency_ms=12.0,
            deadline_exceeded=False,
            command_id="cmd-000042",
        ),
        ev.PolicyUpdated(
            policy_version="tamiyo-v13",
            previous_version="tamiyo-v12",
            checkpoint_sha256=_h("tamiyo-v13"),
            transitions=2048,
            metrics=ev.PolicyUpdateMetrics(
                policy_loss=-0.012,
                value_loss=0.31,
                entropy=1.42,
                approx_kl=0.008,
                clip_fraction=0.11,
                explained_variance=0.64,
            ),
            hyperparameters={"lr": 0.0003, "clip": 0.2, "epochs": 4},
        ),
        ev.EpisodeEnded(
            episode=7,
            steps=25,
            final_accuracy=0.8123,
            episode_reward=3.75,
            success=True,
            truncated=False,
        ),
    ]


def _esper_learning_examples() -> list[Event]:
    """Safety in the loop and the recorded evaluation (issue #16)."""
    from labledger.events import esper as e

    ci = e.PolicyScoreCI
    trigger = e.SafetyTrigger.RISK
    return [
        e.ConservativeModeEntered(
            trigger=trigger,
            epoch=3,
            until_epoch=5,
            detail="risk 0.999999 > threshold 0.9",
            command_id="run-a0-e3",
        ),
        e.GrowthRefused(
            command_id="run-a0-e3",
            slot="r0",
            trigger=trigger,
            epoch=3,
            detail="conservative mode until epoch 5",
        ),
        e.EmergencyHalt(epoch=4, reason="2 divergence rollbacks in a row", rollbacks_in_a_row=2),
        e.EvaluationCompleted(
            evaluation_id="eval-0123456789abcdef",
            task="spirals",
            seeds=[100, 101],
            epochs=12,
            reward_version=2,
            bootstrap_seed=0,
            bootstrap_resamples=4000,
            policies=[
                e.PolicyEvaluation(
                    policy="noop",
                    runs=2,
                    final_accuracy=ci(mean=0.72, ci_low=0.70, ci_high=0.74),
                    params_added=ci(mean=0.0, ci_low=0.0, ci_high=0.0),
                    reward=ci(mean=0.0, ci_low=0.0, ci_high=0.0),
                    metric=ci(mean=0.72, ci_low=0.70, ci_high=0.74),
                    off_policy_estimate=0.0,
                )
            ],
            differences=[
                e.PolicyDifference(
                    policy="learned:" + _h("p"),
                    baseline="noop",
                    mean=0.03,
                    ci_low=0.01,
                    ci_high=0.05,
                    n=2,
                )
            ],
            run_ids={"noop": ["eval-spirals-noop-s100", "eval-spirals-noop-s101"]},
        ),
    ]


def _weatherlight_examples() -> list[Event]:
    from labledger.events.weatherlight import EmergencyKind, EmergencyRouted

    return [
        EmergencyRouted(
            source_position=42,
            source_stream="security-rejections",
            source_type="security.CommandRejected",
            kind=EmergencyKind.COMMAND_REJECTED,
            priority=None,
            reason="replayed_nonce",
            origin="esper.AdaptationCommand",
            detail="nonce n-7 already admitted",
            counters={"total": 3, "reason.command_rejected.replayed_nonce": 1},
        )
    ]


def _track_examples() -> list[Event]:
    points = [
        ev.MetricPoint(step=10, values={"loss": 0.71, "acc": 0.62}),
        ev.MetricPoint(step=20, values={"loss": 0.55}),
    ]
    return [ev.MetricsLogged(points=points)]


def example_events() -> list[Event]:
    """One realistic, deterministic instance of every current event type, by type name.

    A test checks that every current type has one: a new event class adds its
    example here.
    """
    examples = (
        _run_examples()
        + _dream_examples()
        + _toolgen_examples()
        + _esper_command_examples()
        + _esper_seed_examples()
        + _esper_state_examples()
        + _esper_learning_examples()
        + _weatherlight_examples()
        + _track_examples()
    )
    return sorted(examples, key=lambda event: event.TYPE)


def as_writer_of(event: Event) -> contextlib.AbstractContextManager[None]:
    """Where a test appends every example type: the gate's own records (``security.*``)
    are appended as the gate, since nobody else may (issue #18)."""
    if event.SUBSYSTEM == "security":
        return as_gate(GATE_ACTOR)
    return contextlib.nullcontext()
