"""Plotly figures as plain dicts: the page embeds them as JSON, ``dashboard.js`` draws them.

Every point carries ``customdata``: the address of the event behind it, so a
click opens the event browser there. Axes autorange over everything drawn
(error bars included), so no value sits beyond the last tick; a ci95 is the
point's error bar, not a legend entry of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Figure = dict[str, Any]
PointAt = tuple[float, float, int | None]
"""(x, y, position of the event it comes from, None when the read model keeps none)."""

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
CLICK_HINT = "<br>click: event %{customdata}"


def href(position: int) -> str:
    """The event browser's address of the event at ``position``."""
    return f"/ui/events/{position}"


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such values are gaps."""
    return value if value is not None and math.isfinite(value) else None


def _layout(title: str, x_label: str, y_label: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": x_label}, "automargin": True},
        "yaxis": {"title": {"text": y_label}, "automargin": True, "autorange": True},
        "hovermode": "closest",
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "legend": {"orientation": "h", "y": -0.25},
        **extra,
    }


def line_figure(
    title: str,
    series: Sequence[tuple[str, Sequence[PointAt]]],
    x_label: str,
    y_label: str,
    markers: Sequence[tuple[float, str, int]] = (),
) -> Figure | None:
    """Lines with points per series; ``markers`` (x, label, position) are dashed
    vertical lines, each with a clickable label at the top. None without data."""
    if not any(points for _, points in series):
        return None
    data: list[dict[str, Any]] = []
    for i, (name, points) in enumerate(series):
        ordered = sorted(points, key=lambda p: (p[0], p[1]))
        links = [None if p[2] is None else href(p[2]) for p in ordered]
        hint = CLICK_HINT if any(links) else ""
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": [p[0] for p in ordered],
                "y": [finite(p[1]) for p in ordered],
                "customdata": links,
                "hovertemplate": f"{name}: %{{y:.4g}} at %{{x}}{hint}<extra></extra>",
                "line": {"color": PALETTE[i % len(PALETTE)]},
            }
        )
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "line": {"dash": "dot", "color": "#999", "width": 1},
        }
        for x, _, _ in markers
    ]
    if markers:
        data.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": "commands and seed events",
                "x": [m[0] for m in markers],
                "y": [1.0 - 0.06 * (i % 5) for i in range(len(markers))],
                "yaxis": "y2",
                "text": [m[1] for m in markers],
                "textposition": "middle right",
                "marker": {"symbol": "triangle-down", "size": 9, "color": "#555"},
                "customdata": [href(m[2]) for m in markers],
                "hovertemplate": f"%{{text}} at %{{x}}{CLICK_HINT}<extra></extra>",
            }
        )
    overlay = {"overlaying": "y", "range": [0, 1.05], "visible": False, "fixedrange": True}
    return {
        "data": data,
        "layout": _layout(title, x_label, y_label, shapes=shapes, yaxis2=overlay),
    }


def ci_figure(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[tuple[float, float, float, int] | None]]],
    y_label: str,
    baselines: Sequence[tuple[float, int] | None] = (),
) -> Figure | None:
    """Per category, each series' mean with its ci95 as the point's error bar, and the
    baseline as a black dash. ``series[i][1][c]`` is (mean, lo, hi, position)."""
    data: list[dict[str, Any]] = []
    for i, (name, values) in enumerate(series):
        shown = [(c, v) for c, v in zip(categories, values, strict=True) if v is not None]
        if not shown:
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": [c for c, _ in shown],
                "y": [v[0] for _, v in shown],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [v[2] - v[0] for _, v in shown],
                    "arrayminus": [v[0] - v[1] for _, v in shown],
                },
                "customdata": [href(v[3]) for _, v in shown],
                "hovertemplate": (
                    f"{name}: %{{y:.4g}} (ci95 shown as the bar) in %{{x}}{CLICK_HINT}"
                    "<extra></extra>"
                ),
                "marker": {"size": 9, "color": PALETTE[i % len(PALETTE)]},
                "offsetgroup": str(i),
            }
        )
    base = [(c, b) for c, b in zip(categories, baselines, strict=False) if b is not None]
    if base:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "baseline",
                "x": [c for c, _ in base],
                "y": [b[0] for _, b in base],
                "customdata": [href(b[1]) for _, b in base],
                "marker": {"symbol": "line-ew-open", "size": 30, "color": "#000"},
                "hovertemplate": f"baseline: %{{y:.4g}} in %{{x}}{CLICK_HINT}<extra></extra>",
            }
        )
    if not data:
        return None
    layout = _layout(title, "regime", y_label, scattermode="group")
    layout["xaxis"] |= {"categoryorder": "array", "categoryarray": list(categories)}
    return {"data": data, "layout": layout}


def history_figure(
    histories: Sequence[tuple[str, Sequence[tuple[int, float, float, int]]]], score: str
) -> Figure | None:
    """Optimisation history: per run, the best score of each generation (points) and the
    best so far (a step line). Rows are (generation, generation best, best so far, position)."""
    data: list[dict[str, Any]] = []
    for i, (name, rows) in enumerate(histories):
        color = PALETTE[i % len(PALETTE)]
        gens = [r[0] for r in rows]
        links = [href(r[3]) for r in rows]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "line": {"shape": "hv", "color": color, "width": 3},
                "name": f"{name}: best so far",
                "x": gens,
                "y": [finite(r[2]) for r in rows],
                "customdata": links,
                "hovertemplate": f"best so far %{{y:.4g}} at generation %{{x}}{CLICK_HINT}"
                "<extra></extra>",
            }
        )
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "marker": {"color": color, "size": 8, "symbol": "circle-open"},
                "name": f"{name}: best of the generation",
                "x": gens,
                "y": [finite(r[1]) for r in rows],
                "customdata": links,
                "hovertemplate": f"generation best %{{y:.4g}} at %{{x}}{CLICK_HINT}<extra></extra>",
            }
        )
    if not data:
        return None
    layout = _layout("Optimisation history", "generation", score)
    layout["xaxis"]["dtick"] = 1
    return {"data": data, "layout": layout}


def _shade(rank: float) -> str:
    """From grey-blue (worst, 0) to strong orange (best, 1)."""
    lo, hi = (120, 144, 156), (230, 81, 0)
    r, g, b = (round(a + (z - a) * rank) for a, z in zip(lo, hi, strict=True))
    return f"rgb({r},{g},{b})"


def _axis_values(values: list[Any]) -> tuple[list[float], list[str], list[tuple[float, str]]]:
    """Each value placed on [0, 1] along its axis, its label, and the axis' tick labels."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        lo, hi = min(values), max(values)
        ticks = [(0.0, f"{lo:.4g}"), (1.0, f"{hi:.4g}")] if hi > lo else [(0.0, f"{lo:.4g}")]
        return [(v - lo) / ((hi - lo) or 1) for v in values], [f"{v:.4g}" for v in values], ticks
    labels = sorted({str(v) for v in values})
    span = max(1, len(labels) - 1)
    ticks = [(i / span, label) for i, label in enumerate(labels)]
    return [labels.index(str(v)) / span for v in values], [str(v) for v in values], ticks


def parallel_figure(
    genes: Sequence[str], rows: Sequence[dict[str, Any]], score: str
) -> Figure | None:
    """Parallel coordinates over the genome: one line per scored candidate across one axis
    per gene and the score, each axis scaled to its own range (hover shows the value),
    better candidates drawn stronger and on top. Drawn as SVG lines, not plotly's WebGL
    parcoords, so it renders without a GPU and every point links to the candidate's trial."""
    scored = sorted((r for r in rows if finite(r["score"]) is not None), key=lambda r: r["score"])
    if not scored or not genes:
        return None
    axes = [*genes, score]
    columns = [_axis_values([r["genome"].get(g) for r in scored]) for g in genes]
    columns.append(_axis_values([r["score"] for r in scored]))
    data = []
    for i, r in enumerate(scored):
        rank = i / max(1, len(scored) - 1)
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "showlegend": False,
                "name": r["cand_id"],
                "x": axes,
                "y": [col[0][i] for col in columns],
                "text": [col[1][i] for col in columns],
                "customdata": [href(r["position"])] * len(axes),
                "line": {"color": _shade(rank), "width": 1 + 2 * rank},
                "marker": {"size": 5, "color": _shade(rank)},
                "hovertemplate": f"{r['cand_id']}<br>%{{x}} = %{{text}}{CLICK_HINT}<extra></extra>",
            }
        )
    layout = _layout(
        "Genome of every scored candidate (stronger line: higher score)",
        "gene (each axis scaled to its own range)",
        "position on the axis (low → high)",
    )
    layout["yaxis"] |= {"range": [-0.08, 1.08], "autorange": False, "showticklabels": False}
    layout["annotations"] = [
        {
            "x": axis,
            "y": at,
            "text": label,
            "showarrow": False,
            "xanchor": "left",
            "xshift": 4,
            "font": {"size": 10, "color": "#37474f"},
        }
        for axis, col in zip(axes, columns, strict=True)
        for at, label in col[2]
    ]
    return {"data": data, "layout": layout}


def importance_figure(importance: Sequence[dict[str, Any]], score: str) -> Figure | None:
    """Variance of the score explained by each gene alone (bars), with r and n in the hover."""
    shown = [g for g in importance if g["explained"] is not None]
    if not shown:
        return None
    trace = {
        "type": "bar",
        "orientation": "h",
        "name": "variance explained",
        "y": [g["gene"] for g in shown],
        "x": [g["explained"] for g in shown],
        "text": [g["method"] for g in shown],
        "customdata": [g["n"] for g in shown],
        "hovertemplate": "%{y}: %{x:.0%} of the variance of "
        + score
        + " (%{text}, n=%{customdata})<extra></extra>",
        "marker": {"color": PALETTE[0]},
    }
    layout = _layout("Parameter importance", f"share of the variance of {score} explained", "gene")
    layout["xaxis"]["range"] = [0, 1]  # a share: its whole range, so every bar fits
    layout["xaxis"]["tickformat"] = ".0%"
    return {"data": [trace], "layout": layout}
