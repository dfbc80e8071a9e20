"""The ``labledger`` command line. Thin: parsing, calling the API, exit codes.

Exit codes (stable; scripts rely on them): 0 ok; 1 integrity failure; 2 usage
or bad input; 3 expected-version conflict; 4 rejected (validation or
security); 5 store unavailable or not initialised. Reasons go to stderr;
stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import msgspec
from sqlalchemy.engine import make_url

from labledger import __version__
from labledger.cli import (
    _archive_verbs,
    _demo,
    _dream_verbs,
    _esper_verbs,
    _lab_verbs,
    _ops_verbs,
    _project_verbs,
    _security_verbs,
    _serve_verbs,
    _simic_verbs,
    _toolgen_verbs,
)
from labledger.cli._input import MAX_LINE_BYTES, events_from_lines
from labledger.errors import (
    CommandRejected,
    CorruptionDetected,
    IdempotencyConflict,
    InvalidEvent,
    LabledgerError,
    MissingExtra,
    SchemaNotInitialized,
    StoreUnavailable,
    UsageError,
    WrongExpectedVersion,
)
from labledger.extras import extra_for
from labledger.ledger import open_ledger
from labledger.store import (
    ANY,
    EXISTS,
    NO_STREAM,
    EventStore,
    ExpectedVersion,
    RecordedEvent,
    create_database,
    default_url,
    init_store,
    json_line,
)

OK, INTEGRITY, USAGE, CONFLICT, REJECTED, UNAVAILABLE = 0, 1, 2, 3, 4, 5

# Verb groups in modules of their own: each has ``add_parsers(sub)`` and marks its
# parsers with ``set_defaults(store_handler=f)`` (f(args, store) -> exit code) or
# ``set_defaults(plain_handler=f)`` (f(args) -> exit code).
EXTENSIONS: list[Any] = [
    _project_verbs,
    _ops_verbs,
    _archive_verbs,
    _dream_verbs,
    _toolgen_verbs,
    _esper_verbs,
    _lab_verbs,
    _simic_verbs,
    _serve_verbs,
]

_encode = msgspec.json.Encoder().encode


class _CliUsage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _CliUsage(f"{self.prog}: {message}")


def exit_code(exc: LabledgerError) -> int:
    """The CLI exit code for an error (a test pins this mapping)."""
    if isinstance(exc, CorruptionDetected):
        return INTEGRITY
    if isinstance(exc, WrongExpectedVersion):
        return CONFLICT
    if isinstance(exc, CommandRejected):
        return REJECTED
    if isinstance(exc, StoreUnavailable | SchemaNotInitialized):
        return UNAVAILABLE
    if isinstance(exc, InvalidEvent | IdempotencyConflict | UsageError):
        return USAGE
    return USAGE


def parse_expected(value: str) -> ExpectedVersion:
    named = {"any": ANY, "no-stream": NO_STREAM, "no_stream": NO_STREAM, "exists": EXISTS}
    if value in named:
        return named[value]
    if value.isdigit():
        return int(value)
    raise UsageError(f"--expect {value!r}: use any, no-stream, exists or a version number >= 0")


def _bounded_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines of stdin, never reading more than one over-limit line into memory."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            raise InvalidEvent(f"a line is over the {MAX_LINE_BYTES}-byte limit")
        yield line


def _write_lines(events: Iterator[RecordedEvent] | list[RecordedEvent]) -> None:
    out = sys.stdout.buffer
    for e in events:
        out.write(json_line(e))
    out.flush()


def _print_json(obj: object) -> None:
    sys.stdout.buffer.write(_encode(obj) + b"\n")
    sys.stdout.flush()


# -- verbs ---------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    if create_database(args.db):
        print(f"created database {make_url(args.db).database!r}", file=sys.stderr)
    revision = init_store(args.db)
    print(f"labledger schema at revision {revision} in {args.db}", file=sys.stderr)
    return OK


def cmd_append(args: argparse.Namespace, store: EventStore) -> int:
    expected = parse_expected(args.expect)
    events = events_from_lines(_bounded_lines(sys.stdin.buffer))
    if not events:
        raise InvalidEvent("no events on stdin: one JSON object per line")
    result = store.append(args.stream, events, expected)
    _print_json(
        {
            "stream": result.stream,
            "first_position": result.first_position,
            "last_position": result.last_position,
            "last_version": result.last_version,
            "already_appended": result.already_appended,
        }
    )
    return OK


def cmd_read(args: argparse.Namespace, store: EventStore) -> int:
    _write_lines(store.read_stream(args.stream, args.from_version, args.limit))
    return OK


def cmd_read_all(args: argparse.Namespace, store: EventStore) -> int:
    _write_lines(store.read_all(args.from_position, limit=args.limit))
    return OK


def cmd_head(args: argparse.Namespace, store: EventStore) -> int:
    print(store.head())
    return OK


def cmd_streams(args: argparse.Namespace, store: EventStore) -> int:
    for info in store.streams(args.prefix):
        _print_json(
            {"stream": info.stream, "version": info.version, "last_position": info.last_position}
        )
    return OK


def cmd_verify(args: argparse.Namespace, store: EventStore) -> int:
    report = store.verify()
    _print_json(msgspec.to_builtins(report))
    if not report.ok:
        print(f"integrity failure: {report.message}", file=sys.stderr)
        return INTEGRITY
    return OK


def cmd_demo(args: argparse.Namespace) -> int:
    return _demo.run(args.db)


# -- wiring --------------------------------------------------------------------


def _nonnegative(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a number >= 0")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labledger", description="The event-sourced ledger of an ML lab.")
    parser.add_argument("--version", action="version", version=f"labledger {__version__}")
    parser.add_argument(
        "--db",
        default=None,
        help="database URL (default: $LABLEDGER_DB, then sqlite:///labledger.db)",
    )
    parser.add_argument("--read-only", action="store_true", help="open the store read-only")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    sub.add_parser("init", help="create or upgrade the schema (Alembic upgrade head)")
    p = sub.add_parser("append", help="append JSON lines from stdin to STREAM")
    p.add_argument("stream")
    p.add_argument("--expect", default="any", help="any | no-stream | exists | N")
    p = sub.add_parser("read", help="events of one stream as JSON lines")
    p.add_argument("stream")
    p.add_argument("--from-version", type=_nonnegative, default=0)
    p.add_argument("--limit", type=_nonnegative, default=None)
    p = sub.add_parser("read-all", help="the whole log as JSON lines")
    p.add_argument("--from-position", type=_nonnegative, default=0)
    p.add_argument("--limit", type=_nonnegative, default=None)
    sub.add_parser("head", help="the last position")
    p = sub.add_parser("streams", help="streams (with a literal name prefix)")
    p.add_argument("--prefix", default="")
    sub.add_parser("verify", help="full integrity scan; exit 1 on the first bad record")
    sub.add_parser("demo", help="initialise, append a sample run, verify, summarise")
    _security_verbs.add_parsers(sub)
    for module in EXTENSIONS:
        module.add_parsers(sub)
    return parser


STORE_VERBS: dict[str, Callable[[argparse.Namespace, EventStore], int]] = {
    "append": cmd_append,
    "read": cmd_read,
    "read-all": cmd_read_all,
    "head": cmd_head,
    "streams": cmd_streams,
    "verify": cmd_verify,
}
PLAIN_VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": cmd_init,
    "demo": cmd_demo,
    "keys": _security_verbs.cmd_keys,
    "sign": _security_verbs.cmd_sign,
    "catalog": _security_verbs.cmd_catalog,
}


def run(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _CliUsage as exc:
        print(exc, file=sys.stderr)
        return USAGE
    args.db = args.db or default_url()
    try:
        plain = PLAIN_VERBS.get(args.verb) or getattr(args, "plain_handler", None)
        if plain is not None:
            return int(plain(args))
        handler = STORE_VERBS.get(args.verb) or args.store_handler
        # The raw JSON path: known types are validated against the catalog and
        # signed commands verified; other well-formed namespaced types pass.
        with open_ledger(args.db, strict=False, read_only=args.read_only) as store:
            return int(handler(args, store))
    except LabledgerError as exc:
        print(f"labledger: {exc}", file=sys.stderr)
        return exit_code(exc)
    except ModuleNotFoundError as exc:
        # An optional extra that a verb imports late: name it, exit 2.
        extra = extra_for(exc.name)
        if extra is None:
            raise
        what = "a postgresql:// store" if extra == "postgres" else args.verb
        print(f"labledger: {MissingExtra(what, extra, [str(exc.name)])}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:
        return OK
    except KeyboardInterrupt:
        print("labledger: interrupted", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
