"""rebuild_all: every shipped projection over one lab-shaped log, beside a raw scan + decode.

The log is a real ``labledger lab`` session (run once, into a scratch store)
replayed round after round: each round renames its streams and run ids and
gives every event a fresh seeded id, so the projections see what a lab that
ran many sessions would have written, in the lab's own proportions and
order. Signed commands and the gate's ``security.*`` records are left out:
a replayed command's nonce is refused, as it should be. The ceiling is the
same log read with the driver alone and decoded by the catalog (no engine,
no tables): what a rebuild could reach if folding and writing cost nothing.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from labledger import ANY, NewEvent, RecordedEvent
from labledger.events import _base as registry
from labledger.events._base import decode
from labledger.events.security import SignedCommand
from labledger.ledger import open_ledger
from labledger.projections.engine import ProjectionEngine
from labledger.projections.registry import all_projections

CHUNK = 1000  # events per append while building (untimed)

Template = list[tuple[str, NewEvent]]


def lab_template() -> Template:
    """The events of one short ``labledger lab`` session, in log order, as appendable events."""
    with tempfile.TemporaryDirectory(prefix="labledger-template-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'lab.db'}"
        subprocess.run(
            [sys.executable, "-m", "labledger", "--db", url, "lab"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        store = open_ledger(url)
        try:
            return [(r.stream, _event(r)) for r in store.read_all() if _replayable(r.type)]
        finally:
            store.close()


def _replayable(type_name: str) -> bool:
    if type_name.startswith("security."):
        return False
    cls = registry.event_class(type_name) if registry.is_known(type_name) else None
    return cls is None or not issubclass(cls, SignedCommand)


def _event(r: RecordedEvent) -> NewEvent:
    return NewEvent(
        type=r.type,
        schema_version=r.schema_version,
        data=bytes(r.data),
        metadata=bytes(r.metadata),
        id=r.id,
        correlation_id=r.correlation_id,
        causation_id=r.causation_id,
        run_id=r.run_id,
        actor=r.actor,
    )


def lab_chunks(template: Template, n: int, seed: int = 29) -> Iterator[Template]:
    """``n`` events in chunks: ``template`` round after round, renamed; same seed, same log."""
    rng = random.Random(seed)
    chunk: Template = []
    for i in range(n):
        k, j = divmod(i, len(template))
        stream, event = template[j]
        fresh = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        run_id = None if event.run_id is None else f"{event.run_id}~r{k}"
        renamed = msgspec.structs.replace(event, id=fresh, run_id=run_id)
        chunk.append((f"{stream}~r{k}", renamed))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build(url: str, template: Template, n: int, progress: Callable[[str], None]) -> None:
    """Append the lab-shaped log (untimed), grouped by stream within each chunk."""
    store = open_ledger(url)
    try:
        started = time.perf_counter()
        for k, chunk in enumerate(lab_chunks(template, n)):
            by_stream: dict[str, list[NewEvent]] = {}
            for stream, event in chunk:
                by_stream.setdefault(stream, []).append(event)
            for stream, events in by_stream.items():
                store.append(stream, events, ANY)
            done = (k + 1) * CHUNK
            if done % 100_000 == 0:
                progress(f"  built {done:,}/{n:,} ({time.perf_counter() - started:.0f} s)")
    finally:
        store.close()


def rebuild_rate(url: str) -> float:
    """Events per second of ``rebuild_many`` over every shipped projection."""
    store = open_ledger(url)
    try:
        engine = ProjectionEngine(store, all_projections())
        head = store.head()
        started = time.perf_counter()
        engine.rebuild_many()
        return head / (time.perf_counter() - started)
    finally:
        store.close()


SCAN = "SELECT type, schema_version, data FROM ll_events WHERE position > {p} ORDER BY position"


def _decode_all(rows: Any) -> int:
    n = 0
    for type_name, schema_version, data in rows:
        decode(type_name, schema_version, bytes(data))
        n += 1
    return n


def raw_sqlite_rate(path: str) -> float:
    """The ceiling on SQLite: stdlib sqlite3 scan + catalog decode."""
    conn = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        n = _decode_all(conn.execute(SCAN.format(p="0")))
        return n / (time.perf_counter() - started)
    finally:
        conn.close()


def raw_postgres_rate(url: str) -> float:
    """The ceiling on PostgreSQL: a psycopg server-side cursor scan + catalog decode."""
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor(name="rebuild_scan") as cur:
        cur.itersize = 2000
        started = time.perf_counter()
        cur.execute(SCAN.format(p="0"))
        n = _decode_all(cur)
        return n / (time.perf_counter() - started)
