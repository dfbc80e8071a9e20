"""ToolGen's charts, from the ``toolgen`` read model: median_ms per epoch per spec, and
the Pareto view (fitness against median_ms and peak memory, the non-dominated set marked)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from labledger.projections.toolgen import EpochMedian, ParetoPoint


def plot_epochs(items: list[EpochMedian], out: Path, title: str = "") -> Path:
    """Write a PNG line chart of ``median_ms`` against epoch, one line per spec.

    Args:
        items: the read model's ``median_ms_by_epoch`` rows.
        out: the PNG file to write.
        title: the chart's title (a default names what is shown).

    Returns:
        ``out``.
    """
    import matplotlib  # lazily: plotting is an optional extra

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for item in items:
        series[item.spec_id].append((item.epoch, item.median_ms))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for spec_id in sorted(series):
            points = sorted(series[spec_id])
            ax.plot([e for e, _ in points], [ms for _, ms in points], marker="o", label=spec_id)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("median latency per benchmark run (ms)")
        ax.set_title(title or "ToolGen performance: median of tools' median_ms per epoch")
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(title="spec")
        fig.tight_layout()
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out


def plot_pareto(points: list[ParetoPoint], out: Path, title: str = "") -> Path:
    """Write a PNG of the Pareto view: per spec, fitness against median_ms and against peak
    memory (log scales where the values span a decade); Pareto-set tools filled red,
    dominated ones hollow.

    Args:
        points: the read model's ``pareto`` rows.
        out: the PNG file to write.
        title: the chart's title (a default names what is shown).

    Returns:
        ``out``.
    """
    import matplotlib  # lazily: plotting is an optional extra

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    specs = sorted({p.spec_id for p in points}) or ["(no measured tools)"]
    fig, axes = plt.subplots(len(specs), 2, figsize=(10, 3.6 * len(specs)), dpi=100, squeeze=False)
    try:
        for row, spec_id in enumerate(specs):
            mine = [p for p in points if p.spec_id == spec_id]
            for col, (axis, label) in enumerate(
                (
                    ("median_ms", "median latency per benchmark run (ms)"),
                    ("peak_kib", "peak traced memory (KiB)"),
                )
            ):
                ax = axes[row][col]
                values = [max(getattr(p, axis), 1e-3) for p in mine] or [1.0]
                if max(values) > 10 * min(values):  # log only where it spans a decade
                    ax.set_xscale("log")  # first: setting the scale resets the formatters
                _pareto_axis(ax, mine, axis)
                ax.set_xlabel(label)
                ax.set_ylabel("fitness")
                ax.set_title(spec_id)
                ax.grid(True, alpha=0.3)
        fig.suptitle(title or "ToolGen Pareto view: filled = not dominated (fitness, ms, KiB)")
        fig.tight_layout()
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out


def _pareto_axis(ax: Any, points: list[ParetoPoint], axis: str) -> None:
    # Three objectives: the front seen in two of them is not a line, so it is not joined.
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for front, style in (
        (False, {"facecolors": "none", "edgecolors": "grey", "label": "dominated"}),
        (True, {"color": "tab:red", "label": "Pareto set"}),
    ):
        mine = [p for p in points if p.pareto is front]
        xs = [max(getattr(p, axis), 1e-3) for p in mine]
        ax.scatter(xs, [p.fitness for p in mine], **style)
        if front:
            for p, x in zip(mine, xs, strict=True):
                ax.annotate(p.impl_style, (x, p.fitness), fontsize=7)
    if ax.get_xscale() == "log":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if points:
        ax.legend(fontsize=8)
