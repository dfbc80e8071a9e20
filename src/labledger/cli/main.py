"""The ``labledger`` command line. Thin: parsing, calling the API, exit codes.

Exit codes (stable; scripts rely on them): 0 ok; 1 integrity failure; 2 usage
or bad input; 3 expected-version conflict; 4 rejected (validation or
security); 5 store unavailable or not initialised. Each error class carries
its code (``labledger.errors``). Reasons go to stderr; stdout stays
machine-readable.

Every command lives in the module named after it (:data:`COMMANDS`, in the
order ``labledger --help`` lists them). Each module's ``register(sub)`` adds
its parsers and marks each with ``set_defaults(store_handler=f)`` (``f(args,
store) -> exit code``, run on the opened store) or
``set_defaults(plain_handler=f)`` (``f(args) -> exit code``, which opens what
it needs itself).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from labledger._version import __version__
from labledger.cli import (
    archive,
    audit,
    completion,
    dream,
    esper,
    keys,
    lab,
    log,
    ops,
    project,
    replay,
    runs,
    serve,
    toolgen,
)
from labledger.errors import LabledgerError, MissingExtra
from labledger.extras import extra_for
from labledger.ledger import open_ledger
from labledger.store import default_url

COMMANDS = (
    log,
    keys,
    project,
    runs,
    ops,
    archive,
    dream,
    toolgen,
    esper,
    audit,
    lab,
    replay,
    serve,
    completion,
)
USAGE = 2


class _CliUsage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _CliUsage(f"{self.prog}: {message}")


def exit_code(exc: LabledgerError) -> int:
    """The CLI exit code for an error: its class's ``exit_code`` (a test pins the mapping)."""
    return exc.exit_code


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
    for module in COMMANDS:
        module.register(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    plain = getattr(args, "plain_handler", None)
    if plain is not None:
        return int(plain(args))
    # The raw JSON path: known types are validated against the catalog and
    # signed commands verified; other well-formed namespaced types pass.
    with open_ledger(args.db, strict=False, read_only=args.read_only) as store:
        return int(args.store_handler(args, store))


def run(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _CliUsage as exc:
        print(exc, file=sys.stderr)
        return USAGE
    args.db = args.db or default_url()
    try:
        return _dispatch(args)
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
        return MissingExtra.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("labledger: interrupted", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
