"""Everything a verb prints on stdout: a record as a JSON line, JSON objects, a table.

One encoder defines the bytes, so every verb's machine-readable output has the
same shape; reasons and progress go to stderr, never through here. The JSON
line of a record is the store's (``labledger.store.json_line``), shared with the
HTTP API.

**The output convention** (issue #17). Every read verb takes
``--format table|json|csv`` (:func:`add_format`). Without it, a terminal gets a
table and a pipe gets JSON lines (:func:`chosen`), so ``labledger runs`` reads
well and ``labledger runs | jq`` just works. JSON keeps exact values
(``*_at_us`` microseconds since the epoch, ``*_bytes`` integers); tables show
times as ISO 8601 UTC and sizes human-readable; CSV has ISO times and exact
numbers. Tables are drawn by rich when it is installed, as plain columns
otherwise.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from labledger.store import RecordedEvent
from labledger.store import json_line as json_line_of

_encode = msgspec.json.Encoder().encode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def records(events: Iterable[RecordedEvent], fmt: str = "json") -> None:
    """Records as JSON lines (the store's own line), or as a table / CSV of their envelope."""
    if fmt != "json":
        emit([_record_row(e) for e in events], fmt, columns=RECORD_COLUMNS)
        return
    out = sys.stdout.buffer
    for e in events:
        out.write(json_line_of(e))
    out.flush()


RECORD_COLUMNS = ("position", "recorded_at_us", "stream", "version", "type", "run_id", "data")


def _record_row(e: RecordedEvent) -> dict[str, Any]:
    data = e.data.decode("utf-8", "replace")
    return {
        "position": e.position,
        "recorded_at_us": e.recorded_at_us,
        "stream": e.stream,
        "version": e.stream_version,
        "type": e.type,
        "run_id": e.run_id,
        "data": data if len(data) <= 120 else data[:119] + "…",
    }


def json_line(obj: object, *, sort_keys: bool = False) -> None:
    """One JSON object (a dict, a msgspec Struct, …) on one line."""
    encode = _encode_sorted if sort_keys else _encode
    sys.stdout.buffer.write(encode(obj) + b"\n")
    sys.stdout.flush()


def json_lines(items: Iterable[object]) -> None:
    """One JSON object per line."""
    out = sys.stdout.buffer
    for item in items:
        out.write(_encode(item) + b"\n")
    sys.stdout.flush()


def json_document(obj: object) -> None:
    """One JSON object, indented for people (``dream pack``)."""
    sys.stdout.buffer.write(msgspec.json.format(_encode(obj), indent=2) + b"\n")
    sys.stdout.flush()


def raw(data: bytes) -> None:
    """Bytes that are already a document (a stored JSON Schema)."""
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned text columns, right-aligned numbers, two spaces apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    numeric = [all(_is_number(r[i]) for r in rows) for i in range(len(header))]
    for line in [header, *rows]:
        cells = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(line, widths, numeric, strict=True)
        ]
        print("  ".join(cells).rstrip())


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True


# -- the convention: --format table|json|csv ------------------------------------

FORMATS = ("table", "json", "csv")
Row = Mapping[str, Any]


def add_format(parser: argparse.ArgumentParser) -> None:
    """Give a read verb ``--format`` (and nothing else: the default is decided at print time)."""
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="table, json (JSON lines) or csv; default: table on a terminal, json when piped",
    )


def chosen(args: argparse.Namespace, *, json_flag: bool = False) -> str:
    """The format a verb prints in: ``--format``, else ``json`` for a legacy ``--json``
    flag (``json_flag``), else by whether stdout is a terminal."""
    explicit: str | None = getattr(args, "format", None)
    if explicit is not None:
        return explicit
    if json_flag:
        return "json"
    return "table" if sys.stdout.isatty() else "json"


def emit(
    rows: Sequence[Row] | Sequence[msgspec.Struct],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print ``rows`` in ``fmt``: JSON lines (every key), or a table / CSV of ``columns``.

    Args:
        rows: one mapping (or msgspec Struct) per row.
        fmt: one of :data:`FORMATS`.
        columns: the table's and CSV's columns (default: the first row's keys).
        title: a caption over the table (tables only).
    """
    if fmt == "json":
        json_lines(rows)
        return
    rows = [r if isinstance(r, Mapping) else msgspec.to_builtins(r) for r in rows]
    if not rows and title is not None and fmt == "table":
        return  # an empty section of a report: say nothing rather than draw an empty box
    cols = list(columns or (rows[0].keys() if rows else []))
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([[csv_cell(c, r.get(c)) for c in cols] for r in rows])
        sys.stdout.flush()
        return
    body = [[cell(c, r.get(c)) for c in cols] for r in rows]
    if not _rich_table(cols, body, title):
        if title:
            print(title)
        if cols:
            table(cols, body) if body else print("  ".join(cols))


def _rich_table(header: Sequence[str], body: Sequence[Sequence[str]], title: str | None) -> bool:
    try:
        from rich.console import Console
        from rich.table import Table
    except ModuleNotFoundError:
        return False
    grid = Table(title=title, title_justify="left", header_style="bold")
    numeric = [bool(body) and all(_is_number(r[i]) for r in body) for i in range(len(header))]
    for name, num in zip(header, numeric, strict=True):
        grid.add_column(name, justify="right" if num else "left", overflow="fold")
    for line in body:
        grid.add_row(*line)
    # A terminal gets its own width; a file (``--format table > runs.txt``) a wide page.
    width = None if sys.stdout.isatty() else 160
    Console(soft_wrap=False, highlight=False, width=width).print(grid)
    return True


def iso(us: int | None) -> str:
    """µs since the epoch as ISO 8601 UTC to the millisecond (``-`` for none)."""
    if us is None:
        return "-"
    at = dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_size(n: int | None) -> str:
    """Bytes for people: ``81.0 GB`` (decimal units, as disks are sold), ``512 B``."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """Seconds for people: ``42.0s``, ``3m05s``, ``2h14m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def cell(column: str, value: Any) -> str:
    """One table cell: times ISO, sizes human, floats to 4 significant digits."""
    if value is None:
        return "-"
    if column.endswith("_at_us") and isinstance(value, int):
        return iso(value)
    if column.endswith("_bytes") and isinstance(value, int):
        return human_size(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict | list | tuple, msgspec.Struct)):
        return _encode(value).decode()
    return str(value)


def csv_cell(column: str, value: Any) -> str:
    """One CSV cell: times ISO, numbers exact, nested values as JSON, nothing for none."""
    if value is None:
        return ""
    if column.endswith("_at_us") and isinstance(value, int):
        return iso(value)
    if isinstance(value, (dict | list | tuple, msgspec.Struct)):
        return _encode(value).decode()
    return str(value)
