"""CLI verbs for D-REAM: ``dream pack CAND_ID`` and ``dream baselines``.

``dream run`` and ``dream report`` are added here too, but live in ``_dream_lab_verbs``.

Both catch their projection up first, so they show the log as it is now.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from labledger.cli import _dream_lab_verbs
from labledger.errors import UsageError
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.dream import candidate_domains, candidate_pack, current_baselines
from labledger.store import EventStore

_encode = msgspec.json.Encoder().encode


def _engine(store: EventStore, name: str) -> ProjectionEngine:
    engine = ProjectionEngine(store, [p for p in all_projections() if p.name == name])
    engine.catch_up(name)
    return engine


def cmd_pack(args: argparse.Namespace, store: EventStore) -> int:
    """Print the candidate_pack.v2 of CAND_ID as JSON (exit 2 for an unknown candidate)."""
    engine = _engine(store, "dream_candidates")
    with engine.read("dream_candidates") as tx:
        domains = candidate_domains(tx, args.cand_id)
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
        pack = candidate_pack(tx, domains[0], args.cand_id)
    sys.stdout.buffer.write(msgspec.json.format(_encode(pack), indent=2) + b"\n")
    sys.stdout.flush()
    return 0


def cmd_baselines(args: argparse.Namespace, store: EventStore) -> int:
    """Print the current baseline per (domain, regime), one JSON object per line."""
    engine = _engine(store, "dream_baselines")
    with engine.read("dream_baselines") as tx:
        lines = current_baselines(tx, args.domain)
    out = sys.stdout.buffer
    for line in lines:
        out.write(_encode(line) + b"\n")
    out.flush()
    return 0


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``dream pack`` and ``dream baselines`` to the ``labledger`` parser."""
    dream = sub.add_parser("dream", help="D-REAM read models: candidate packs, baselines")
    verbs = dream.add_subparsers(dest="dream_verb", required=True, parser_class=type(dream))
    p = verbs.add_parser("pack", help="a candidate's candidate_pack.v2 as JSON")
    p.add_argument("cand_id", metavar="CAND_ID")
    p.add_argument("--domain", default=None, help="needed when the id exists in several domains")
    p.set_defaults(store_handler=cmd_pack)
    p = verbs.add_parser("baselines", help="current baseline per (domain, regime), JSON lines")
    p.add_argument("--domain", default=None)
    p.set_defaults(store_handler=cmd_baselines)
    p = verbs.add_parser("run", help="tune genomes: real workloads per regime, all to the log")
    _dream_lab_verbs.add_run_arguments(p)
    p.set_defaults(store_handler=_dream_lab_verbs.cmd_run)
    p = verbs.add_parser("report", help="best candidates per domain, and a KPI plot (PNG)")
    _dream_lab_verbs.add_report_arguments(p)
    p.set_defaults(store_handler=_dream_lab_verbs.cmd_report)
