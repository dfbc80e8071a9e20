"""Reading D-REAM results back: best candidates per domain, and a plot against the baselines.

Everything comes from the ``dream_candidates`` and ``dream_baselines`` read
models. Candidates are ranked by ``score_v2`` computed from their valid trial
means alone against one reference per regime — the domain's current baseline
(:func:`candidate_scores`: the ``dream_score`` formula without the bootstrap,
so ranking a long history stays cheap; the runner selects parents with it
too); the full ``candidate_pack.v2`` — with its CIs and the CI of the score
difference — is built only for the top ones.

Read verbs are scoped to one run: ``run_id`` (default: the latest run with
trials in the domain), or every run when ``all_runs`` is set.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from labledger.lab.dream import evolve
from labledger.projections import dream_score as score
from labledger.projections import dream_stats as ds
from labledger.projections.base import Tx
from labledger.projections.dream import (
    baseline_candidate,
    candidate_pack,
    current_baselines,
    trial_rows,
)

PLOTTED = ("perf", "p95_ms", "watts", "temp_peak_c")
UNITS = {"p95_ms": "ms", "watts": "W", "temp_peak_c": "°C"}


def reference_means(
    tx: Tx, domain: str, regimes: Sequence[str], generation: int, trials: int
) -> dict[str, dict[str, float]]:
    """Per regime, the means of the valid trials of the baseline a generation is scored by.

    The current baseline; for a regime that has none (or a pending refresh),
    the candidate :func:`~labledger.projections.dream.baseline_candidate` is
    about to choose from ``generation``.
    """
    found: dict[str, dict[str, float]] = {}
    current = {b["regime"]: b for b in current_baselines(tx, domain)}
    for regime in regimes:
        line = current.get(regime)
        cand = baseline_candidate(tx, domain, generation, regime, trials)
        if cand is None and line is not None and line["baseline_id"] is not None:
            cand = line["cand_id"]
        if cand is None:
            continue
        rows = [r for r in trial_rows(tx, domain, cand) if r.regime == regime]
        valid = [{m: getattr(r, m) for m in ds.METRICS} for r in rows if r.failure is None]
        if valid:
            found[regime] = score.row_means(valid)
    return found


def candidate_scores(
    tx: Tx,
    domain: str | None = None,
    cand_ids: Sequence[str] | None = None,
    *,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    run_id: str | None = None,
) -> dict[tuple[str, str], tuple[float, bool]]:
    """Per (domain, candidate): its fitness (``score_v2``, −inf when unsafe or unscored) and safety.

    The packs' formula on the valid trial means (no bootstrap).

    Args:
        tx: a read of ``dream_candidates``.
        domain: only this domain.
        cand_ids: only these candidates.
        reference: per regime the means to normalise by; default the domain's
            current baselines (:func:`reference_means`).
        run_id: only this run's candidates.
    """
    trials, caps = tx.table("trials"), tx.table("caps")
    query = sa.select(trials).where(trials.c.failure.is_(None))
    if domain is not None:
        query = query.where(trials.c.domain == domain)
    if cand_ids is not None:
        query = query.where(trials.c.cand_id.in_(list(cand_ids)))
    if run_id is not None:
        query = query.where(trials.c.run_id == run_id)
    columns: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for row in tx.query(query.order_by(trials.c.trial)):
        kpis = {m: getattr(row, m) for m in ds.METRICS}
        columns.setdefault((row.domain, row.cand_id), {}).setdefault(row.regime, []).append(kpis)
    capped = {(r.domain, r.cand_id) for r in tx.query(sa.select(caps))}
    refs: dict[str, Mapping[str, Mapping[str, float]]] = {}
    found: dict[tuple[str, str], tuple[float, bool]] = {}
    for key, regimes in columns.items():
        ref = reference
        if ref is None:
            ref = refs.setdefault(key[0], reference_means(tx, key[0], list(regimes), -1, 1))
        means = {r: score.row_means(rows) for r, rows in regimes.items()}
        compared = [r for r in means if r in ref]
        value = score.normalised_score(
            means, ref, compared, score.score_terms(means, ref, compared)
        )
        safe = key not in capped
        found[key] = (evolve.fitness(value if safe else -math.inf), safe)
    return found


def latest_run(tx: Tx, domain: str | None = None) -> str | None:
    """The run whose most recent trial is the latest in the log (in ``domain``)."""
    trials = tx.table("trials")
    query = sa.select(trials.c.run_id).where(trials.c.run_id.is_not(None))
    if domain is not None:
        query = query.where(trials.c.domain == domain)
    row = tx.conn.execute(query.order_by(trials.c.position.desc()).limit(1)).first()
    return None if row is None else str(row.run_id)


def best_candidates(
    tx: Tx, domain: str | None = None, top: int = 3, run_id: str | None = None
) -> dict[str, list[Any]]:
    """Per domain (sorted), the ``candidate_pack.v2`` of its ``top`` candidates, best first.

    Args:
        tx: a read of ``dream_candidates``.
        domain: only this domain.
        top: how many per domain.
        run_id: only this run's candidates (``None``: every run).

    Returns:
        ``{domain: [pack, …]}``; ties in score keep the lower candidate id first.
    """
    result: dict[str, list[Any]] = {}
    by_domain: dict[str, list[tuple[float, str]]] = {}
    for (dom, cand), (fit, _) in candidate_scores(tx, domain, run_id=run_id).items():
        by_domain.setdefault(dom, []).append((fit, cand))
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
    return value if isinstance(value, str) else f"{value:.4g}"


def _ci(value: Any) -> str:
    return "-" if not value else f"[{value[0]:+.3f}, {value[1]:+.3f}]"


def text_lines(best: Mapping[str, Sequence[Any]]) -> list[str]:
    """A readable table: per domain its best candidates, the score difference's CI and verdict."""
    lines = []
    for domain, packs in best.items():
        lines.append(f"{domain}:")
        lines.append(
            f"  {'rank':<5}{'cand_id':<36}{'score_v2':>9}  {'diff':>7} {'ci95 of diff':<18}"
            f"{'n':>3}  {'safe':<6}{'improves':<13}genome"
        )
        for rank, pack in enumerate(packs, 1):
            agg = pack["aggregate"]
            imp = agg["improvement"]
            genome = " ".join(f"{k}={v}" for k, v in pack["genome"].items())
            lines.append(
                f"  {rank:<5}{pack['cand_id']:<36}{_num(agg['score_v2']):>9}  "
                f"{_num(imp['difference']):>7} {_ci(imp['ci95']):<18}{imp['trials']:>3}  "
                f"{str(pack['safe']).lower():<6}{_num(agg['improves_over_baseline']):<13}{genome}"
            )
        unverified = sorted({c["metric"] for p in packs for c in p.get("caps_unverified", [])})
        if unverified:
            lines.append(f"  caps unverified (no sensor reading): {', '.join(unverified)}")
    return lines


def promoted_lines(in_force: Sequence[Mapping[str, Any]]) -> list[str]:
    """The configuration in force per domain: genome, who, when, the evidence's CI."""
    lines = []
    for p in in_force:
        ev = p["evidence"]
        when = dt.datetime.fromtimestamp(p["promoted_at_us"] / 1e6, tz=dt.UTC)
        genome = " ".join(f"{k}={v}" for k, v in p["genome"].items())
        lines.append(
            f"{p['domain']}: promoted {p['cand_id']} ({genome}) by {p['promoted_by']} "
            f"(key {p['key_id']}) at {when.isoformat(timespec='seconds')}; "
            f"difference {ev['difference']:+.3f}, ci95 {_ci(ev['ci95'])}, n={ev['trials']}"
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
    """Write a PNG: per domain (row) the score difference with its CI, then per KPI (column)
    the mean ± ci95 per regime vs the baseline.

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
    cols = 1 + max(len(ms) for _, _, ms in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(4.6 * cols, 3.6 * len(rows)), squeeze=False)
    for r, (domain, packs, metrics) in enumerate(rows):
        _difference_panel(axes[r][0], domain, packs)
        for c in range(cols - 1):
            ax = axes[r][c + 1]
            if c >= len(metrics):
                ax.set_visible(False)
                continue
            unit = (
                perf_units.get(domain, "workload units")
                if metrics[c] == "perf"
                else UNITS[metrics[c]]
            )
            _panel(ax, domain, metrics[c], unit, packs, baselines)
    fig.suptitle(
        "D-REAM: best candidates per domain — score difference from the baseline, "
        "and KPI means, each with its 95% CI"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _difference_panel(ax: Any, domain: str, packs: Sequence[Any]) -> None:
    """score_v2(candidate) − score_v2(baseline) with its bootstrap CI; the band is ±tolerance."""
    labels, tol = [], score.TOLERANCE
    for k, pack in enumerate(packs):
        imp = pack["aggregate"]["improvement"]
        labels.append(
            f"{pack['cand_id'].rsplit('.', 1)[-1]} ({_num(imp['verdict'])}, n={imp['trials']})"
        )
        tol = imp["tolerance"]
        if imp["difference"] is None:
            continue
        ci = imp["ci95"]
        err = [[imp["difference"] - ci[0]], [ci[1] - imp["difference"]]] if ci else None
        ax.errorbar([imp["difference"]], [k], xerr=err, fmt="o", capsize=3)
    ax.axvspan(-tol, tol, color="grey", alpha=0.3, label=f"±tolerance {tol:g}")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("score_v2 difference (baseline = 0; 1.0 = the baseline's perf)")
    ax.set_title(f"{domain}: improvement over the baseline")
    ax.legend(fontsize="small")


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
