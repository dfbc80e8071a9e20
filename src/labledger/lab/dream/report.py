"""Reading D-REAM results back: best candidates per domain, and a plot against the baselines.

Everything comes from the ``dream_candidates`` and ``dream_baselines`` read
models. Candidates are ranked by ``score_v2`` computed from their trial means
alone (:func:`candidate_scores`: the same ``dream_stats`` functions the packs
use, without the bootstrap, so ranking a long history stays cheap — the
runner selects parents with it too); the full ``candidate_pack.v2`` — with its
CIs — is built only for the top ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from labledger.lab.dream import evolve
from labledger.projections import dream_stats as ds
from labledger.projections.base import Tx
from labledger.projections.dream import candidate_pack, current_baselines

PLOTTED = ("perf", "p95_ms", "watts", "temp_peak_c")
UNITS = {"p95_ms": "ms", "watts": "W", "temp_peak_c": "°C"}


def candidate_scores(
    tx: Tx, domain: str | None = None, cand_ids: Sequence[str] | None = None
) -> dict[tuple[str, str], tuple[float, bool]]:
    """Per (domain, candidate): its fitness (``score_v2``, −inf when unsafe or unscored) and safety.

    The same numbers as the packs' ``aggregate.score_v2``, from the trial means
    only (no bootstrap).

    Args:
        tx: a read of ``dream_candidates``.
        domain: only this domain.
        cand_ids: only these candidates.
    """
    trials, caps = tx.table("trials"), tx.table("caps")
    query = sa.select(trials)
    if domain is not None:
        query = query.where(trials.c.domain == domain)
    if cand_ids is not None:
        query = query.where(trials.c.cand_id.in_(list(cand_ids)))
    columns: dict[tuple[str, str], dict[str, dict[str, list[Any]]]] = {}
    for row in tx.query(query.order_by(trials.c.trial)):
        regime = columns.setdefault((row.domain, row.cand_id), {}).setdefault(row.regime, {})
        for m in ds.METRICS:
            regime.setdefault(m, []).append(getattr(row, m))
    capped = {(r.domain, r.cand_id) for r in tx.query(sa.select(caps))}
    found: dict[tuple[str, str], tuple[float, bool]] = {}
    for key, regimes in columns.items():
        means = {r: ds.regime_means(k) for r, k in regimes.items()}
        safe = key not in capped
        found[key] = (evolve.fitness(ds.aggregate(means, {}, safe=safe)["score_v2"]), safe)
    return found


def best_candidates(tx: Tx, domain: str | None = None, top: int = 3) -> dict[str, list[Any]]:
    """Per domain (sorted), the ``candidate_pack.v2`` of its ``top`` candidates, best first.

    Args:
        tx: a read of ``dream_candidates``.
        domain: only this domain.
        top: how many per domain.

    Returns:
        ``{domain: [pack, …]}``; ties in score keep the lower candidate id first.
    """
    result: dict[str, list[Any]] = {}
    by_domain: dict[str, list[tuple[float, str]]] = {}
    for (dom, cand), (score, _) in candidate_scores(tx, domain).items():
        by_domain.setdefault(dom, []).append((score, cand))
    for dom, scored in sorted(by_domain.items()):
        ranked = sorted(scored, key=lambda sc: (-sc[0], sc[1]))[:top]
        result[dom] = [candidate_pack(tx, dom, cand) for _, cand in ranked]
    return result


def baselines_by_regime(tx: Tx, domain: str | None = None) -> dict[tuple[str, str], Any]:
    """``{(domain, regime): baseline line}`` for the regimes that have a baseline."""
    return {
        (b["domain"], b["regime"]): b
        for b in current_baselines(tx, domain)
        if b["baseline_id"] is not None
    }


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else f"{value:.6g}"


def text_lines(best: Mapping[str, Sequence[Any]]) -> list[str]:
    """A readable table: per domain its best candidates with score, safety and improvement."""
    lines = []
    for domain, packs in best.items():
        lines.append(f"{domain}:")
        lines.append(
            f"  {'rank':<5}{'cand_id':<40}{'score_v2':>12}  {'safe':<6}{'improves':<9}genome"
        )
        for rank, pack in enumerate(packs, 1):
            agg = pack["aggregate"]
            improves = agg["improves_over_baseline"]
            genome = " ".join(f"{k}={v}" for k, v in pack["genome"].items())
            lines.append(
                f"  {rank:<5}{pack['cand_id']:<40}{_num(agg['score_v2']):>12}  "
                f"{str(pack['safe']).lower():<6}{_num(improves):<9}{genome}"
            )
    return lines


def _metrics(packs: Sequence[Any]) -> list[str]:
    seen = {m for p in packs for r in p["regimes"] for m in r["kpis"]}
    return [m for m in PLOTTED if m in seen]


def plot(
    best: Mapping[str, Sequence[Any]],
    baselines: Mapping[tuple[str, str], Any],
    perf_units: Mapping[str, str],
    out: Path,
) -> Path:
    """Write a PNG: per domain (row) and KPI (column), mean ± ci95 per regime vs the baseline.

    Only KPIs some candidate measured are drawn; a missing CI (fewer than two
    measured trials) is drawn as a point without a bar.

    Raises:
        ValueError: nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(d, packs, _metrics(packs)) for d, packs in best.items() if packs and _metrics(packs)]
    if not rows:
        raise ValueError("no measured KPIs to plot")
    cols = max(len(ms) for _, _, ms in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(4.6 * cols, 3.6 * len(rows)), squeeze=False)
    for r, (domain, packs, metrics) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(metrics):
                ax.set_visible(False)
                continue
            unit = (
                perf_units.get(domain, "workload units")
                if metrics[c] == "perf"
                else UNITS[metrics[c]]
            )
            _panel(ax, domain, metrics[c], unit, packs, baselines)
    fig.suptitle("D-REAM: best candidates per domain — KPI mean with 95% CI vs the baseline")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _panel(
    ax: Any,
    domain: str,
    metric: str,
    unit: str,
    packs: Sequence[Any],
    baselines: Mapping[tuple[str, str], Any],
) -> None:
    regimes = [r["regime"] for r in packs[0]["regimes"]]
    width = 0.6 / max(1, len(packs))
    for k, pack in enumerate(packs):
        by_regime = {r["regime"]: r for r in pack["regimes"]}
        xs, ys, lo, hi = [], [], [], []
        for i, regime in enumerate(regimes):
            result = by_regime.get(regime)
            values = ds.measured(result["kpis"].get(metric, [])) if result else []
            if not values:
                continue
            mean = ds.mean(values)
            ci = result["ci95"].get(metric) if result else None
            xs.append(i - 0.3 + width * (k + 0.5))
            ys.append(mean)
            lo.append(mean - ci[0] if ci else 0.0)
            hi.append(ci[1] - mean if ci else 0.0)
        label = pack["cand_id"].rsplit(".", 1)[-1] + ("" if pack["safe"] else " (unsafe)")
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=label)
    base_label: str | None = "baseline"
    for i, regime in enumerate(regimes):
        base = baselines.get((domain, regime), {}).get("kpis", {}).get(metric)
        if base is not None and math.isfinite(base):
            ax.hlines(base, i - 0.4, i + 0.4, colors="black", linestyles="--", label=base_label)
            base_label = None
    ax.set_xticks(range(len(regimes)), regimes)
    ax.set_xlabel("regime")
    ax.set_ylabel(f"{metric} ({unit})")
    ax.set_title(f"{domain}: {metric}")
    ax.legend(fontsize="small")
