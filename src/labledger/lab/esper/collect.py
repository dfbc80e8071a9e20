"""``esper collect``: many short episodes of a behaviour policy, recorded like any session.

Each episode is a full Esper session (signed commands, Kasmina's verdicts and
effects, counterfactual field reports) on the ``spirals`` task by default, so
its decisions land in the ``esper_training`` read model as transitions. The
run ids are ``collect-<task>-<policy>-s<seed>``: collecting the same seeds
again skips the episodes already finished, so an interrupted collect is
continued by rerunning it.

The default behaviour policy is ``random`` (it waits explicitly, with a
``WAIT`` command, half of the time), whose action probabilities
:mod:`labledger.lab.esper.actions` can recompute from a recorded state alone —
what the off-policy estimate of ``esper evaluate`` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from labledger.lab.esper._run import ESPER_RUNS
from labledger.lab.esper.session import SessionConfig, resume_session, run_session
from labledger.lab.runs import RunLog
from labledger.store import EventStore

SPIRALS_BLUEPRINTS = ("residual_mlp", "low_rank", "wide_mlp")
EPISODE_EPOCHS = 12
EPISODE_WINDOW = 6
"""Field reports judge a decision 6 epochs later: a germinated seed trains one
epoch alone and blends in over two, so a shorter window sees only its cost."""
EPISODE_BATCH = 32


@dataclass(frozen=True)
class EpisodeSpec:
    """The settings every collected or evaluated episode shares."""

    task: str = "spirals"
    epochs: int = EPISODE_EPOCHS
    window: int = EPISODE_WINDOW
    blueprints: tuple[str, ...] = SPIRALS_BLUEPRINTS
    batch: int = EPISODE_BATCH

    def config(self, seed: int, policy: str) -> SessionConfig:
        """The session of one episode."""
        return SessionConfig(
            epochs=self.epochs,
            seed=seed,
            policy=policy,
            task=self.task,
            window=self.window,
            blueprints=self.blueprints,
            batch=self.batch,
        )

    @property
    def label(self) -> str:
        """The task, plus every setting that differs from the default episode.

        ``spirals`` for the default; ``spirals-e20-b16-w20`` for 20 epochs of
        batch 16 judged over 20 epochs: runs of other settings never share an id.
        """
        parts = [self.task]
        if self.epochs != EPISODE_EPOCHS:
            parts.append(f"e{self.epochs}")
        if self.batch != EPISODE_BATCH:
            parts.append(f"b{self.batch}")
        if self.window != EPISODE_WINDOW:
            parts.append(f"w{self.window}")
        return "-".join(parts)


@dataclass
class Collected:
    """What a collect did."""

    episodes: int = 0
    skipped: int = 0
    commands: int = 0
    run_ids: list[str] = field(default_factory=list)


def run_id(spec: EpisodeSpec, tag: str, policy: str, seed: int) -> str:
    """The deterministic run id of one episode (``:`` of a spec becomes ``-``).

    Episodes of other settings carry them (:attr:`EpisodeSpec.label`: ``-e<epochs>``,
    ``-b<batch>``, ``-w<window>``), so they are never read back as the default's.
    """
    return f"{tag}-{spec.label}-{policy.replace(':', '-')[:40]}-s{seed}"


def state_of(store: EventStore, run: str) -> str:
    """``new``, ``started`` (interrupted: resume it) or ``finished``."""
    log = RunLog.load(store, ESPER_RUNS, run)
    if log.started is None:
        return "new"
    return "started" if log.finished is None else "finished"


def collect(
    store: EventStore,
    seeds: list[int],
    *,
    policy: str = "random",
    spec: EpisodeSpec | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Collected:
    """Run one episode of ``policy`` per seed (skipping finished ones); what was done."""
    spec = spec or EpisodeSpec()
    out = Collected()
    for done, seed in enumerate(seeds):
        rid = run_id(spec, "collect", policy, seed)
        out.run_ids.append(rid)
        state = state_of(store, rid)
        if state == "finished":
            out.skipped += 1
        else:
            summary = (
                run_session(store, spec.config(seed, policy), run_id=rid)
                if state == "new"
                else resume_session(store, rid)
            )
            out.episodes += 1
            out.commands += summary.tally.commands
        if progress is not None:
            progress(done + 1, len(seeds))
    return out
