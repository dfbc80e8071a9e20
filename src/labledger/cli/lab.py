"""`labledger lab`: a short real lab session — the main job behind `make run`.

One small D-REAM generation pair on real CPU workloads, a few ToolGen ⇄
RepairLab epochs, and (when the Esper lab is installed) a short Esper
training run with adaptations; then the read models built from the log:
baselines, a candidate pack summary, the leaderboard, the training set.
Each step is the same CLI verb a person would run, on the same store.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from labledger import extras
from labledger.store import init_store

TABLE = ("--format", "table")
"""The session is for people: its read models print as tables even when piped."""


def _section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def _step(run: Callable[[list[str]], int], db: str, *argv: str, quiet: bool = False) -> str:
    """Run one CLI verb on ``db``; its stdout (echoed unless quiet), or raise on failure."""
    buffer = io.BytesIO()
    out = io.TextIOWrapper(buffer, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(out):  # verbs write text and bytes (stdout.buffer)
        code = run(["--db", db, *argv])
    out.flush()
    text = buffer.getvalue().decode("utf-8")
    if not quiet:
        sys.stdout.write(text)
        sys.stdout.flush()
    if code != 0:
        raise SystemExit(f"labledger lab: `labledger {' '.join(argv)}` failed with exit {code}")
    return text


def cmd_lab(args: argparse.Namespace) -> int:
    from labledger.cli.main import run

    db = args.db
    started = time.monotonic()
    revision = init_store(db)
    print(f"labledger lab session on {db} (schema {revision})", flush=True)
    _section("D-REAM: tuning the cpu domain on real workloads")
    dream = ["--domain", "cpu", "--generations", "2", "--population", "3", "--trials", "2"]
    dream += ["--budget-ms", str(args.budget_ms), "--seed", "7"]
    _step(run, db, "dream", "run", *dream, quiet=True)
    _section("ToolGen ⇄ RepairLab: a short tournament")
    toolgen = ["--epochs", str(args.epochs), "--timed-runs", "5", "--curriculum", "rotate"]
    toolgen += ["--population", "3"]  # a short session: 3 tools per generation
    _step(run, db, "toolgen", "run", *toolgen, "--seed", "7", quiet=True)
    _esper(run, db, args.training_set)
    _section("Baselines (from the dream_baselines read model)")
    _step(run, db, "dream", "baselines", *TABLE)
    _section("Best candidates (from candidate packs)")
    plot = ["--out", args.plot] if extras.installed("plot") else []
    report = _step(run, db, "dream", "report", "--json", *plot, quiet=True)
    _print_best(report)
    _section("Leaderboard (from the toolgen read model)")
    _step(run, db, "toolgen", "leaderboard", "--top", "3", *TABLE)
    _section("Runs")
    _step(run, db, "runs", *TABLE)
    _section("Integrity")
    _step(run, db, "verify", "--signatures")
    print(
        f"\nlab session done in {time.monotonic() - started:.1f}s; the log is {db}. "
        f"Try: labledger --db {db} runs show <RUN_ID>, runs compare <A> <B>, "
        "dream pack <CAND_ID>, audit --list, project status",
        flush=True,
    )
    return 0


def _esper(run: Callable[[list[str]], int], db: str, training_set: str) -> None:
    """A short Esper run, one command's audit trail and the training set (needs [ml])."""
    if not extras.installed("ml"):
        _section("Esper: skipped")
        absent = ", ".join(extras.missing("ml"))
        print(f"Esper needs the 'ml' extra ({absent} not installed): pip install 'labledger[ml]'")
        return
    _section("Esper: morphogenetic training with signed Tamiyo commands")
    summary = json.loads(_step(run, db, "esper", "train", "--epochs", "5", "--seed", "0"))
    command = _first_command(run, db, summary.get("run_id", ""))
    if command:
        _section(f"Audit trail of command {command} (command → verification → effect → report)")
        _step(run, db, "audit", command, "--text")
    _section("Simic training set (from the esper_training read model)")
    _step(run, db, "esper", "training-set", "export", "--out", training_set)


def _first_command(run: Callable[[list[str]], int], db: str, run_id: str) -> str | None:
    rows = _step(run, db, "read", f"esper-commands-{run_id}", "--limit", "1", quiet=True)
    for line in rows.splitlines():
        command_id = json.loads(line).get("data", {}).get("command_id")
        if isinstance(command_id, str):
            return command_id
    return None


def _print_best(report_json: str) -> None:
    """One line per candidate pack: score, safety, improvement, and perf ci95 per regime."""
    for line in report_json.splitlines():
        try:
            pack: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        agg = pack.get("aggregate") or {}
        ci = ", ".join(
            f"{r['regime']} perf ci95 {_interval(r.get('ci95', {}).get('perf'))}"
            for r in pack.get("regimes", [])
        )
        why = (agg.get("improvement") or {}).get("reason")
        print(
            f"{pack.get('cand_id')}: score_v2 {agg.get('score_v2')}, safe {pack.get('safe')}, "
            f"improves_over_baseline {agg.get('improves_over_baseline')}"
            f"{f' ({why})' if why else ''}; {ci}"
        )


def _interval(pair: Any) -> str:
    if not isinstance(pair, list) or len(pair) != 2:
        return "n/a"
    return f"[{pair[0]:.0f}, {pair[1]:.0f}]"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``lab``."""
    p = sub.add_parser("lab", help="run a short real lab session and show its read models")
    p.add_argument("--epochs", type=int, default=3, help="ToolGen epochs (default 3)")
    p.add_argument("--budget-ms", type=int, default=30, help="D-REAM trial budget (default 30)")
    p.add_argument("--plot", default="dream-report.png", help="where the D-REAM plot goes")
    p.add_argument(
        "--training-set",
        default="esper-training.pt",
        help="where the Esper training set export goes",
    )
    p.set_defaults(plain_handler=cmd_lab)
