"""The log itself: ``init``, ``append``, ``read``, ``read-all``, ``head``, ``streams``,
``verify`` and ``demo`` (a small sample run, appended, projected and verified).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
from sqlalchemy.engine import make_url

from labledger.cli import output
from labledger.cli._input import MAX_DIGITS, bounded_lines, events_from_lines, nonnegative
from labledger.cli._progress import ProgressLine
from labledger.errors import InvalidEvent, UsageError
from labledger.events.dream import (
    DreamManifest,
    Provenance,
    Regime,
    SensorProvenance,
    TrialKpis,
    TrialRecorded,
)
from labledger.events.runs import Heartbeat, RunFinished, RunOutcome, RunStarted, Subsystem
from labledger.ledger import open_ledger, read_all
from labledger.projections import ProjectionEngine, all_projections
from labledger.security import recheck
from labledger.security.keybook import KeyBook
from labledger.security.keyring import KeyRing
from labledger.store import (
    ANY,
    EXISTS,
    NO_STREAM,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    create_database,
    init_store,
)


def parse_expected(value: str) -> ExpectedVersion:
    named = {"any": ANY, "no-stream": NO_STREAM, "no_stream": NO_STREAM, "exists": EXISTS}
    if value in named:
        return named[value]
    if value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
        return int(value)
    shown = value if len(value) <= 40 else f"{value[:20]}… ({len(value)} characters)"
    raise UsageError(
        f"--expect {shown!r}: use any, no-stream, exists or a version number "
        f"of 0-9 digits, at most {MAX_DIGITS} of them"
    )


def cmd_init(args: argparse.Namespace) -> int:
    if create_database(args.db):
        print(f"created database {make_url(args.db).database!r}", file=sys.stderr)
    revision = init_store(args.db)
    print(f"labledger schema at revision {revision} in {args.db}", file=sys.stderr)
    return 0


def cmd_append(args: argparse.Namespace, store: EventStore) -> int:
    expected = parse_expected(args.expect)
    events = events_from_lines(bounded_lines(sys.stdin.buffer))
    if not events:
        raise InvalidEvent("no events on stdin: one JSON object per line")
    result = store.append(args.stream, events, expected)
    output.json_line(
        {
            "stream": result.stream,
            "first_position": result.first_position,
            "last_position": result.last_position,
            "last_version": result.last_version,
            "already_appended": result.already_appended,
        }
    )
    return 0


def cmd_read(args: argparse.Namespace, store: EventStore) -> int:
    output.records(
        store.read_stream(args.stream, args.from_version, args.limit), output.chosen(args)
    )
    return 0


def cmd_read_all(args: argparse.Namespace, store: EventStore) -> int:
    if args.type or args.run:
        found = read_all(
            store, args.from_position, types=args.type or None, run_id=args.run, limit=args.limit
        )
        output.records(found, output.chosen(args))
        return 0
    output.records(store.read_all(args.from_position, limit=args.limit), output.chosen(args))
    return 0


def cmd_head(args: argparse.Namespace, store: EventStore) -> int:
    print(store.head())
    return 0


def cmd_streams(args: argparse.Namespace, store: EventStore) -> int:
    rows = [
        {"stream": info.stream, "version": info.version, "last_position": info.last_position}
        for info in store.streams(args.prefix)
    ]
    output.emit(rows, output.chosen(args), columns=["stream", "version", "last_position"])
    return 0


def cmd_verify(args: argparse.Namespace, store: EventStore) -> int:
    report = store.verify()
    doc = msgspec.to_builtins(report)
    signatures = _signatures(store) if args.signatures else None
    if signatures is not None:
        doc["signatures"] = msgspec.to_builtins(signatures)
    output.emit([doc], output.chosen(args))
    if not report.ok:
        print(f"integrity failure: {report.message}", file=sys.stderr)
        return 1
    if signatures is not None and not signatures.ok:
        for failure in signatures.failures:
            print(
                f"signature failure at position {failure.position} ({failure.command_type} "
                f"{failure.command_id}, key {failure.key_id}): {failure.status}: {failure.detail}",
                file=sys.stderr,
            )
        for conflict in signatures.key_conflicts:
            print(f"key conflict: {conflict}", file=sys.stderr)
        return 1
    return 0


def _signatures(store: EventStore) -> recheck.SignatureReport:
    """Every command's signature against the keys the log records (no secret needed);
    HMAC commands of older logs are checked where the key ring holds their secret."""
    book = KeyBook()
    book.refresh(store)
    bar, head = ProgressLine("verify --signatures"), store.head()
    report = recheck.report(_counted(store.read_all(), bar, head), book, KeyRing.from_env())
    bar.close()
    return report


def _counted(
    records: Iterator[RecordedEvent], bar: ProgressLine, head: int
) -> Iterator[RecordedEvent]:
    for record in records:
        if record.position % 1000 == 0:
            bar(record.position, head)
        yield record
    bar(head, head)


# -- demo ----------------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _demo_start(run_id: str, blob: str) -> NewEvent:
    return RunStarted(
        subsystem=Subsystem.DREAM,
        config={"domain": "cpu", "population": 2, "trials": 2, "config_sha256": blob},
        code_version="demo",
        host=platform.node() or "localhost",
        manifest=DreamManifest(
            code_hash=_sha("demo"),
            regimes_sha256=_sha("regimes"),
            caps_sha256=_sha("caps"),
            rng_seed=7,
        ),
    ).to_new_event(run_id=run_id, actor="demo")


def _demo_trials(run_id: str, causation_id: str) -> list[NewEvent]:
    rng = random.Random(7)
    return [
        TrialRecorded(
            domain="cpu",
            regime=regime,
            cand_id=f"c{c}",
            generation=0,
            trial=t,
            genome={"threads": 2 + 2 * c, "chunk_kb": 64},
            kpis=TrialKpis(
                perf=100.0 + 7 * c + rng.random(),
                p95_ms=12.5 - c + rng.random(),
                watts=None,
                temp_peak_c=None,
                errors=0,
                oom=0,
            ),
            sensors=SensorProvenance(watts=Provenance.ABSENT, temp_peak_c=Provenance.ABSENT),
            units={"perf": "MiB/s hashed", "p95_ms": "ms"},
        ).to_new_event(run_id=run_id, causation_id=causation_id, actor="demo")
        for c in range(2)
        for regime in (Regime.IDLE, Regime.STRESS)
        for t in range(2)
    ]


def _demo_append(store: EventStore, run_id: str) -> str:
    """The sample run in the log; its config blob's SHA-256."""
    blob = store.put_blob(b'{"domain": "cpu", "generations": 1, "population": 2, "trials": 2}')
    started = _demo_start(run_id, blob)
    stream = f"run-{run_id}"
    store.append(stream, [started], NO_STREAM)
    store.append(f"dream-{run_id}", _demo_trials(run_id, started.id), NO_STREAM)
    ending = [
        Heartbeat(seq=1, progress="2/2 candidates").to_new_event(run_id=run_id),
        RunFinished(outcome=RunOutcome.SUCCEEDED).to_new_event(run_id=run_id),
    ]
    store.append_many([StreamAppend(stream, ending, 0)])
    return blob


def cmd_demo(args: argparse.Namespace) -> int:
    url = args.db
    revision = init_store(url)
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    with open_ledger(url) as store:
        blob = _demo_append(store, run_id)
        engine = ProjectionEngine(store, all_projections())
        engine.run()
        report = store.verify()
        print(f"labledger demo on {url} (schema {revision})")
        print(f"{'stream':<32} {'version':>7} {'last position':>13}")
        for info in store.streams():
            print(f"{info.stream:<32} {info.version:>7} {info.last_position:>13}")
        print(f"head position {store.head()}, config blob {blob[:12]}…")
        with engine.read("runs") as tx:
            row = tx.get("runs", run_id=run_id)
            assert row is not None
            print(
                f"run {run_id}: {row.subsystem}, {row.status} ({row.outcome}), {row.events} events"
            )
        status = "OK" if report.ok else f"FAILED: {report.message}"
        print(
            f"verify: {status} ({report.events_checked} events, head hash {report.head_hash[:16]}…)"
        )
    sys.stdout.flush()
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the log verbs: init, append, read, read-all, head, streams, verify, demo."""
    p = sub.add_parser("init", help="create or upgrade the schema (Alembic upgrade head)")
    p.set_defaults(plain_handler=cmd_init)
    p = sub.add_parser("append", help="append JSON lines from stdin to STREAM")
    p.add_argument("stream", help="the stream appended to")
    p.add_argument("--expect", default="any", help="any | no-stream | exists | N")
    p.set_defaults(store_handler=cmd_append)
    p = sub.add_parser("read", help="events of one stream as JSON lines")
    p.add_argument("stream", help="the stream read")
    p.add_argument("--from-version", type=nonnegative, default=0, help="first version (default 0)")
    p.add_argument("--limit", type=nonnegative, default=None, help="at most this many events")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_read)
    p = sub.add_parser("read-all", help="the whole log as JSON lines")
    p.add_argument(
        "--from-position", type=nonnegative, default=0, help="first position (default 0)"
    )
    p.add_argument("--limit", type=nonnegative, default=None, help="at most this many events")
    p.add_argument(
        "--type", action="append", default=[], metavar="T", help="only this event type (repeat)"
    )
    p.add_argument("--run", default=None, metavar="RUN_ID", help="only events of this run")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_read_all)
    p = sub.add_parser("head", help="the last position")
    p.set_defaults(store_handler=cmd_head)
    p = sub.add_parser("streams", help="streams (with a literal name prefix)")
    p.add_argument("--prefix", default="", help="a literal prefix of the stream names")
    output.add_format(p)
    p.set_defaults(store_handler=cmd_streams)
    p = sub.add_parser("verify", help="full integrity scan; exit 1 on the first bad record")
    p.add_argument(
        "--signatures",
        action="store_true",
        help="also re-check every command's signature against the keys recorded in the log "
        "(no secret needed; exit 1 on an unknown key or a failed signature)",
    )
    output.add_format(p)
    p.set_defaults(store_handler=cmd_verify)
    p = sub.add_parser("demo", help="initialise, append a sample run, verify, summarise")
    p.set_defaults(plain_handler=cmd_demo)
