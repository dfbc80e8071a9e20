"""Parquet export (pyarrow): one table per event type, and read models table by table.

An event table has the envelope columns (position, stream, stream_version,
id, type, schema_version, recorded_at as a UTC timestamp, correlation_id,
causation_id, run_id, actor), ``metadata`` as JSON text, and the payload
flattened: nested objects become ``data.a.b`` columns; arrays stay whole as
JSON text (their shape varies per event). A column whose values mix kinds
(say numbers and text) is written as text. The files read back with pandas
(``pd.read_parquet``) and polars (``pl.read_parquet``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.errors import UsageError
from labledger.projections import ProjectionEngine
from labledger.store import EventStore, RecordedEvent

ENVELOPE = (
    "position",
    "stream",
    "stream_version",
    "id",
    "type",
    "schema_version",
    "correlation_id",
    "causation_id",
    "run_id",
    "actor",
)


def flatten(value: dict[str, Any], prefix: str = "data.") -> dict[str, Any]:
    """Nested objects as dotted keys; arrays as JSON text."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out |= flatten(item, f"{prefix}{key}.")
        elif isinstance(item, list | dict):
            out[prefix + key] = json.dumps(item, sort_keys=True)
        else:
            out[prefix + key] = item
    return out


def _row(e: RecordedEvent) -> dict[str, Any]:
    row: dict[str, Any] = {k: getattr(e, k) for k in ENVELOPE}
    row["recorded_at"] = e.recorded_at_us
    row["metadata"] = e.metadata.decode()
    return row | flatten(msgspec.json.decode(e.data))


def _table(rows: list[dict[str, Any]], timestamps: Iterable[str] = ()) -> Any:
    import pyarrow as pa

    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array([None if v is None else str(v) for v in values])
    for name in timestamps:
        if name in columns:
            columns[name] = columns[name].cast(pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def _events(store: EventStore, type_name: str, run_id: str | None) -> Iterator[RecordedEvent]:
    for e in store.read_all(1):
        if e.type == type_name and (run_id is None or e.run_id == run_id):
            yield e


def export_events(
    store: EventStore, types: Iterable[str], out: Path, run_id: str | None = None
) -> dict[str, int]:
    """Write ``out/TYPE.parquet`` for each type; returns rows written per type.

    Args:
        store: the ledger to read.
        types: event types (``dream.TrialRecorded``, …).
        out: an existing or new directory.
        run_id: only events of this run.
    """
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for type_name in types:
        rows = [_row(e) for e in _events(store, type_name, run_id)]
        if not rows:
            raise UsageError(f"no {type_name!r} events" + (f" in run {run_id}" if run_id else ""))
        pq.write_table(_table(rows, ["recorded_at"]), out / f"{type_name}.parquet")
        written[type_name] = len(rows)
    return written


def export_model(engine: ProjectionEngine, name: str, out: Path) -> dict[str, int]:
    """Write ``out/NAME.TABLE.parquet`` for each table of read model ``name`` (caught up).

    Binary columns (encoded JSON) are written as text.
    """
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    engine.catch_up(name)
    written = {}
    with engine.read(name) as tx:
        for table_name in sorted(tx.tables.by_name):
            table = tx.table(table_name)
            rows = [_plain(dict(r._mapping)) for r in tx.conn.execute(sa.select(table))]
            path = out / f"{name}.{table_name}.parquet"
            if rows:
                pq.write_table(_table(rows), path)
            else:
                import pyarrow as pa

                pq.write_table(pa.table({c.name: pa.array([]) for c in table.columns}), path)
            written[f"{name}.{table_name}"] = len(rows)
    return written


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in row.items()}
