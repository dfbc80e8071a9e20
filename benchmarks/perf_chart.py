"""The perf_bench chart: grouped bars of events/s (log scale) and a latency/memory panel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SUBJECTS = ("labledger", "raw", "eventsourcing")
LABELS = {
    "labledger": "labledger",
    "raw": "raw driver (sqlite3 / psycopg)",
    "eventsourcing": "eventsourcing 9.5 (peer)",
}
COLORS = {"labledger": "#1f77b4", "raw": "#7f7f7f", "eventsourcing": "#ff7f0e"}


def _bars(ax: Any, records: Sequence[Any], title: str, ylabel: str, log: bool) -> None:
    width = 0.27
    for k, who in enumerate(SUBJECTS):
        xs, ys = [], []
        for i, r in enumerate(records):
            value = r.median(who)
            if value is not None:
                xs.append(i + (k - 1) * width)
                ys.append(value)
        bars = ax.bar(xs, ys, width, label=LABELS[who], color=COLORS[who])
        ax.bar_label(bars, labels=[_short(y) for y in ys], fontsize=6, rotation=90, padding=2)
    ax.set_xticks(range(len(records)))
    ax.set_xticklabels(
        [f"{r.name}\n{r.backend}" for r in records], fontsize=7, rotation=30, ha="right"
    )
    if log:
        ax.set_yscale("log")
        ax.set_ylim(top=max((r.median(w) or 1) for r in records for w in SUBJECTS) * 40)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.25)


def _short(y: float) -> str:
    if y >= 1e6:
        return f"{y / 1e6:.1f}M"
    if y >= 1e3:
        return f"{y / 1e3:.0f}k"
    return f"{y:.3g}"


def draw(records: Sequence[Any], path: Path, profile: str) -> Path:
    rates = [r for r in records if r.unit == "events/s"]
    latency = [r for r in records if r.unit == "ms"]
    memory = [r for r in records if r.unit == "MB"]
    fig = plt.figure(figsize=(15, 9), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    _bars(
        fig.add_subplot(grid[0, :]),
        rates,
        "Throughput (median of rounds; higher is better)",
        "events per second (log scale)",
        log=True,
    )
    _bars(
        fig.add_subplot(grid[1, 0]),
        latency,
        "Append → subscriber latency p99 at ~1,000 appends/s (lower is better)",
        "milliseconds",
        log=False,
    )
    _bars(
        fig.add_subplot(grid[1, 1]),
        memory,
        "Peak RSS growth during the typed replay",
        "MB",
        log=False,
    )
    fig.axes[0].legend(loc="upper left", ncol=3, fontsize=9)
    fig.suptitle(f"labledger perf_bench ({profile} profile)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
