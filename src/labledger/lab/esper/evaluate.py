"""``esper evaluate``: policies on held-out seeds, with CIs, recorded in the log.

The result is an ``esper.EvaluationCompleted`` event.

Each (policy, seed) is one episode of :class:`labledger.lab.esper.collect.EpisodeSpec`
with run id ``<tag>-<task>-<policy>-s<seed>``; an episode already finished in
the log is read back rather than run again. Every number comes from the
log: final accuracy (``esper.EpisodeEnded``), parameters added (kernels of
the seeds alive at the end: germinated and not pruned), and the reward (the
sum of the run's field-report rewards, :func:`~labledger.projections.esper_training.reward`).

**The metric**: ``final accuracy − param_rent(parameters added, host parameters)``
— the reward's own rent applied to what the run kept. (The older "accuracy per
1,000 parameters" rewarded a policy that never acts: issue #16.)

Per policy: mean and seeded bootstrap 95 % CI of each figure; per learned
policy and baseline: the paired (same seed) difference of the metric with its
CI and n. Sessions are deterministic (seeded, single-threaded torch, no clock
in any observation), so running the evaluation again — even under another
tag, into another log — gives the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labledger.events.esper import (
    EpisodeEnded,
    EvaluationCompleted,
    FieldReport,
    KernelRegistered,
    PolicyDifference,
    PolicyEvaluation,
    PolicyScoreCI,
    SeedGerminated,
    SeedPruned,
)
from labledger.events.typed import typed
from labledger.lab.esper import stats, tolaria, urza
from labledger.lab.esper._run import ESPER_RUNS
from labledger.lab.esper.collect import EpisodeSpec, run_id, state_of
from labledger.lab.esper.session import resume_session, run_session
from labledger.projections.esper_training import REWARD_VERSION, param_rent, reward
from labledger.store import EventStore

EVALUATIONS_STREAM = "esper-evaluations"
BASELINES = ("heuristic", "noop", "random")


@dataclass(frozen=True)
class RunScore:
    """One episode's figures."""

    policy: str
    seed: int
    run_id: str
    final_accuracy: float
    params_added: int
    host_params: int
    reward: float

    @property
    def metric(self) -> float:
        """Final accuracy minus the rent of the parameters kept."""
        return self.final_accuracy - param_rent(self.params_added, self.host_params)


def score_run(store: EventStore, spec: EpisodeSpec, policy: str, seed: int, rid: str) -> RunScore:
    """The figures of a finished episode, read from its stream."""
    final, total = 0.0, 0.0
    kernels: dict[str, str] = {}
    alive: dict[str, str] = {}
    for item in typed(store.read_stream(ESPER_RUNS.stream(rid))):
        match item.event:
            case KernelRegistered() as k:
                kernels[k.blueprint_id] = k.artifact_sha256
            case SeedGerminated() as g:
                alive[g.slot] = g.blueprint_id
            case SeedPruned() as p:
                alive.pop(p.slot, None)
            case FieldReport() as r:
                total += reward(r)
            case EpisodeEnded() as e:
                final = e.final_accuracy
    hidden = tolaria.task(spec.task).hidden
    added = sum(_kernel_params(bp, hidden) for bp in alive.values())
    host = tolaria.Host(seed, tolaria.task(spec.task)).host_parameter_count()
    return RunScore(policy, seed, rid, final, added, host, total)


_PARAMS: dict[tuple[str, int], int] = {}


def _kernel_params(blueprint: str, hidden: int) -> int:
    key = (blueprint, hidden)
    if key not in _PARAMS:
        _PARAMS[key] = urza.compile_blueprint(blueprint, hidden, 0)[1]
    return _PARAMS[key]


def run_all(
    store: EventStore,
    policies: Sequence[str],
    seeds: Sequence[int],
    *,
    spec: EpisodeSpec,
    tag: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[RunScore]]:
    """Run (or read back) every (policy, seed) episode; scores per policy, in seed order."""
    out: dict[str, list[RunScore]] = {p: [] for p in policies}
    total, done = len(policies) * len(seeds), 0
    for seed in seeds:
        for policy in policies:
            rid = run_id(spec, tag, policy, seed)
            state = state_of(store, rid)
            if state == "new":
                run_session(store, spec.config(seed, policy), run_id=rid)
            elif state == "started":
                resume_session(store, rid)
            out[policy].append(score_run(store, spec, policy, seed, rid))
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def _ci(values: Sequence[float], seed: int, resamples: int) -> PolicyScoreCI:
    low, high = stats.bootstrap_ci(values, seed=seed, resamples=resamples)
    return PolicyScoreCI(
        mean=round(stats.mean(values), 6), ci_low=round(low, 6), ci_high=round(high, 6)
    )


def summarise(
    scores: dict[str, list[RunScore]],
    *,
    bootstrap_seed: int,
    resamples: int,
    estimates: dict[str, float],
) -> tuple[list[PolicyEvaluation], list[PolicyDifference]]:
    """Per-policy figures with CIs, and paired differences of every learned policy vs each other."""
    evaluations = []
    for policy, runs in scores.items():

        def ci(xs: list[float]) -> PolicyScoreCI:
            return _ci(xs, bootstrap_seed, resamples)

        evaluations.append(
            PolicyEvaluation(
                policy=policy,
                checkpoint_sha256=(
                    policy.split(":", 1)[1] if policy.startswith(("learned:", "ckpt:")) else None
                ),
                runs=len(runs),
                final_accuracy=ci([r.final_accuracy for r in runs]),
                params_added=ci([float(r.params_added) for r in runs]),
                reward=ci([r.reward for r in runs]),
                metric=ci([r.metric for r in runs]),
                off_policy_estimate=(
                    None if policy not in estimates else round(estimates[policy], 6)
                ),
            )
        )
    differences = []
    learned = [p for p in scores if p not in BASELINES]
    for policy in learned:
        for baseline in scores:
            if baseline == policy:
                continue
            diffs = [
                a.metric - b.metric for a, b in zip(scores[policy], scores[baseline], strict=True)
            ]
            low, high = stats.bootstrap_ci(diffs, seed=bootstrap_seed, resamples=resamples)
            differences.append(
                PolicyDifference(
                    policy=policy,
                    baseline=baseline,
                    mean=round(stats.mean(diffs), 6),
                    ci_low=round(low, 6),
                    ci_high=round(high, 6),
                    n=len(diffs),
                )
            )
    return evaluations, differences


def completed_event(
    scores: dict[str, list[RunScore]],
    seeds: Sequence[int],
    spec: EpisodeSpec,
    *,
    bootstrap_seed: int,
    resamples: int,
    estimates: dict[str, float],
) -> EvaluationCompleted:
    """The ``esper.EvaluationCompleted`` of an evaluation (its id: a digest of the figures)."""
    evaluations, differences = summarise(
        scores, bootstrap_seed=bootstrap_seed, resamples=resamples, estimates=estimates
    )
    run_ids = {p: [r.run_id for r in runs] for p, runs in scores.items()}
    digest = hashlib.sha256(repr((evaluations, differences)).encode()).hexdigest()[:16]
    return EvaluationCompleted(
        evaluation_id=f"eval-{digest}",
        task=spec.task,
        seeds=list(seeds),
        epochs=spec.epochs,
        reward_version=REWARD_VERSION,
        bootstrap_seed=bootstrap_seed,
        bootstrap_resamples=resamples,
        policies=evaluations,
        differences=differences,
        run_ids=run_ids,
    )


def record(store: EventStore, event: EvaluationCompleted) -> int:
    """Append the evaluation to :data:`EVALUATIONS_STREAM`; its position."""
    result = store.append(EVALUATIONS_STREAM, [event.to_new_event(actor="esper.evaluate")])
    return result.first_position
