"""The HTTP side: ``serve`` (API + dashboard under uvicorn) and ``export-parquet``.

FastAPI, uvicorn and pyarrow are imported only when these verbs run
(``pip install 'labledger[api]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labledger import extras
from labledger.cli import output
from labledger.cli._engine import engine_for
from labledger.cli._input import positive
from labledger.errors import UsageError
from labledger.security.keyring import KeyRing
from labledger.store import EventStore


def _port(value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) < 6 and 0 < int(value) < 65536):
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (1-65535)")
    return int(value)


def _token(ring: KeyRing, key_id: str | None) -> str:
    from labledger.api import api_token

    kid = key_id or ring.active
    secret = ring.secret(kid) if kid else None
    if kid is None or secret is None:
        raise UsageError(f"no key {kid!r} in the key ring: run `labledger keys new`")
    return api_token(kid, secret)


def _reap_at_start(url: str, now_us: int | None = None) -> None:
    """Abandon runs whose heartbeats are overdue (at ``now_us``, default the wall clock),
    so the dashboard opens on the truth."""
    from labledger.lab.reaper import reap
    from labledger.ledger import open_ledger

    with open_ledger(url, strict=False) as store:
        found = [o for o in reap(store, now_us=now_us) if o.abandoned]
    if found:
        names = ", ".join(o.run_id for o in found)
        print(f"labledger serve: abandoned {len(found)} silent runs: {names}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the API and dashboard (or, with ``--print-token``, print a bearer token)."""
    ring = KeyRing.from_env()
    if args.print_token:
        print(_token(ring, args.key))
        return 0
    extras.require("api", "serve")
    import uvicorn

    from labledger.api import create_app, is_loopback

    if not args.no_reap:
        _reap_at_start(args.db)
    app = create_app(
        args.db,
        keyring=ring,
        host=args.host,
        allowed_hosts=args.allow_host,
        max_tail_clients=args.max_tail_clients,
    )
    reads = "open (loopback)" if is_loopback(args.host) else "need a token"
    print(
        f"labledger serve: http://{args.host}:{args.port}/ui/runs (API docs at /docs); "
        f"reads {reads}, writes need a token (labledger serve --print-token)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_export_parquet(args: argparse.Namespace, store: EventStore) -> int:
    """Write Parquet files: one per event type (``--type``), one per read-model table."""
    if not args.type and not args.model:
        raise UsageError("export-parquet: give at least one --type or --model")
    extras.require("api", "export-parquet", ("pyarrow",))
    from labledger import parquet as export

    out = Path(args.out)
    written = export.export_events(store, args.type, out, args.run) if args.type else {}
    if args.model:
        engine = engine_for(store)
        for name in args.model:
            engine.get(name)
        for name in args.model:
            written |= export.export_model(engine, name, out)
    output.json_lines(
        {"table": table, "rows": rows, "out": str(out)} for table, rows in written.items()
    )
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` and ``export-parquet``."""
    p = sub.add_parser("serve", help="HTTP API, live tail, metrics and dashboard (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    p.add_argument("--port", type=_port, default=8321, help="TCP port (default 8321)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="on a loopback bind, also answer this Host name (repeat; default: only "
        "localhost, 127.0.0.1, [::1], against DNS rebinding)",
    )
    p.add_argument(
        "--max-tail-clients",
        type=positive,
        default=64,
        metavar="N",
        help="open /api/tail streams allowed at once; more get 503 (default 64)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info"],
        help="uvicorn's log level (default info)",
    )
    p.add_argument("--no-reap", action="store_true", help="do not abandon overdue runs at start")
    p.add_argument("--print-token", action="store_true", help="print the bearer token and exit")
    p.add_argument("--key", default=None, metavar="KID", help="token of this key (default: active)")
    p.set_defaults(plain_handler=cmd_serve)
    p = sub.add_parser("export-parquet", help="events per type and read models as Parquet")
    p.add_argument("--type", action="append", default=[], metavar="T", help="event type (repeat)")
    p.add_argument("--model", action="append", default=[], metavar="NAME", help="read model")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="only events of this run")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory written")
    p.set_defaults(store_handler=cmd_export_parquet)
