"""``dream pack|baselines|promote|run|report``: the D-REAM lab and its read models.

``pack`` and ``baselines`` catch their projection up first, so they show the
log as it is now. ``run`` and ``report`` drive the lab: progress and
per-generation notes go to stderr; stdout gets one JSON line per run (``run``)
or the table of best candidates (``report``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import Any

from labledger import extras
from labledger.cli import output
from labledger.cli._engine import caught_up, engine_for
from labledger.cli._input import positive
from labledger.cli._progress import ProgressLine
from labledger.errors import UsageError
from labledger.lab.dream import report
from labledger.lab.dream.config import load_regimes
from labledger.lab.dream.measure import unavailable
from labledger.lab.dream.promote import promote
from labledger.lab.dream.runner import RunRequest, RunSummary, resume_run, start_run
from labledger.projections.dream import candidate_domains, candidate_pack, current_baselines
from labledger.projections.dream_promoted import promoted
from labledger.store import EventStore

# -- read models -------------------------------------------------------------------


def cmd_pack(args: argparse.Namespace, store: EventStore) -> int:
    """Print the candidate_pack.v2 of CAND_ID as JSON (exit 2 for an unknown candidate)."""
    engine = caught_up(store, "dream_candidates", progress=False)
    with engine.read("dream_candidates") as tx:
        pack = candidate_pack(
            tx, _only_domain(candidate_domains(tx, args.cand_id), args), args.cand_id
        )
    output.json_document(pack)
    return 0


def cmd_baselines(args: argparse.Namespace, store: EventStore) -> int:
    """Print the current baseline per (domain, regime), one JSON object per line."""
    engine = caught_up(store, "dream_baselines", progress=False)
    with engine.read("dream_baselines") as tx:
        lines = current_baselines(tx, args.domain)
    output.emit(lines, output.chosen(args))
    return 0


def cmd_promote(args: argparse.Namespace, store: EventStore) -> int:
    """Sign and append the promotion of CAND_ID (exit 4 when it is unsafe or not proven better)."""
    engine = caught_up(store, "dream_candidates", progress=False)
    with engine.read("dream_candidates") as tx:
        domain = _only_domain(candidate_domains(tx, args.cand_id), args)
        pack = candidate_pack(tx, domain, args.cand_id)
    assert pack is not None
    by = args.by or getpass.getuser() or "operator"
    command = promote(store, pack, promoted_by=by, reason=args.reason)
    engine = caught_up(store, "dream_promoted", progress=False)
    with engine.read("dream_promoted") as tx:
        lines = promoted(tx, command.domain)
    output.json_lines(lines)
    return 0


def _only_domain(domains: list[str], args: argparse.Namespace) -> str:
    if args.domain is not None:
        domains = [d for d in domains if d == args.domain]
    if not domains:
        where = f" in domain {args.domain!r}" if args.domain else ""
        raise UsageError(f"no candidate {args.cand_id!r}{where}: it has no recorded trials")
    if len(domains) > 1:
        raise UsageError(
            f"candidate {args.cand_id!r} exists in domains {', '.join(domains)}: "
            "choose one with --domain"
        )
    return domains[0]


# -- the lab -----------------------------------------------------------------------


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_summary(summary: RunSummary, elapsed: float) -> None:
    generations = [
        {
            "generation": g.generation,
            "best_cand_id": g.best_cand_id,
            "score_v2": g.best_score,
            "unsafe": g.unsafe,
        }
        for g in summary.generations
    ]
    output.json_line(
        {
            "run_id": summary.run_id,
            "domain": summary.domain,
            "attempt": summary.attempt,
            "trials_measured": summary.trials_measured,
            "trials_in_log": summary.trials_in_log,
            "generations": generations,
            "elapsed_s": round(elapsed, 2),
        }
    )


def _resume(args: argparse.Namespace, store: EventStore) -> int:
    if args.domain:
        raise UsageError("--resume continues a recorded run: drop --domain")
    bar = ProgressLine(f"dream resume {args.resume}", unit="trials")
    started = time.monotonic()
    summary = resume_run(
        store,
        args.resume,
        regimes_path=args.regimes,
        caps_path=args.caps,
        workdir=args.workdir,
        progress=bar,
        notice=_note,
    )
    bar.close()
    _print_summary(summary, time.monotonic() - started)
    return 0


def _run_domain(args: argparse.Namespace, store: EventStore, domain: str) -> None:
    request = RunRequest(
        domain=domain,
        generations=args.generations,
        population=args.population,
        trials=args.trials,
        seed=args.seed,
        budget_ms=args.budget_ms,
        regimes_path=args.regimes,
        caps_path=args.caps,
        refresh_baseline=tuple(args.refresh_baseline or ()),
    )
    bar = ProgressLine(f"dream {domain}", unit="trials")
    started = time.monotonic()
    summary = start_run(store, request, workdir=args.workdir, progress=bar, notice=_note)
    bar.close()
    _print_summary(summary, time.monotonic() - started)


def cmd_run(args: argparse.Namespace, store: EventStore) -> int:
    """Run (or resume) D-REAM for each requested domain; skip unmeasurable ones with a note."""
    if args.resume is not None:
        return _resume(args, store)
    regimes = load_regimes(args.regimes)
    domains = args.domain or ["cpu"]
    if "all" in domains:
        domains = list(regimes.config.domains)
    for domain in dict.fromkeys(domains):
        spec = regimes.config.domains.get(domain)
        reason = None if spec is None else unavailable(spec)
        if reason is not None:
            _note(f"dream run: skipping domain {domain}: {reason}")
            continue
        _run_domain(args, store, domain)
    return 0


def cmd_report(args: argparse.Namespace, store: EventStore) -> int:
    """Print the best candidates per domain and write the KPI plot (``--out``)."""
    engine = engine_for(store)
    for name in ("dream_baselines", "dream_candidates", "dream_promoted"):
        engine.catch_up(name)
    with engine.read("dream_promoted") as tx:
        in_force = promoted(tx, args.domain)
    with engine.read("dream_candidates") as tx:
        run_id = None if args.all_runs else (args.run or report.latest_run(tx, args.domain))
        best = report.best_candidates(tx, args.domain, args.top, run_id=run_id)
    if run_id is not None:
        _note(f"dream report: run {run_id} (--all-runs merges every run)")
    with engine.read("dream_baselines") as tx:
        baselines = report.baselines_by_regime(tx, args.domain)
    if not best:
        _note("dream report: no D-REAM trials in the log yet (run `labledger dream run`)")
        return 0
    fmt = output.chosen(args, json_flag=args.json)
    if fmt != "table":
        output.emit([pack for packs in best.values() for pack in packs], fmt)
    else:
        lines = report.text_lines(best) + report.promoted_lines(in_force)
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    out = args.out
    if out is None and not args.json:
        out = Path("dream-report.png")
        if not extras.installed("plot"):
            _note(
                "dream report: no plot: matplotlib is not installed (pip install 'labledger[plot]')"
            )
            return 0
    if out is None:
        return 0
    return _plot(args, best, baselines, out)


def _plot(
    args: argparse.Namespace,
    best: dict[str, list[Any]],
    baselines: dict[tuple[str, str], Any],
    out: Path,
) -> int:
    extras.require("plot", "dream report --out")
    units = {d: s.perf_unit for d, s in load_regimes(args.regimes).config.domains.items()}
    try:
        out = report.plot(best, baselines, units, out)
    except ValueError as exc:
        _note(f"dream report: no plot: {exc}")
        return 0
    _note(f"dream report: wrote {out}")
    return 0


# -- wiring ------------------------------------------------------------------------


def _add_run(verbs: argparse._SubParsersAction[Any]) -> None:
    p = verbs.add_parser("run", help="tune genomes: real workloads per regime, all to the log")
    p.add_argument(
        "--domain",
        action="append",
        default=None,
        help="domain to tune (repeatable; 'all' = every domain of regimes.yaml; default cpu)",
    )
    p.add_argument("--generations", type=positive, default=2, help="generations (default 2)")
    p.add_argument("--population", type=positive, default=4, help="genomes per generation")
    p.add_argument(
        "--trials",
        type=positive,
        default=None,
        help="trials per regime (default: regimes.yaml policy, 10)",
    )
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, recorded)")
    p.add_argument(
        "--budget-ms",
        type=positive,
        default=None,
        help="base trial duration; each regime scales it (default: policy)",
    )
    p.add_argument("--regimes", type=Path, default=None, help="regimes.yaml (default: shipped)")
    p.add_argument("--caps", type=Path, default=None, help="caps.yaml (default: shipped)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where storage workloads write (default: the temp directory)",
    )
    p.add_argument(
        "--refresh-baseline",
        nargs="?",
        const="",
        action="append",
        metavar="DOMAIN[:REGIME]",
        help="re-measure the baseline (default: the run's domain, every regime); repeatable",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue an interrupted run after its last recorded trial",
    )
    p.set_defaults(store_handler=cmd_run)


def _add_report(verbs: argparse._SubParsersAction[Any]) -> None:
    p = verbs.add_parser("report", help="best candidates per domain, and a KPI plot (PNG)")
    p.add_argument("--domain", default=None, help="only this domain")
    p.add_argument("--top", type=positive, default=3, help="candidates per domain (default 3)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the PNG to write (default: dream-report.png, none with --json); needs [plot]",
    )
    p.add_argument("--regimes", type=Path, default=None, help="regimes.yaml for the perf units")
    p.add_argument("--json", action="store_true", help="same as --format json")
    output.add_format(p)
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--run", metavar="RUN_ID", default=None, help="one run (default: latest)")
    scope.add_argument("--all-runs", action="store_true", help="merge every run's candidates")
    p.set_defaults(store_handler=cmd_report)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``dream pack|baselines|run|report``."""
    dream = sub.add_parser("dream", help="D-REAM read models: candidate packs, baselines")
    verbs = dream.add_subparsers(dest="dream_verb", required=True, parser_class=type(dream))
    p = verbs.add_parser("pack", help="a candidate's candidate_pack.v2 as JSON")
    p.add_argument("cand_id", metavar="CAND_ID", help="the candidate")
    p.add_argument("--domain", default=None, help="needed when the id exists in several domains")
    p.set_defaults(store_handler=cmd_pack)
    p = verbs.add_parser("baselines", help="current baseline per (domain, regime)")
    p.add_argument("--domain", default=None, help="only this domain")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_baselines)
    p = verbs.add_parser(
        "promote", help="make a safe, improved candidate the domain's configuration (signed)"
    )
    p.add_argument("cand_id", metavar="CAND_ID", help="the candidate to promote")
    p.add_argument("--domain", default=None, help="needed when the id exists in several domains")
    p.add_argument("--by", default=None, help="who promotes (default: the login name)")
    p.add_argument("--reason", default="", help="free text recorded with the command")
    p.set_defaults(store_handler=cmd_promote)
    _add_run(verbs)
    _add_report(verbs)
