"""The performance chart: median_ms per epoch per spec, from the ``toolgen`` read model."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from labledger.projections.toolgen import EpochMedian


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
