"""The D-REAM page's decisions: each top candidate against its baseline, and what is in force.

For every chosen run and domain, the run's best candidates ranked by
``score_v2`` (the baseline-normalised score, as ``dream report`` ranks them:
:func:`labledger.lab.dream.report.best_candidates`) with their pack's
``aggregate.improvement``: the score difference against the baseline, its
bootstrap 95 % CI, the trials per regime behind it and the verdict. Then the
promoted configuration in force per domain
(:func:`labledger.projections.dream_promoted.promoted`): genome, who promoted
it, when, and the evidence the promotion carried.
"""

from __future__ import annotations

import json
from typing import Any

from labledger.api._html import event_link, heading, table, text, when
from labledger.api._state import ApiState
from labledger.lab.dream.report import best_candidates
from labledger.projections.dream_promoted import promoted

TOP = 4
DECISION_HEADERS = [
    "run",
    "domain",
    "rank",
    "candidate",
    "genome",
    "score_v2",
    "difference vs baseline",
    "CI95 (bootstrap)",
    "trials per regime (n)",
    "verdict",
    "reason",
]
PROMOTED_HEADERS = [
    "domain",
    "candidate",
    "genome",
    "promoted by",
    "key",
    "promoted at (UTC)",
    "event",
    "score formula",
    "difference",
    "CI95",
    "trials (n)",
    "baselines",
    "reason",
]


def _num(value: Any) -> str | None:
    return None if value is None else f"{value:+.3f}"


def _ci(ci: Any) -> str | None:
    return None if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def verdict(value: Any) -> str:
    """``improves_over_baseline`` as a word: true, false, inconclusive (or unknown)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value) if value is not None else "unknown"


def _genome(genome: Any) -> str:
    return json.dumps(genome, sort_keys=True)


def decision_rows(state: ApiState, run_ids: list[str]) -> list[list[Any]]:
    """One row per (run, domain, top candidate): its improvement over the baseline."""
    rows: list[list[Any]] = []
    with state.read("dream_candidates") as tx:
        for run_id in run_ids:
            for domain, packs in best_candidates(tx, top=TOP, run_id=run_id).items():
                for rank, pack in enumerate(p for p in packs if p is not None):
                    agg = pack.get("aggregate", {})
                    imp = agg.get("improvement") or {}
                    rows.append(
                        [
                            run_id,
                            domain,
                            rank + 1,
                            pack["cand_id"],
                            _genome(pack.get("genome")),
                            agg.get("score_v2"),
                            _num(imp.get("difference")),
                            _ci(imp.get("ci95")),
                            imp.get("trials"),
                            verdict(imp.get("verdict", agg.get("improves_over_baseline"))),
                            imp.get("reason"),
                        ]
                    )
    return rows


def promoted_rows(state: ApiState) -> list[list[Any]]:
    """One row per domain: the promoted configuration in force and its evidence."""
    with state.read("dream_promoted") as tx:
        lines = promoted(tx)
    return [
        [
            p["domain"],
            p["cand_id"],
            _genome(p["genome"]),
            p["promoted_by"],
            p["key_id"],
            when(p["promoted_at_us"]),
            event_link(p["position"]),
            p["evidence"].get("score_formula"),
            _num(p["evidence"].get("difference")),
            _ci(p["evidence"].get("ci95")),
            p["evidence"].get("trials"),
            ", ".join(p["evidence"].get("baseline_ids", [])),
            p["reason"],
        ]
        for p in lines
    ]


def sections(state: ApiState, run_ids: list[str]) -> list[dict[str, Any]]:
    """The page's "Decisions" and "Promoted configuration" sections."""
    decisions = decision_rows(state, run_ids)
    in_force = promoted_rows(state)
    return [
        heading("Decisions against the baseline"),
        text(
            "The run's best candidates per domain, ranked by score_v2 (baseline-normalised: "
            "the baseline scores 0.7), with the score difference from the baseline, its "
            "bootstrap 95 % CI over whole trials, and the verdict: true when the CI lies above "
            "the tolerance, false when below it or unsafe, inconclusive otherwise or with too "
            "few trials.",
            text_id="decisions-note",
        ),
        table("decisions", DECISION_HEADERS, decisions),
        heading("Promoted configuration in force"),
        text(
            "Per domain, the last signed dream.CandidatePromoted: the genome in force, who "
            "promoted it and when, and the evidence it was promoted on."
            if in_force
            else "No configuration has been promoted (labledger dream promote CAND_ID).",
            text_id="promoted-note",
        ),
        table("promoted", PROMOTED_HEADERS, in_force),
    ]
