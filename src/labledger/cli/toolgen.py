"""``toolgen run|leaderboard|rates|epochs|plot``: the ToolGen tournament and its read model.

Each verb catches the ``toolgen`` projection up to the head first, then reads
it. The read verbs show one run: ``--run RUN``, by default the latest one
(``--run all`` for every run). The default output is a readable table;
``--json`` prints JSON lines.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labledger import extras
from labledger.cli import output
from labledger.cli._engine import caught_up
from labledger.cli._input import positive
from labledger.cli._progress import ProgressLine
from labledger.errors import UsageError
from labledger.projections.base import Tx
from labledger.projections.toolgen import (
    DEFAULT_TOP,
    TIE_BREAK,
    EpochMedian,
    Rates,
    Standing,
    ToolgenProjection,
    latest_run,
    leaderboard,
    median_ms_by_epoch,
    pareto,
    rates,
    runs,
)
from labledger.store import AppendResult, EventStore

if TYPE_CHECKING:
    from labledger.lab.toolgen.plan import Trial
    from labledger.lab.toolgen.tournament import TournamentState

_NAME = ToolgenProjection.name
ALL_RUNS = "all"


def _run_scope(tx: Tx, run: str | None) -> str | None:
    """The run a read verb shows: ``--run``, else the latest; ``all`` means every run.

    Raises:
        UsageError: ``--run`` names a run the read model has not seen.
    """
    if run == ALL_RUNS:
        return None
    if run is None:
        return latest_run(tx)
    known = runs(tx)
    if run not in known:
        shown = ", ".join(known[-5:]) or "none yet"
        raise UsageError(f"no toolgen run {run!r} in this ledger (latest runs: {shown})")
    return run


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _lineage(s: Standing) -> str:
    if s.parent_tool_id is None:
        return s.lineage
    attempt = "" if s.repair_attempt is None else f" (repair attempt {s.repair_attempt})"
    return f"{s.lineage} g{s.generation} <- {' <- '.join(reversed(s.chain[:-1]))}{attempt}"


def _print_leaderboard(standings: list[Standing], front: set[str]) -> None:
    header = ["rank", "tool", "fitness", "perf", "median_ms", "ref_ms", "peak_kib", "pos"]
    header += ["pareto", "epoch", "genome", "stability", "lineage"]
    specs = sorted({s.spec_id for s in standings})
    for n, spec in enumerate(specs):
        rows = [
            [
                str(s.rank),
                s.tool_id,
                f"{s.fitness:.4f}",
                f"{s.performance:.3f}",
                _num(s.median_ms),
                _num(s.reference_ms),
                _num(s.peak_kib),
                str(s.position),
                "*" if s.tool_id in front else "",
                str(s.epoch),
                s.genome or s.impl_style,
                f"{s.stability:.2f}",
                _lineage(s),
            ]
            for s in standings
            if s.spec_id == spec
        ]
        print(("\n" if n else "") + f"spec {spec}")
        output.table(header, rows)
    print(f"\nranked by {', then '.join(TIE_BREAK)} (pos: the evaluation's log position)")
    print("pareto *: not dominated in (fitness, median_ms, peak_kib) among the spec's tools")


def _front(tx: Tx, spec: str | None, run_id: str | None) -> set[str]:
    return {p.tool_id for p in pareto(tx, spec, run_id) if p.pareto}


def cmd_leaderboard(args: argparse.Namespace, store: EventStore) -> int:
    """Top-N tools per spec by fitness, with tie-break keys, Pareto flag and lineage."""
    engine = caught_up(store, _NAME, progress=False)
    with engine.read(_NAME) as tx:
        run_id = _run_scope(tx, args.run)
        standings = leaderboard(tx, args.spec, args.top, run_id)
        front = _front(tx, args.spec, run_id)
    fmt = output.chosen(args, json_flag=args.json)
    if fmt != "table":
        output.emit(standings, fmt)
    elif standings:
        print(f"run {run_id or '(all)'}")
        _print_leaderboard(standings, front)
    else:
        print(
            "no evaluated tools" + (f" for spec {args.spec}" if args.spec else ""), file=sys.stderr
        )
    return 0


def _print_rates(items: list[Rates]) -> None:
    header = ["spec", "tools", "handed_off", "handoff_rate", "handoffs", "repaired"]
    header += ["handoff_success", "attempts", "succeeded", "failed", "pending", "repair_success"]
    header += ["attempts/repair", "time_to_repair_s"]
    rows = [
        [
            r.spec_id or "(all)",
            str(r.tools_evaluated),
            str(r.tools_handed_off),
            _num(r.handoff_rate, 3),
            str(r.handoffs),
            str(r.handoffs_repaired),
            _num(r.handoff_success_rate, 3),
            str(r.repair_attempts),
            str(r.repairs_succeeded),
            str(r.repairs_failed),
            str(r.repairs_pending),
            _num(r.repair_success_rate, 3),
            _num(r.attempts_per_repair, 3),
            _num(r.time_to_repair_s, 3),
        ]
        for r in items
    ]
    output.table(header, rows)


def cmd_rates(args: argparse.Namespace, store: EventStore) -> int:
    """Handoff rate, handoff success rate and repair success rate per spec and overall."""
    engine = caught_up(store, _NAME, progress=False)
    with engine.read(_NAME) as tx:
        run_id = _run_scope(tx, args.run)
        items = [
            r for r in rates(tx, run_id) if args.spec is None or r.spec_id in (args.spec, None)
        ]
    fmt = output.chosen(args, json_flag=args.json)
    if fmt != "table":
        output.emit(items, fmt)
    else:
        _print_rates(items)
    return 0


def cmd_epochs(args: argparse.Namespace, store: EventStore) -> int:
    """The median of the evaluated tools' median_ms per spec and epoch."""
    engine = caught_up(store, _NAME, progress=False)
    with engine.read(_NAME) as tx:
        items: list[EpochMedian] = median_ms_by_epoch(tx, args.spec, _run_scope(tx, args.run))
    fmt = output.chosen(args, json_flag=args.json)
    if fmt != "table":
        output.emit(items, fmt)
    elif items:
        rows = [[m.spec_id, str(m.epoch), str(m.tools), _num(m.median_ms)] for m in items]
        output.table(["spec", "epoch", "tools", "median_ms"], rows)
    return 0


def _trial_progress(bar: ProgressLine) -> Callable[[Trial, AppendResult, TournamentState], None]:
    """The ``on_trial`` of a run: the progress line, and each epoch's budgets off a terminal."""
    from labledger.lab.toolgen.budgets import budgets_for

    epochs_seen: set[int] = set()

    def on_trial(trial: Trial, result: AppendResult, state: TournamentState) -> None:
        if trial.epoch not in epochs_seen:
            epochs_seen.add(trial.epoch)
            b = budgets_for(trial.epoch)
            bar.log(  # above the bar on a terminal
                f"epoch {trial.epoch}: {trial.spec_id}, budgets {b.timeout_ms:g} ms / "
                f"{b.memory_mb:g} MB"
            )
        bar(len(state.done), state.config.total_trials())

    return on_trial


def _log(line: str) -> None:
    print(line, file=sys.stderr)


def _print_standings(store: EventStore, run_id: str, top: int) -> None:
    """The run's own results (never another run's)."""
    engine = caught_up(store, _NAME, progress=False)
    with engine.read(_NAME) as tx:
        standings, overall = leaderboard(tx, None, top, run_id), rates(tx, run_id)[-1]
        front = _front(tx, None, run_id)
    _print_leaderboard(standings, front)
    print(
        f"\nrun {run_id}: handoff rate {_num(overall.handoff_rate, 3)} "
        f"({overall.tools_handed_off}/{overall.tools_evaluated} tools), handoff success rate "
        f"{_num(overall.handoff_success_rate, 3)} ({overall.handoffs_repaired}/"
        f"{overall.handoffs}), repair success rate {_num(overall.repair_success_rate, 3)} "
        f"({overall.repairs_succeeded}/{overall.repair_attempts} attempts), attempts per "
        f"repair {_num(overall.attempts_per_repair, 3)}, time to repair "
        f"{_num(overall.time_to_repair_s, 3)} s"
    )


def cmd_run(args: argparse.Namespace, store: EventStore) -> int:
    """Run (or resume) a tournament with RepairLab, show progress, end with the leaderboard."""
    import anyio

    from labledger.lab.toolgen import TournamentConfig, run_toolgen

    run_id = args.resume or args.run_id or f"tg{uuid.uuid4().hex[:10]}"
    config = TournamentConfig(
        epochs=args.epochs,
        specs=tuple(args.specs.split(",")),
        seed=args.seed,
        timed_runs=args.timed_runs,
        curriculum=args.curriculum,
        population=args.population,
    )
    bar = ProgressLine(f"toolgen {run_id}", unit="trials")
    on_trial = _trial_progress(bar)
    print(f"toolgen run {run_id}" + (" (resumed)" if args.resume else ""), file=sys.stderr)
    summary = anyio.run(
        lambda: run_toolgen(
            store, run_id, config, resume=bool(args.resume), on_trial=on_trial, log=_log
        )
    )
    bar.close()
    print(
        f"run {run_id} attempt {summary.attempt}: {summary.trials} trials "
        f"({summary.trials_run} now), {summary.handoffs} handoffs, "
        f"{summary.repaired} repaired now",
        file=sys.stderr,
    )
    _print_standings(store, run_id, args.top)
    return 0


def cmd_plot(args: argparse.Namespace, store: EventStore) -> int:
    """Write a PNG: median_ms per epoch per spec, or the Pareto view (from the read model)."""
    extras.require("plot", "toolgen plot")
    from pathlib import Path

    from labledger.lab.toolgen.plot import plot_epochs, plot_pareto

    engine = caught_up(store, _NAME, progress=False)
    with engine.read(_NAME) as tx:
        run_id = _run_scope(tx, args.run)
        if args.kind == "pareto":
            points = pareto(tx, args.spec, run_id)
            out, count = plot_pareto(points, Path(args.out)), len(points)
        else:
            items = median_ms_by_epoch(tx, args.spec, run_id)
            out, count = plot_epochs(items, Path(args.out)), len(items)
    print(f"wrote {out} ({count} points, run {run_id or '(all)'})", file=sys.stderr)
    return 0


def _add_run_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run",
        default=None,
        metavar="RUN",
        help=f"only this run (default: the latest; '{ALL_RUNS}': every run)",
    )


def _add_run_parsers(verbs: argparse._SubParsersAction[Any]) -> None:
    p = verbs.add_parser("run", help="run a tournament with RepairLab (or --resume one)")
    p.add_argument("--epochs", type=positive, default=3, metavar="E", help="epochs to run")
    p.add_argument(
        "--specs",
        default="text_deduplicate,json_flatten,prefix_search",
        metavar="A,B",
        help="specs, comma-separated, in curriculum order",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the meta-evolution and the tests' hash seeds"
    )
    p.add_argument(
        "--population", type=positive, default=6, metavar="N", help="tools per generation"
    )
    p.add_argument("--timed-runs", type=positive, default=30, metavar="N", help="benchmark runs")
    p.add_argument(
        "--curriculum",
        choices=("seed", "rotate", "all"),
        default="seed",
        help="seed: warm-up blocks then alternate; rotate: alternate; all: every spec",
    )
    p.add_argument("--run-id", default=None, metavar="ID", help="id of a new run")
    p.add_argument("--resume", default=None, metavar="RUN_ID", help="continue this run")
    p.add_argument("--top", type=positive, default=DEFAULT_TOP, metavar="N", help="rows per spec")
    p.set_defaults(store_handler=cmd_run)
    p = verbs.add_parser("plot", help="PNG of median_ms per epoch, or of the Pareto view")
    p.add_argument("--out", required=True, metavar="FILE", help="the PNG to write")
    p.add_argument("--spec", default=None, metavar="SPEC", help="only this spec")
    p.add_argument(
        "--kind",
        choices=("epochs", "pareto"),
        default="epochs",
        help="epochs: median_ms per epoch; pareto: fitness against median_ms and peak memory",
    )
    _add_run_option(p)
    p.set_defaults(store_handler=cmd_plot)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``toolgen run|leaderboard|rates|epochs|plot``."""
    toolgen = sub.add_parser("toolgen", help="ToolGen tournament: run, leaderboard, rates, plot")
    verbs = toolgen.add_subparsers(dest="toolgen_verb", required=True, parser_class=type(toolgen))
    _add_run_parsers(verbs)
    p = verbs.add_parser("leaderboard", help="top-N tools per spec by fitness, with lineage")
    p.add_argument("--spec", default=None, metavar="SPEC", help="only this spec")
    p.add_argument("--top", type=positive, default=DEFAULT_TOP, metavar="N", help="rows per spec")
    p.add_argument("--json", action="store_true", help="same as --format json")
    output.add_format(p)
    _add_run_option(p)
    p.set_defaults(store_handler=cmd_leaderboard)
    p = verbs.add_parser("rates", help="handoff and repair success rates, per spec and overall")
    p.add_argument("--spec", default=None, metavar="SPEC", help="only this spec (and overall)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    output.add_format(p)
    _add_run_option(p)
    p.set_defaults(store_handler=cmd_rates)
    p = verbs.add_parser("epochs", help="median of tools' median_ms per spec and epoch")
    p.add_argument("--spec", default=None, metavar="SPEC", help="only this spec")
    p.add_argument("--json", action="store_true", help="same as --format json")
    output.add_format(p)
    _add_run_option(p)
    p.set_defaults(store_handler=cmd_epochs)
