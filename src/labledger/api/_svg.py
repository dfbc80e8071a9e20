"""Small server-side SVG charts: axes with ticks and units, legends, labels on the page.

No JavaScript and no hovering needed: every chart names its axes with their
units, its series in a legend, and marks (commands, lifecycle events,
baselines) with text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 720, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 36, 48

Point = tuple[float, float]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, value = [], start
    while value <= hi + step * 0.5:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class _Frame:
    """Maps data to pixels and draws the axes, ticks, labels and title."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], x_label: str, y_label: str):
        self.xt = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
        self.yt = nice_ticks(min(ys, default=0.0), max(ys, default=1.0))
        self.x_label, self.y_label = x_label, y_label

    def x(self, v: float) -> float:
        lo, hi = self.xt[0], self.xt[-1]
        return LEFT + (v - lo) / ((hi - lo) or 1) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        lo, hi = self.yt[0], self.yt[-1]
        return H - BOTTOM - (v - lo) / ((hi - lo) or 1) * (H - TOP - BOTTOM)

    def axes(self, title: str, x_ticks: Sequence[tuple[float, str]] | None = None) -> list[str]:
        out = [
            f'<text x="{W / 2 - RIGHT / 2}" y="20" text-anchor="middle" '
            f'font-weight="bold">{escape(title)}</text>'
        ]
        x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, H - BOTTOM
        out.append(f'<path d="M{x0},{y0} V{y1} H{x1}" stroke="#333" fill="none"/>')
        for t in self.yt:
            y = self.y(t)
            out.append(f'<line x1="{x0 - 4}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        for t, label in x_ticks if x_ticks is not None else [(t, _fmt(t)) for t in self.xt]:
            x = self.x(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y1 + 4}" stroke="#333"/>')
            out.append(
                f'<text x="{x:.1f}" y="{y1 + 17}" text-anchor="middle">{escape(label)}</text>'
            )
        out.append(
            f'<text x="{(x0 + x1) / 2}" y="{H - 8}" text-anchor="middle">'
            f"{escape(self.x_label)}</text>"
        )
        out.append(
            f'<text transform="translate(16,{(y0 + y1) / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(self.y_label)}</text>'
        )
        return out


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y, color = TOP + 6 + 18 * i, PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{W - RIGHT + 12}" y="{y - 9}" width="12" height="12" fill="{color}"/>'
        )
        out.append(f'<text x="{W - RIGHT + 30}" y="{y + 1}">{escape(name[:22])}</text>')
    return out


def _svg(body: list[str], css_class: str, title: str) -> str:
    return (
        f'<svg class="chart {css_class}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="11">' + "".join(body) + "</svg>"
    )


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[Point]]],
    x_label: str,
    y_label: str,
    markers: Sequence[tuple[float, str]] = (),
    css_class: str = "line-chart",
) -> str:
    """Lines with points per series; ``markers`` are labelled vertical lines at x."""
    xs = [p[0] for _, pts in series for p in pts] + [m[0] for m in markers]
    ys = [p[1] for _, pts in series for p in pts]
    if not ys:
        return f'<p class="empty">{escape(title)}: no data yet.</p>'
    frame = _Frame(xs, ys, x_label, y_label)
    body = frame.axes(title)
    for i, (x, label) in enumerate(markers):
        px, py = frame.x(x), TOP + 10 + (i % 6) * 12
        body.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{H - BOTTOM}" '
            f'stroke="#999" stroke-dasharray="3,3"/>'
        )
        body.append(f'<text x="{px + 3:.1f}" y="{py}" fill="#555">{escape(label[:28])}</text>')
    for i, (_, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in sorted(pts))
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        body += [
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3" fill="{color}"/>'
            for x, y in pts
        ]
    return _svg(body + _legend([name for name, _ in series]), css_class, title)


def ci_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[tuple[float, float, float] | None]]],
    y_label: str,
    baselines: Sequence[float | None] = (),
    css_class: str = "ci-chart",
) -> str:
    """Per category, each series' mean with its ci95 as an error bar; baselines as
    dashed black ticks labelled ``baseline``. ``series[i][1][c]`` is (mean, lo, hi)."""
    ys = [v for _, vals in series for t in vals if t is not None for v in t]
    ys += [b for b in baselines if b is not None]
    if not ys:
        return f'<p class="empty">{escape(title)}: no data yet.</p>'
    frame = _Frame([0.0, float(len(categories))], ys, "regime", y_label)
    frame.xt = [0.0, float(len(categories))]
    ticks = [(c + 0.5, name) for c, name in enumerate(categories)]
    body = frame.axes(title, ticks)
    width = 1.0 / (len(series) + 1)
    for c, base in enumerate(baselines):
        if base is None:
            continue
        x0, x1, y = frame.x(c + 0.1), frame.x(c + 0.9), frame.y(base)
        body.append(
            f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#000" stroke-width="2" stroke-dasharray="6,3"/>'
        )
        body.append(f'<text x="{x1:.1f}" y="{y - 3:.1f}" text-anchor="end">baseline</text>')
    for i, (_, vals) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        for c, triple in enumerate(vals):
            if triple is None:
                continue
            mean, lo, hi = triple
            x = frame.x(c + width * (i + 1))
            body.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y(lo):.1f}" '
                f'y2="{frame.y(hi):.1f}" stroke="{color}" stroke-width="2"/>'
            )
            for v in (lo, hi):
                body.append(
                    f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{frame.y(v):.1f}" '
                    f'y2="{frame.y(v):.1f}" stroke="{color}"/>'
                )
            body.append(f'<circle cx="{x:.1f}" cy="{frame.y(mean):.1f}" r="4" fill="{color}"/>')
    legend = [name for name, _ in series] + (["(bars: ci95)"] if series else [])
    return _svg(body + _legend(legend), css_class, title)
