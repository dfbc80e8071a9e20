"""CLI verbs that drive the Esper lab: ``esper train`` and ``esper plot``.

They hang under the ``esper`` command of ``_esper_verbs`` (argparse cannot
split one sub-command across modules, so that module calls
:func:`add_parsers` here). torch is imported only when a verb runs. Progress
goes to stderr; stdout gets one JSON line (``train``).

Commands are signed with the key ring the store's gate verifies with
(``LABLEDGER_KEYS`` / the key file); with an empty ring a session key is made
for this process and added to the gate's ring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from labledger import extras
from labledger.cli._progress import ProgressLine
from labledger.store import EventStore

_encode = msgspec.json.Encoder().encode


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 1")
    return int(value)


def cmd_train(args: argparse.Namespace, store: EventStore) -> int:
    """Train a new run (or ``--resume`` one) and print its summary as JSON."""
    extras.require("ml", "esper train")
    from labledger.lab.esper import session

    if args.resume is not None:
        bar = ProgressLine(f"esper resume {args.resume}", unit="epochs")
        summary = session.resume_session(store, args.resume, progress=bar)
    else:
        config = session.SessionConfig(epochs=args.epochs, seed=args.seed, policy=args.policy,
                                       diverge_epoch=args.diverge_at)  # fmt: skip
        bar = ProgressLine("esper train", unit="epochs")
        summary = session.run_session(store, config, run_id=args.run_id, progress=bar)
    bar.close()
    line = {
        "run_id": summary.run_id, "attempt": summary.attempt, "epochs": summary.epochs,
        "final_accuracy": round(summary.final_accuracy, 4),
        "accuracy": [round(a, 4) for _, a in sorted(summary.accuracy.items())],
        "commands": summary.tally.commands, "accepted": summary.tally.accepted,
        "rejected": summary.tally.rejected_by_gate + summary.tally.rejected_by_kasmina,
        "field_reports": summary.tally.reports, "rollbacks": summary.tally.rollbacks,
        "elapsed_s": summary.elapsed_s,
    }  # fmt: skip
    sys.stdout.buffer.write(_encode(line) + b"\n")
    sys.stdout.flush()
    return 0


def cmd_plot(args: argparse.Namespace, store: EventStore) -> int:
    """Write the accuracy-over-epochs PNG of one run."""
    extras.require("plot", "esper plot")
    from labledger.lab.esper.plot import plot_run

    out = plot_run(store, args.run_id, Path(args.out))
    print(f"esper plot: wrote {out}", file=sys.stderr)
    return 0


def add_parsers(verbs: argparse._SubParsersAction[Any]) -> None:
    """Register ``esper train`` and ``esper plot`` under the ``esper`` command."""
    p = verbs.add_parser("train", help="train a host with Tamiyo, Kasmina and Urza (torch, CPU)")
    p.add_argument("--epochs", type=_positive, default=5)
    p.add_argument("--policy", default="heuristic", help="heuristic | ckpt:SHA256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-id", default=None, help="default: <date>-<random>")
    p.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="continue an interrupted run from its last checkpoint")  # fmt: skip
    p.add_argument("--diverge-at", type=int, default=None, metavar="EPOCH",
                   help="fault drill: blow up the host in EPOCH (rollback)")  # fmt: skip
    p.set_defaults(store_handler=cmd_train)
    p = verbs.add_parser("plot", help="PNG of accuracy over epochs with seed events marked")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(store_handler=cmd_plot)
