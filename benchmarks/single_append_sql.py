"""Is a single durable append slow in its SQL or in its Python? (issue #19, session 7)

    python benchmarks/single_append_sql.py [--pg-url URL | --sqlite-only] [--rounds 5]
        [--appends 300]

Three subjects, one event per transaction, rounds alternating, medians printed:

- ``labledger``: ``store.append`` of a telemetry packet (seed 11);
- ``its SQL``: the statements that append sends, by hand, on labledger's own
  schema and driver connection (SQLite: BEGIN IMMEDIATE, the head-and-version
  query, INSERT, the stream UPSERT, COMMIT; PostgreSQL: the lock and that query
  in one pipeline, the write statement and COMMIT in another), with a row built
  once and only its keys changed: no validation, no checksum, no planning;
- ``raw``: the raw twin of perf_bench (its own 7-column table).

Process CPU (``time.process_time``) and wall microseconds per append. If
``its SQL`` costs what ``raw`` costs, the gap is labledger's Python.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perf_payload import PacketFactory
from perf_subjects import LabledgerSubject, RawPostgresSubject, RawSqliteSubject, Subject
from store_bench import DEFAULT_PG_URL, scratch_database

from labledger.store import schema
from labledger.store.dialects import postgres
from labledger.store.dialects.base import HEAD_AND_VERSION

Append = Callable[[int], None]
"""Append one event: the round's base + 0 … n - 1, which keeps versions and keys unique."""


def labledger_append(
    subject: LabledgerSubject, factory: PacketFactory, n: int, base: int
) -> Append:
    events = subject.native(factory.packets(n), "lab")

    def append(i: int) -> None:
        subject.store.append("lab", [events[i - base]])

    return append


def _template(subject: LabledgerSubject, factory: PacketFactory) -> list[Any]:
    """A stored row of labledger's schema (ROW_COLUMNS), to copy with new keys."""
    subject.store.append("template", subject.native(factory.packets(1), "template"))
    raw = subject.store.engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        cur.execute(f"SELECT {schema.ROW_COLUMNS} FROM ll_events ORDER BY position DESC LIMIT 1")
        return list(cur.fetchone())
    finally:
        raw.close()


def sql_append(subject: LabledgerSubject, factory: PacketFactory, backend: str) -> Append:
    row = _template(subject, factory)
    raw = subject.store.engine.raw_connection()  # kept for the run, like the store's own
    db = raw.driver_connection

    def keyed(i: int, head: int) -> list[Any]:
        out = list(row)
        out[0], out[1], out[2] = head + 1, "by-hand", i
        out[3] = f"00000000-0000-4000-8000-{head + 1:012d}"
        return out

    if backend == "sqlite":

        def append_sqlite(i: int) -> None:
            db.execute("BEGIN IMMEDIATE")
            ((head, _, _),) = db.execute(HEAD_AND_VERSION, ("by-hand",)).fetchall()
            db.execute(schema.INSERT, keyed(i, head))
            db.execute(schema.UPSERT_STREAM, ("by-hand", i, head + 1))
            db.execute("COMMIT")

        return append_sqlite

    lock = postgres._pg(postgres.advisory("pg_advisory_xact_lock"))
    head_sql = postgres._pg(HEAD_AND_VERSION)

    def append_postgres(i: int) -> None:
        with db.pipeline():
            db.execute(lock, (postgres.APPEND_LOCK,))
            cur = db.execute(head_sql, ("by-hand",))
        ((head, _, _),) = cur.fetchall()
        with db.pipeline():
            db.execute(postgres._SINGLE_WRITE, [*keyed(i, head), "by-hand", i, head + 1, "0"])
            db.commit()

    return append_postgres


def raw_append(subject: Subject, factory: PacketFactory, n: int, base: int) -> Append:
    events = subject.native(factory.packets(n), "raw")

    def append(i: int) -> None:
        subject.commit("raw", [events[i - base]], i - 1)

    return append


@contextmanager
def subjects(backend: str, pg_url: str) -> Iterator[tuple[LabledgerSubject, Subject]]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="labledger-single-") as tmp:
            lab = LabledgerSubject(f"sqlite:///{Path(tmp) / 'lab.db'}")
            raw: Subject = RawSqliteSubject(Path(tmp) / "raw.db")
            try:
                yield lab, raw
            finally:
                lab.close()
                raw.close()
        return
    with scratch_database(pg_url) as url:
        lab, raw = LabledgerSubject(url), RawPostgresSubject(url)
        try:
            yield lab, raw
        finally:
            lab.close()
            raw.close()


def bench(backend: str, pg_url: str, rounds: int, n: int) -> None:
    factory = PacketFactory(seed=11)
    names = ("labledger", "its SQL", "raw")
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with subjects(backend, pg_url) as (lab, raw):
        for r in range(rounds):
            runs: dict[str, Append] = {
                "labledger": labledger_append(lab, factory, n, r * n),
                "its SQL": sql_append(lab, factory, backend),
                "raw": raw_append(raw, factory, n, r * n),
            }
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                append = runs[name]
                cpu, start = time.process_time(), time.perf_counter()
                for i in range(n):
                    append(r * n + i)
                wall = time.perf_counter() - start
                got[name].append(((time.process_time() - cpu) / n * 1e6, wall / n * 1e6))
            print(f"  {backend}: round {r + 1}/{rounds}", file=sys.stderr)
    print(f"{backend}: medians of {rounds} rounds of {n} single appends (subjects alternate)")
    print("  subject      CPU µs/append   wall µs/append")
    for name in names:
        cpu = statistics.median(c for c, _ in got[name])
        wall = statistics.median(w for _, w in got[name])
        print(f"  {name:10s} {cpu:14.1f} {wall:16.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pg-url", default=DEFAULT_PG_URL)
    where.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--appends", type=int, default=300)
    args = parser.parse_args()
    for backend in ("sqlite",) if args.sqlite_only else ("sqlite", "postgresql"):
        bench(backend, args.pg_url, args.rounds, args.appends)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
