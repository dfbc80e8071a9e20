"""The D-REAM page: optimisation history, the genome in parallel coordinates, parameter
importance, best candidates with ci95 against the baselines, and the baselines.

The history, genome and importance come from the chosen runs' own
``dream.TrialRecorded`` events, scored exactly as the candidate packs score
them (``score_v2`` from the trial means, −inf when a safety cap was
exceeded), so two runs reusing candidate ids stay apart.

Parameter importance is a deliberately simple estimate, per gene alone: the
share of the variance of ``score_v2`` across the run's scored candidates that
the gene explains — r² of a straight-line fit for a numeric gene, the
correlation ratio η² (between-group over total variance) for a categorical
one. It ignores interactions, and with few candidates it is noisy: ``n`` is
shown beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from labledger.api import _dashboard_charts as charts
from labledger.api import _dashboard_dream_decisions as decisions
from labledger.api import _queries as q
from labledger.api._dashboard_runs import RunParam, choose
from labledger.api._deps import Reader, State
from labledger.api._html import event_link, figures, heading, render, table, text
from labledger.lab.dream import evolve
from labledger.projections import dream_stats as ds
from labledger.projections.base import Tx
from labledger.projections.dream import candidate_pack, current_baselines

router = APIRouter(include_in_schema=False)
SCORE = "score_v2_raw"
"""The seed's raw-unit score: the page ranks a run's candidates without their baseline
(the baseline-normalised score and its CI are in each candidate's pack)."""
_NO_BASELINE: dict[str, Any] = {"tolerance": None, "verdict": None}
BEST_SHOWN = 4
CHARTED = (("perf", "perf (domain unit, higher is better)"), ("p95_ms", "p95 latency (ms)"))


def candidates(trials: list[dict[str, Any]], capped: set[Any]) -> list[dict[str, Any]]:
    """One row per (run, domain, candidate): generation, genome, score, last trial's position."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for t in trials:
        key = (t["run_id"], t["domain"], t["cand_id"])
        row = grouped.setdefault(
            key, {"generation": t["generation"], "genome": t["genome"], "regimes": {}}
        )
        row["position"] = t["position"]
        regime = row["regimes"].setdefault(t["regime"], defaultdict(list))
        for metric in ds.METRICS:
            regime[metric].append(t["kpis"].get(metric))
    out = []
    for (run_id, domain, cand_id), row in grouped.items():
        means = {r: ds.regime_means(k) for r, k in row["regimes"].items()}
        safe = (domain, cand_id) not in capped
        score = evolve.fitness(ds.aggregate(means, _NO_BASELINE, {}, safe=safe)[SCORE])
        out.append(
            {
                "run_id": run_id,
                "domain": domain,
                "cand_id": cand_id,
                "generation": row["generation"],
                "genome": row["genome"],
                "score": score,
                "safe": safe,
                "position": row["position"],
            }
        )
    return out


def history(cands: list[dict[str, Any]]) -> list[tuple[int, float, float, int]]:
    """Per generation: its best score, the best so far, and the best candidate's last trial."""
    best: dict[int, dict[str, Any]] = {}
    for c in cands:
        if c["generation"] not in best or c["score"] > best[c["generation"]]["score"]:
            best[c["generation"]] = c
    rows, so_far = [], -math.inf
    for gen in sorted(best):
        so_far = max(so_far, best[gen]["score"])
        rows.append((gen, best[gen]["score"], so_far, best[gen]["position"]))
    return rows


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def importance(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per gene: the share of the score's variance it explains alone (see the module doc)."""
    scored = [c for c in cands if math.isfinite(c["score"])]
    genes = sorted({g for c in scored for g in c["genome"]})
    out = []
    for gene in genes:
        pairs = [(c["genome"][gene], c["score"]) for c in scored if gene in c["genome"]]
        scores = [s for _, s in pairs]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v, _ in pairs)
        explained, r = None, None
        if len(pairs) >= 3 and _variance(scores) > 0:
            if numeric:
                xs = [float(v) for v, _ in pairs]
                if _variance(xs) > 0:
                    r = _correlation(xs, scores)
                    explained = r * r
            else:
                explained = _eta_squared([str(v) for v, _ in pairs], scores)
        out.append(
            {
                "gene": gene,
                "method": "r² (linear)" if numeric else "η² (by value)",
                "explained": explained,
                "r": r,
                "n": len(pairs),
            }
        )
    return sorted(out, key=lambda g: -(g["explained"] or 0.0))


def _correlation(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))


def _eta_squared(labels: list[str], ys: list[float]) -> float:
    mean = sum(ys) / len(ys)
    groups: dict[str, list[float]] = defaultdict(list)
    for label, y in zip(labels, ys, strict=True):
        groups[label].append(y)
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    return between / sum((y - mean) ** 2 for y in ys)


def best_packs(tx: Tx, cands: list[dict[str, Any]], top: int) -> dict[str, list[Any]]:
    """Per domain, the ``candidate_pack.v2`` of the chosen runs' ``top`` candidates."""
    ranked = sorted(cands, key=lambda c: (-c["score"], c["cand_id"]))
    found: dict[str, list[Any]] = {}
    for c in ranked:
        packs = found.setdefault(c["domain"], [])
        if len(packs) < top and math.isfinite(c["score"]):
            pack = candidate_pack(tx, c["domain"], c["cand_id"])
            if pack is not None:
                packs.append(pack)
    return found


def _best_section(
    best: dict[str, list[Any]], cands: list[dict[str, Any]], lines: list[Any]
) -> list[dict[str, Any]]:
    ours = {(c["domain"], c["cand_id"]): c["position"] for c in cands}
    baselines = {(b["domain"], b["regime"]): b for b in lines if b["baseline_id"]}
    sections: list[dict[str, Any]] = []
    for domain, packs in sorted(best.items()):
        if not packs:
            continue
        regimes = list(dict.fromkeys(r["regime"] for p in packs for r in p["regimes"]))
        figs = []
        for metric, label in CHARTED:
            base = []
            for regime in regimes:
                b = baselines.get((domain, regime))
                value = None if b is None else b.get("kpis", {}).get(metric)
                base.append(None if value is None else (value, b["set_position"]))  # type: ignore[index]
            series = [
                (
                    p["cand_id"].rsplit(".", 1)[-1],
                    _ci_values(p, regimes, metric, ours[(domain, p["cand_id"])]),
                )
                for p in packs
            ]
            title = f"{domain}: {metric} of the best candidates vs baseline"
            figs.append(
                (f"best-{domain}-{metric}", charts.ci_figure(title, regimes, series, label, base))
            )
        sections += [heading(f"Domain {domain}"), figures(*figs)]
    return sections


def _ci_values(pack: dict[str, Any], regimes: list[str], metric: str, position: int) -> list[Any]:
    by_regime = {r["regime"]: r for r in pack["regimes"]}
    means = pack["aggregate"]["means"].get(metric, {})
    values: list[Any] = []
    for regime in regimes:
        ci = by_regime.get(regime, {}).get("ci95", {}).get(metric)
        mean = means.get(regime)
        values.append(None if mean is None or not ci else (mean, ci[0], ci[1], position))
    return values


@router.get("/ui/dream")
def dream_page(state: State, _: Reader, run: RunParam = None) -> HTMLResponse:
    """D-REAM for the chosen runs (default: the latest)."""
    chosen = choose(state, run, "/ui/dream", "dream")
    cands: list[dict[str, Any]] = []
    for r in chosen.runs:
        trials, capped = q.dream_trials(state.store, r)
        cands += candidates(trials, capped)
    histories = [
        (r["run_id"], history([c for c in cands if c["run_id"] == r["run_id"]]))
        for r in chosen.runs
    ]
    genes = sorted({g for c in cands for g in c["genome"]})
    weights = importance(cands)
    with state.read("dream_baselines") as tx:
        lines = current_baselines(tx)
    with state.read("dream_candidates") as tx:
        best = best_packs(tx, cands, BEST_SHOWN)
    sections = [
        heading("Optimisation history"),
        figures(
            ("history", charts.history_figure(histories, SCORE)),
            ("importance", charts.importance_figure(weights, SCORE)),
        ),
        text(
            "Importance: the share of the variance of score_v2 across the scored candidates "
            "that each gene explains alone (r² for numbers, η² for categories); it ignores "
            "interactions and is noisy for small n."
        ),
        table(
            "importance-table",
            ["gene", "variance explained", "r", "method", "candidates (n)"],
            [[g["gene"], g["explained"], g["r"], g["method"], g["n"]] for g in weights],
        ),
        heading("Genome"),
        figures(("genome", charts.parallel_figure(genes, cands, SCORE))),
        *decisions.sections(state, [r["run_id"] for r in chosen.runs]),
        *_best_section(best, cands, lines),
        heading("Candidates"),
        text(
            f"Ranked by {SCORE}: the seed's raw-unit score (perf minus weighted p95 and power "
            "in their own units), which needs no baseline; the history, genome and importance "
            "charts use it too. Decisions above use score_v2, normalised by the baseline.",
            text_id="candidates-score",
        ),
        table(
            "candidates",
            ["run", "domain", "candidate", "generation", SCORE, "safe", "last trial", *genes],
            [
                [
                    c["run_id"],
                    c["domain"],
                    c["cand_id"],
                    c["generation"],
                    charts.finite(c["score"]),
                    c["safe"],
                    event_link(c["position"]),
                    *(c["genome"].get(g) for g in genes),
                ]
                for c in sorted(cands, key=lambda c: -c["score"])
            ],
        ),
        heading("Baselines"),
        table(
            "baselines",
            [
                "domain",
                "regime",
                "baseline",
                "candidate",
                "perf",
                "p95_ms (ms)",
                "trials",
                "set at",
                "refreshes",
            ],
            [
                [
                    b["domain"],
                    b["regime"],
                    b["baseline_id"],
                    b.get("cand_id"),
                    b.get("kpis", {}).get("perf"),
                    b.get("kpis", {}).get("p95_ms"),
                    b.get("trials"),
                    event_link(b.get("set_position")),
                    b["refreshes"],
                ]
                for b in lines
            ],
        ),
    ]
    return render("dream", "D-REAM", sections, head=state.store.head(), selector=chosen.selector)
