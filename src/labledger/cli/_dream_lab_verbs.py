"""CLI verbs that drive the D-REAM lab: ``dream run`` and ``dream report``.

They hang under the ``dream`` command of ``_dream_verbs`` (argparse cannot
split one sub-command across modules, so that module adds the parsers and
calls :func:`add_run_arguments` / :func:`add_report_arguments` here).
Progress and per-generation notes go to stderr; stdout gets one JSON line per
run (``run``) or the table of best candidates (``report``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

from labledger import extras
from labledger.cli._progress import ProgressLine
from labledger.errors import UsageError
from labledger.lab.dream import report
from labledger.lab.dream.config import load_regimes
from labledger.lab.dream.measure import unavailable
from labledger.lab.dream.runner import RunRequest, RunSummary, resume_run, start_run
from labledger.projections import ProjectionEngine, all_projections
from labledger.store import EventStore

_encode = msgspec.json.Encoder().encode


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 1")
    return int(value)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``dream run``."""
    p.add_argument(
        "--domain",
        action="append",
        default=None,
        help="domain to tune (repeatable; 'all' = every domain of regimes.yaml; default cpu)",
    )
    p.add_argument("--generations", type=_positive, default=2)
    p.add_argument("--population", type=_positive, default=4)
    p.add_argument("--trials", type=_positive, default=None,
                   help="trials per regime (default: regimes.yaml policy, 10)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, recorded)")
    p.add_argument("--budget-ms", type=_positive, default=None,
                   help="base trial duration; each regime scales it (default: policy)")  # fmt: skip
    p.add_argument("--regimes", type=Path, default=None, help="regimes.yaml (default: shipped)")
    p.add_argument("--caps", type=Path, default=None, help="caps.yaml (default: shipped)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where storage workloads write (default: the temp directory)")  # fmt: skip
    p.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="continue an interrupted run after its last recorded trial")  # fmt: skip


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``dream report``."""
    p.add_argument("--domain", default=None)
    p.add_argument("--top", type=_positive, default=3, help="candidates per domain (default 3)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the PNG to write (default: dream-report.png, none with --json); needs [plot]",
    )
    p.add_argument("--regimes", type=Path, default=None, help="regimes.yaml for the perf units")
    p.add_argument("--json", action="store_true", help="print the packs as JSON lines instead")


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_summary(summary: RunSummary, elapsed: float) -> None:
    line = {
        "run_id": summary.run_id, "domain": summary.domain, "attempt": summary.attempt,
        "trials_measured": summary.trials_measured, "trials_in_log": summary.trials_in_log,
        "generations": [
            {"generation": g.generation, "best_cand_id": g.best_cand_id,
             "score_v2": g.best_score, "unsafe": g.unsafe}
            for g in summary.generations
        ],
        "elapsed_s": round(elapsed, 2),
    }  # fmt: skip
    sys.stdout.buffer.write(_encode(line) + b"\n")
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace, store: EventStore) -> int:
    """Run (or resume) D-REAM for each requested domain; skip unmeasurable ones with a note."""
    if args.resume is not None:
        if args.domain:
            raise UsageError("--resume continues a recorded run: drop --domain")
        bar = ProgressLine(f"dream resume {args.resume}", unit="trials")
        started = time.monotonic()
        summary = resume_run(store, args.resume, regimes_path=args.regimes,
                             caps_path=args.caps, workdir=args.workdir,
                             progress=bar, notice=_note)  # fmt: skip
        bar.close()
        _print_summary(summary, time.monotonic() - started)
        return 0
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
        request = RunRequest(domain=domain, generations=args.generations,
                             population=args.population, trials=args.trials, seed=args.seed,
                             budget_ms=args.budget_ms, regimes_path=args.regimes,
                             caps_path=args.caps)  # fmt: skip
        bar = ProgressLine(f"dream {domain}", unit="trials")
        started = time.monotonic()
        summary = start_run(store, request, workdir=args.workdir, progress=bar, notice=_note)
        bar.close()
        _print_summary(summary, time.monotonic() - started)
    return 0


def cmd_report(args: argparse.Namespace, store: EventStore) -> int:
    """Print the best candidates per domain and write the KPI plot (``--out``)."""
    wanted = {"dream_candidates", "dream_baselines"}
    engine = ProjectionEngine(store, [p for p in all_projections() if p.name in wanted])
    for name in sorted(wanted):
        engine.catch_up(name)
    with engine.read("dream_candidates") as tx:
        best = report.best_candidates(tx, args.domain, args.top)
    with engine.read("dream_baselines") as tx:
        baselines = report.baselines_by_regime(tx, args.domain)
    if not best:
        _note("dream report: no D-REAM trials in the log yet (run `labledger dream run`)")
        return 0
    if args.json:
        for packs in best.values():
            for pack in packs:
                sys.stdout.buffer.write(_encode(pack) + b"\n")
    else:
        sys.stdout.write("\n".join(report.text_lines(best)) + "\n")
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
    extras.require("plot", "dream report --out")
    units = {d: s.perf_unit for d, s in load_regimes(args.regimes).config.domains.items()}
    try:
        out = report.plot(best, baselines, units, out)
    except ValueError as exc:
        _note(f"dream report: no plot: {exc}")
        return 0
    _note(f"dream report: wrote {out}")
    return 0
