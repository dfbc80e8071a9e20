"""``esper collect``, ``esper learn``, ``esper evaluate``: the learning loop of issue #16.

Kept apart from ``cli/esper`` so each module stays small; ``esper`` registers them.
torch is imported only when a verb runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from labledger import extras
from labledger.cli import output
from labledger.cli._engine import caught_up
from labledger.cli._input import positive
from labledger.cli._progress import ProgressLine
from labledger.errors import CorruptionDetected
from labledger.projections.esper_training import EsperTrainingProjection, completed
from labledger.store import EventStore


def seed_list(value: str) -> list[int]:
    """``100-129`` or ``1,5,7`` (or both, comma separated) as a list of seeds.

    Raises:
        argparse.ArgumentTypeError: not such a list (argparse exits 2).
    """
    seeds: list[int] = []
    try:
        for part in value.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first < 0 or last < first or last - first >= 100_000:
                raise ValueError(part)
            seeds += range(first, last + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: seeds look like 100-129 or 1,5,7") from None
    return seeds


def _spec(args: argparse.Namespace) -> Any:
    """The episode settings of ``--epochs/--batch/--window`` (defaults: collect.EpisodeSpec's).

    ``--window end`` judges every decision at the episode's last epoch: a
    germination's reward is then its share of the final accuracy, rent included.
    """
    from labledger.lab.esper import collect

    spec = collect.EpisodeSpec()
    epochs = spec.epochs if args.epochs is None else args.epochs
    window = spec.window if args.window is None else args.window
    window = epochs if window == "end" else int(window)
    return collect.EpisodeSpec(task=args.task, epochs=epochs, batch=args.batch, window=window)


LEARNING_TASKS = ["spirals", "spirals_mix", "spirals_mix_pre"]
"""The tasks the learning verbs (collect, learn, evaluate) accept."""


def _window(value: str) -> str:
    """``end`` or a positive number of epochs (argparse exits 2 otherwise)."""
    if value == "end" or (value.isdigit() and int(value) > 0):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: a positive number of epochs, or 'end'")


def _episode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        default="spirals",
        choices=LEARNING_TASKS,
        help="spirals (default); spirals_mix: easy and hard spirals drawn per seed;"
        " spirals_mix_pre: the same, seed slots before each ReLU",
    )
    p.add_argument(
        "--epochs",
        type=positive,
        default=None,
        help="epochs per episode (default 12; other settings get their own run ids)",
    )
    p.add_argument("--batch", type=positive, default=32, help="SGD batch size (default 32)")
    p.add_argument(
        "--window",
        type=_window,
        default=None,
        help="field-report window in epochs, or 'end': judge at the last epoch (default 6)",
    )


def cmd_collect(args: argparse.Namespace, store: EventStore) -> int:
    """Run many short episodes of a behaviour policy (transitions for Simic)."""
    extras.require("ml", "esper collect")
    from labledger.lab.esper import collect

    bar = ProgressLine("esper collect", unit="episodes")
    done = collect.collect(store, args.seeds, policy=args.policy, spec=_spec(args), progress=bar)
    bar.close()
    output.json_line(
        {
            "episodes": done.episodes,
            "skipped": done.skipped,
            "commands": done.commands,
            "first_run": done.run_ids[0],
            "last_run": done.run_ids[-1],
        }
    )
    return 0


def cmd_learn(args: argparse.Namespace, store: EventStore) -> int:
    """Train the graph Tamiyo by AWR on the training set; store it; record PolicyUpdated."""
    extras.require("ml", "esper learn")
    from labledger.lab.esper import collect, simic_awr

    report = store.verify()
    if not report.ok:
        raise CorruptionDetected(f"the log fails verification ({report.message})")
    name = EsperTrainingProjection.name
    engine = caught_up(store, name, until=report.head)
    with engine.read(name) as tx:
        rows = completed(tx, as_of=report.head)
    if args.task is not None:
        # run ids are collect-<task>[-settings]-…: the dash keeps spirals apart from spirals_mix
        rows = [t for t in rows if t.run_id.startswith(f"collect-{args.task}-")]
    config = simic_awr.AwrConfig(
        steps=args.steps,
        seed=args.seed,
        beta=args.beta,
        clean_window=args.clean_window,
        horizon=args.horizon,
        method=args.method,
        temperature=args.temperature,
        support=args.support,
        iterations=args.iterations,
    )
    bar = ProgressLine(f"esper learn ({args.method})", unit="steps")
    checkpoint, trained = simic_awr.train(rows, collect.SPIRALS_BLUEPRINTS, config, progress=bar)
    bar.close()
    if args.dry_run:
        sha, position = store.put_blob(checkpoint), None
    else:
        sha, position = simic_awr.record(store, checkpoint, trained, config)
    output.json_line(
        {**msgspec.to_builtins(trained), "checkpoint_sha256": sha, "position": position}
    )
    print(f"policy {trained.policy_version}: learned:{sha}", file=sys.stderr)
    return 0


def _estimates(store: EventStore, policies: list[str], epochs: int) -> dict[str, Any]:
    """Off-policy estimates of each policy the recorded transitions can judge (ope module)."""
    from labledger.events.esper import LifecycleOp
    from labledger.lab.esper import actions, baselines, collect, ope, simic_awr, tamiyo_graph

    name = EsperTrainingProjection.name
    engine = caught_up(store, name)
    with engine.read(name) as tx:
        rows = simic_awr.usable(completed(tx), collect.SPIRALS_BLUEPRINTS)

    def wait(_: tamiyo_graph.GraphState) -> actions.Action:
        return actions.Action(LifecycleOp.WAIT, None)

    choosers: dict[str, ope.Chooser] = {"noop": wait}
    for policy in policies:
        if policy.startswith("learned:"):
            graph = tamiyo_graph.load_policy(store, policy.removeprefix("learned:"))
            choosers[policy] = graph.action
    # a once-behaviour log supports the per-episode estimate (the target's own states)
    once = bool(rows) and all(baselines.once_last_epoch(t.policy_version) for t in rows)
    out: dict[str, Any] = {}
    for policy in policies:
        if policy in choosers and once:
            out[policy] = ope.episode_wis(rows, choosers[policy], collect.SPIRALS_BLUEPRINTS)
        elif policy in choosers:
            out[policy] = ope.wis(rows, choosers[policy], collect.SPIRALS_BLUEPRINTS, epochs)
    return out


def cmd_evaluate(args: argparse.Namespace, store: EventStore) -> int:
    """Run policies on held-out seeds; print the table; plot; record EvaluationCompleted."""
    extras.require("ml", "esper evaluate")
    from labledger.lab.esper import evaluate

    spec = _spec(args)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    bar = ProgressLine("esper evaluate", unit="episodes")
    scores = evaluate.run_all(store, policies, args.seeds, spec=spec, tag=args.tag, progress=bar)
    bar.close()
    found = _estimates(store, policies, spec.epochs)
    estimates = {p: e.per_episode for p, e in found.items() if e is not None}
    event = evaluate.completed_event(
        scores,
        args.seeds,
        spec,
        bootstrap_seed=args.bootstrap_seed,
        resamples=args.resamples,
        estimates=estimates,
    )
    _print_evaluation(event, found)
    if args.plot:
        extras.require("plot", "esper evaluate --plot")
        from labledger.lab.esper.plot import plot_evaluation

        points = {
            p: [(float(r.params_added), r.final_accuracy) for r in rs] for p, rs in scores.items()
        }
        title = f"{spec.task}: {len(args.seeds)} held-out seeds ({args.seeds[0]}…{args.seeds[-1]})"
        print(
            f"esper evaluate: wrote {plot_evaluation(points, title, Path(args.plot))}",
            file=sys.stderr,
        )
    position = evaluate.record(store, event)
    output.json_line({"evaluation_id": event.evaluation_id, "position": position})
    return 0


def _ci(c: Any) -> str:
    return f"{c.mean:.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}]"


def _print_evaluation(event: Any, found: dict[str, Any]) -> None:
    header = ["policy", "n", "final accuracy", "params added", "reward", "OPE reward", "metric"]
    rows = []
    for p in event.policies:
        est = found.get(p.policy)
        ope_cell = (
            "-"
            if est is None
            else f"{est.per_episode:.4f} (Δ {est.per_episode - p.reward.mean:+.4f}, "
            f"{est.matched} matched)"
        )
        name = p.policy if len(p.policy) <= 20 else p.policy[:20] + "…"
        rows.append(
            [
                name,
                str(p.runs),
                _ci(p.final_accuracy),
                _ci(p.params_added),
                _ci(p.reward),
                ope_cell,
                _ci(p.metric),
            ]
        )
    output.table(header, rows)
    if event.differences:
        print()
        diff_rows = [
            [
                d.policy[:20],
                d.baseline[:20],
                str(d.n),
                f"{d.mean:+.4f}",
                f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]",
                "yes" if d.ci_low > 0 else ("LOSES" if d.ci_high < 0 else "no (CI spans 0)"),
            ]
            for d in event.differences
        ]
        output.table(["policy", "vs", "n", "metric diff", "95% CI", "wins"], diff_rows)


def add_verbs(verbs: argparse._SubParsersAction[Any]) -> None:
    """Add ``collect``, ``learn`` and ``evaluate`` to ``esper``."""
    p = verbs.add_parser("collect", help="many short episodes of a behaviour policy (spirals)")
    # 0-249 overlapped evaluate's held-out 100-129: the default is disjoint from it now
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=seed_list("200-449"),
        help="e.g. 200-449 (keep them apart from the held-out 100-129)",
    )
    p.add_argument(
        "--policy", default="random", help="behaviour policy: random (default) or once[:LAST]"
    )
    _episode_options(p)
    p.set_defaults(store_handler=cmd_collect)
    p = verbs.add_parser("learn", help="train the graph Tamiyo (AWR or fitted Q) from the log")
    p.add_argument("--steps", type=positive, default=400, help="gradient steps (full batch)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--beta", type=float, default=0.02, help="AWR temperature (reward units)")
    p.add_argument(
        "--clean-window",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="drop germinations followed by another within EPOCHS (their reward is mixed)",
    )
    p.add_argument(
        "--method",
        choices=("awr", "q", "fqi"),
        default="awr",
        help="AWR (default), one-step fitted Q, or fitted Q iteration (fqi: values waiting)",
    )
    p.add_argument(
        "--iterations", type=positive, default=8, help="fqi: backups of --steps steps each"
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="q: p = softmax(Q / T), the risk's source"
    )
    p.add_argument(
        "--support",
        default="",
        metavar="once:LAST",
        help="q, fqi: act only where the once behaviour could have (e.g. once:5)",
    )
    p.add_argument(
        "--horizon", type=positive, default=12, help="episode length the policy sees (epochs)"
    )
    p.add_argument(
        "--task",
        default=None,
        choices=LEARNING_TASKS,
        help="learn only from the episodes collected on this task (default: every collect)",
    )
    p.add_argument("--dry-run", action="store_true", help="store the blob, record no event")
    p.set_defaults(store_handler=cmd_learn)
    p = verbs.add_parser("evaluate", help="policies on held-out seeds; table, plot, recorded")
    p.add_argument(
        "--policies",
        default="heuristic,noop,random",
        help="comma separated: heuristic, noop, random, fixed:BLUEPRINT:SLOT, learned:SHA256",
    )
    _episode_options(p)
    p.add_argument("--seeds", type=seed_list, default=seed_list("100-129"), help="held-out seeds")
    p.add_argument("--tag", default="eval", help="run id prefix (finished runs are read back)")
    p.add_argument("--plot", default=None, metavar="FILE", help="PNG: accuracy vs parameters")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap CIs")
    p.add_argument("--resamples", type=positive, default=4000, help="bootstrap resamples")
    p.set_defaults(store_handler=cmd_evaluate)
