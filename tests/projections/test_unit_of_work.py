"""The projection unit of work (issue #19): an identity map per batch, flushed in bulk.

Behaviour, not timing: what a batch reads back of its own writes, what a raw
statement sees, and how many statements a batch sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from labledger.projections import TableSet, Tx
from labledger.testing.backends import Backend


@pytest.fixture
def db(backend: Backend) -> Iterator[tuple[sa.Engine, TableSet]]:
    engine = backend.sa_engine(backend.fresh_url())
    tables = TableSet("uow", 1, 1)
    tables.add(
        "counts",
        sa.Column("k", sa.Text, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("mean", sa.Double),
        sa.Column("refreshes", sa.BigInteger, nullable=False, default=0),
    )
    tables.add(
        "pairs",
        sa.Column("a", sa.Text, primary_key=True),
        sa.Column("b", sa.BigInteger, primary_key=True),
        sa.Column("note", sa.Text),
    )
    tables.metadata.create_all(engine)
    yield engine, tables
    engine.dispose()


def _rows(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]


def test_a_batch_reads_back_what_it_wrote(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        assert tx.get("counts", k="a") is None
        tx.insert("counts", k="a", n=1, mean=2)
        row = tx.get("counts", k="a")
        assert row is not None and (row.n, row.mean, row.refreshes) == (1, 2.0, 0)
        assert isinstance(row.mean, float)  # as the database hands it back
        tx.upsert("counts", {"k": "a"}, n=row.n + 1)
        tx.upsert("counts", {"k": "b"}, n=7)
        assert tx.update("counts", {"k": "a"}, mean=3.5) == 1
        assert tx.update("counts", {"k": "zz"}, mean=1.0) == 0
        snapshot = tx.get("counts", k="a")
        tx.update("counts", {"k": "a"}, n=10)
        assert snapshot is not None and snapshot.n == 2  # a view is a snapshot
        assert _rows(engine, tables["counts"]) == []  # nothing written before the flush
        tx.flush()
    assert _rows(engine, tables["counts"]) == [("a", 10, 3.5, 0), ("b", 7, None, 0)]


def test_rows_from_earlier_batches_are_updated_in_place(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    for n in range(1, 4):
        with engine.begin() as conn:
            tx = Tx(conn, tables)
            row = tx.get("counts", k="a")
            tx.upsert("counts", {"k": "a"}, n=(row.n if row else 0) + n)
            tx.upsert("pairs", {"a": "x", "b": n}, note=f"batch {n}")
            tx.flush()
    assert _rows(engine, tables["counts"]) == [("a", 6, None, 0)]
    assert [r[2] for r in _rows(engine, tables["pairs"])] == ["batch 1", "batch 2", "batch 3"]


def test_insert_then_delete_in_one_batch(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    counts = tables["counts"]
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        tx.insert("counts", k="gone", n=1)
        tx.insert("counts", k="kept", n=2)
        tx.conn.execute(sa.delete(counts).where(counts.c.k == "gone"))  # flushes first
        assert tx.get("counts", k="gone") is None
        tx.upsert("counts", {"k": "kept"}, n=3)
        tx.flush()
    assert _rows(engine, counts) == [("kept", 3, None, 0)]


def test_a_lookup_off_the_key_sees_pending_writes(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        tx.insert("pairs", a="x", b=1, note="one")
        tx.insert("pairs", a="x", b=2, note="two")
        assert tx.update("pairs", {"a": "x"}, note="both") == 2  # not the whole key: SQL
        row = tx.get("pairs", a="x", b=2)
        assert row is not None and row.note == "both"


def test_a_duplicate_insert_still_fails(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    with engine.begin() as conn:
        first = Tx(conn, tables)
        first.insert("counts", k="a", n=1)
        first.flush()
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        tx.insert("counts", k="a", n=2)  # unknown to this batch: an INSERT at flush
        with pytest.raises(sa.exc.IntegrityError):
            tx.flush()
        conn.rollback()
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        tx = Tx(conn, tables)
        tx.insert("counts", k="b", n=1)
        tx.insert("counts", k="b", n=2)  # known duplicate: the database says so at once


def test_a_batch_sends_a_bulk_statement_per_table(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        for i in range(50):
            tx.insert("counts", k=f"k{i}", n=i)
        tx.flush()
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        for i in range(200):  # 200 events over 50 stored keys and 50 new ones
            key = f"k{i % 100}"
            row = tx.get("counts", k=key)
            tx.upsert("counts", {"k": key}, n=(row.n if row else 0) + 1)
        tx.flush()
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    writes = [s for s in statements if not s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 100  # each key read once per batch
    assert len(writes) <= 2, writes  # one INSERT and one UPDATE, each for many rows
    counts = dict((r[0], r[1]) for r in _rows(engine, tables["counts"]))
    assert len(counts) == 100 and counts["k0"] == 2 and counts["k50"] == 2


def test_a_fresh_tx_reads_nothing_for_new_keys_but_checks_the_table(
    db: tuple[sa.Engine, TableSet],
) -> None:
    """Issue #19: a fresh (empty) table answers a miss without a SELECT; a non-empty one
    that was expected empty is still read, so a stored row is never taken as absent."""
    engine, tables = db
    counts = tables["counts"]
    with engine.begin() as conn:
        seeded = Tx(conn, tables)
        seeded.insert("pairs", a="old", b=1, note="stored")
        seeded.flush()
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=True)  # one emptiness probe per table
        probes = len(statements)
        for i in range(30):
            row = tx.get("counts", k=f"k{i % 10}")
            tx.upsert("counts", {"k": f"k{i % 10}"}, n=(row.n if row else 0) + 1)
        assert len(statements) == probes  # counts was empty: no read per key
        old = tx.get("pairs", a="old", b=1)  # pairs was not: read
        assert old is not None and old.note == "stored"
        assert tx.delete_where("counts", counts.c.k == "k3") == 1  # flushes first
        assert tx.get("counts", k="k3") is None  # deleted after being written: read, absent
        row = tx.get("counts", k="k4")
        assert row is not None and row.n == 3  # written, dropped from the map, read back
        tx.upsert("counts", {"k": "k3"}, n=100)  # a key inserted, deleted and inserted again
        tx.flush()
    assert probes == 2
    assert [(r[0], r[1]) for r in _rows(engine, counts)] == [
        *[(f"k{i}", 3) for i in range(3)],
        ("k3", 100),
        *[(f"k{i}", 3) for i in range(4, 10)],
    ]


def test_a_raw_statement_ends_the_fresh_answers(db: tuple[sa.Engine, TableSet]) -> None:
    """A statement through ``tx.conn`` may insert rows the map never saw: read again."""
    engine, tables = db
    counts = tables["counts"]
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=True)
        tx.conn.execute(sa.insert(counts).values(k="raw", n=5))
        row = tx.get("counts", k="raw")
        assert row is not None and row.n == 5
        tx.upsert("counts", {"k": "raw"}, n=6)
        tx.flush()
    assert _rows(engine, counts) == [("raw", 6, None, 0)]


def test_update_where_refuses_a_key_column(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=True)
        with pytest.raises(ValueError, match="non-key"):
            tx.update_where("counts", tables["counts"].c.n > 0, k="other")
        tx.insert("counts", k="a", n=1)
        assert tx.update_where("counts", tables["counts"].c.n > 0, refreshes=2) == 1
        row = tx.get("counts", k="a")
        assert row is not None and row.refreshes == 2


def _found(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((r.a, r.b, r.note) for r in rows)


@pytest.mark.parametrize("fresh", [True, False])
def test_find_answers_like_sql_from_memory_when_fresh(
    db: tuple[sa.Engine, TableSet], fresh: bool
) -> None:
    """Issue #19: ``Tx.find`` (a lookup off the key) reads no SQL on a fresh table and
    follows inserts, upserts and updates of the indexed column; otherwise it is a SELECT."""
    engine, tables = db
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=fresh)
        probes = len(statements)
        tx.insert("pairs", a="x", b=1, note="p")
        tx.insert("pairs", a="x", b=2, note="p")
        assert _found(tx.find("pairs", note="p")) == [("x", 1, "p"), ("x", 2, "p")]
        tx.insert("pairs", a="y", b=1, note="p")  # after the index exists
        tx.update("pairs", {"a": "x", "b": 1}, note="q")  # moves between index buckets
        tx.upsert("pairs", {"a": "x", "b": 2}, note="q")
        tx.upsert("pairs", {"a": "z", "b": 9}, note="q")  # a new row through upsert
        assert _found(tx.find("pairs", note="p")) == [("y", 1, "p")]
        assert _found(tx.find("pairs", note="q")) == [("x", 1, "q"), ("x", 2, "q"), ("z", 9, "q")]
        assert _found(tx.find("pairs", a="x", note="q")) == [("x", 1, "q"), ("x", 2, "q")]
        assert tx.find("pairs", note="none") == []
        if fresh:
            assert len(statements) == probes  # all of it from the map
        tx.flush()
    with engine.connect() as conn:
        tx = Tx(conn, tables)
        assert _found(tx.find("pairs", note="q")) == [("x", 1, "q"), ("x", 2, "q"), ("z", 9, "q")]


def test_find_reads_sql_once_the_map_no_longer_holds_the_table(
    db: tuple[sa.Engine, TableSet],
) -> None:
    engine, tables = db
    pairs = tables["pairs"]
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=True)
        tx.insert("pairs", a="x", b=1, note="p")
        assert len(tx.find("pairs", note="p")) == 1
        tx.conn.execute(sa.insert(pairs).values(a="raw", b=1, note="p"))  # behind the map
        tx.insert("pairs", a="x", b=2, note="p")  # pending: find must flush it first
        assert _found(tx.find("pairs", note="p")) == [("raw", 1, "p"), ("x", 1, "p"), ("x", 2, "p")]
        assert tx.delete_where("pairs", pairs.c.a == "x") == 2
        assert _found(tx.find("pairs", note="p")) == [("raw", 1, "p")]
