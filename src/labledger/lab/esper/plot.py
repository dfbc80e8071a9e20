"""The accuracy chart of one Esper run, with its seed events marked, read from the log."""

from __future__ import annotations

from pathlib import Path

from labledger.errors import UsageError
from labledger.events.esper import (
    RollbackPerformed,
    SeedFossilized,
    SeedGerminated,
    SeedPruned,
    SeedStageChanged,
    SystemStateReported,
)
from labledger.events.runs import RunResumed
from labledger.events.typed import typed
from labledger.lab.esper._run import ESPER_RUNS
from labledger.store import EventStore

Marker = tuple[int, str]


def run_series(store: EventStore, run_id: str) -> tuple[dict[int, float], list[Marker]]:
    """Validation accuracy per epoch and ``(epoch, label)`` seed markers of ``run_id``.

    A resumed attempt replays epochs after its checkpoint; for those its
    numbers replace the dead attempt's (the later record of an epoch wins).

    Raises:
        UsageError: no such run.
    """
    accuracy: dict[int, float] = {}
    markers: dict[tuple[int, str], None] = {}
    items = list(typed(store.read_stream(ESPER_RUNS.stream(run_id))))
    if not items:
        raise UsageError(f"no Esper run {run_id!r}: stream {ESPER_RUNS.stream(run_id)!r} is empty")
    for item in items:
        e = item.event
        match e:
            case SystemStateReported():
                accuracy[e.metrics.epoch] = e.metrics.accuracy
            case SeedGerminated():
                markers[(e.epoch, f"germinate {e.slot} {e.blueprint_id}")] = None
            case SeedStageChanged() if e.to_stage.value in ("BLENDING", "HOLDING"):
                markers[(e.epoch, f"{e.slot} {e.to_stage.value.lower()}")] = None
            case SeedFossilized():
                markers[(e.epoch, f"fossilize {e.slot}")] = None
            case SeedPruned():
                markers[(e.epoch, f"prune {e.slot}")] = None
            case RollbackPerformed():
                markers[(e.epoch, "rollback")] = None
            case RunResumed():
                start = int(e.checkpoint_id.removeprefix("epoch-")) + 1
                markers[(start, f"resume (attempt {e.attempt})")] = None
    return dict(sorted(accuracy.items())), list(markers)


def plot_run(store: EventStore, run_id: str, out: Path) -> Path:
    """Write a PNG of accuracy over epochs with the seed events as labelled vertical lines.

    Returns:
        ``out``.

    Raises:
        UsageError: no such run, or no epoch recorded yet.
    """
    accuracy, markers = run_series(store, run_id)
    if not accuracy:
        raise UsageError(f"run {run_id!r} has no epoch recorded yet")
    import matplotlib  # lazily: plotting is an optional extra

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(list(accuracy), list(accuracy.values()), marker="o", label="validation accuracy")
    for i, (epoch, label) in enumerate(markers):
        ax.axvline(epoch, color=f"C{1 + i % 8}", linestyle="--", linewidth=1)
        ax.annotate(
            label,
            (epoch, 0.02 + 0.07 * (i % 6)),
            rotation=0,
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0.0, 1.02), title=f"Esper run {run_id}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def plot_evaluation(points: dict[str, list[tuple[float, float]]], title: str, out: Path) -> Path:
    """Write a PNG of final accuracy against parameters added: one point per run, per policy.

    Args:
        points: policy → [(parameters added, final accuracy)] (one per evaluated run).
    """
    import matplotlib  # lazily: plotting is an optional extra

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (policy, xy) in enumerate(points.items()):
        jitter = [(x + (i - len(points) / 2) * 4, y) for x, y in xy]  # keep equal points apart
        label = policy if len(policy) <= 24 else policy[:24] + "…"
        ax.scatter(
            [x for x, _ in jitter], [y for _, y in jitter], label=label, alpha=0.7, color=f"C{i}"
        )
    ax.set(xlabel="parameters added (seeds kept at the end)", ylabel="final validation accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
