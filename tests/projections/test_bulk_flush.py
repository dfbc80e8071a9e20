"""How the unit of work flushes (issue #19, session 3): multi-row statements, and per table.

Behaviour, not timing: what ends up in the tables, and which statements run
before a query (a query must see every pending write of the tables it reads,
and need not wait for the others).
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
    tables = TableSet("bulk", 1, 1)
    tables.add(
        "wide",
        sa.Column("k", sa.Text, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("x", sa.Double),
        sa.Column("flag", sa.Boolean),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("note", sa.String(40)),
        sa.Column("small", sa.Integer),
    )
    tables.add(
        "pairs",
        sa.Column("a", sa.Text, primary_key=True),
        sa.Column("b", sa.BigInteger, primary_key=True),
        sa.Column("note", sa.Text),
    )
    tables.add("keys_only", sa.Column("k", sa.Text, primary_key=True))
    tables.metadata.create_all(engine)
    yield engine, tables
    engine.dispose()


def _rows(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def _wide(i: int) -> dict[str, Any]:
    """Every kind of value, NULLs included (a column of NULLs only, too: ``small``)."""
    return {
        "n": i,
        "x": None if i % 3 == 0 else i / 4,
        "flag": None if i % 5 == 0 else i % 2 == 0,
        "blob": None if i % 7 == 0 else bytes([i % 256, 0, 255]),
        "note": None if i % 11 == 0 else f'it\'s "{i}" {{a,b}} \\ ,',
        "small": None,
    }


def test_many_new_and_changed_rows_go_out_in_few_statements(
    db: tuple[sa.Engine, TableSet],
) -> None:
    """1,200 new rows, then 1,200 changed ones: a few multi-row statements each, and the
    table holds exactly the values written (quotes, braces, NULLs, bytes, booleans)."""
    engine, tables = db
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=True)
        for i in range(1200):
            tx.insert("wide", k=f"k{i:04d}", **_wide(i))
        tx.flush()
    seen = _statements(engine)
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        for i in range(1200):
            key = f"k{i:04d}"
            assert tx.get("wide", k=key) is not None  # read: stored rows, so updates
            tx.update("wide", {"k": key}, **{**_wide(i + 1), "n": -i})
        tx.flush()
    writes = [s for s in seen if not s.lstrip().upper().startswith("SELECT")]
    assert 1 <= len(writes) <= 3, writes  # 500 rows a statement at most
    expected = [(f"k{i:04d}", *{**_wide(i + 1), "n": -i}.values()) for i in range(1200)]
    got = [
        (r[0], r[1], r[2], r[3], None if r[4] is None else bytes(r[4]), *r[5:])
        for r in _rows(engine, tables["wide"])
    ]
    assert got == expected


def test_a_changed_row_of_a_table_with_only_a_key_is_kept(db: tuple[sa.Engine, TableSet]) -> None:
    engine, tables = db
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        tx.upsert("keys_only", {"k": "a"})
        tx.flush()
        tx.upsert("keys_only", {"k": "a"})  # stored, nothing to set: written as a no-op
        tx.flush()
    assert _rows(engine, tables["keys_only"]) == [("a",)]


def test_a_prepared_query_flushes_only_the_tables_it_reads(
    db: tuple[sa.Engine, TableSet],
) -> None:
    engine, tables = db
    seen = _statements(engine)
    pairs_of = tables.prepare(
        "pairs_of", lambda t: sa.select(t["pairs"]).where(t["pairs"].c.a == sa.bindparam("a"))
    )
    assert pairs_of.reads == {"pairs"}
    with engine.begin() as conn:
        tx = Tx(conn, tables, fresh=True)
        tx.insert("wide", k="w", n=1)
        tx.insert("pairs", a="x", b=1, note="pending")
        found = [tuple(r) for r in tx.query(pairs_of, {"a": "x"})]
        assert found == [("x", 1, "pending")]  # the pending row of the table it reads
        assert not any("wide" in s and "INSERT" in s for s in seen)  # the other waits
        assert tx.get("wide", k="w") is not None
        tx.flush()
    assert _rows(engine, tables["wide"]) == [("w", 1, None, None, None, None, None)]


def test_what_a_clause_reads_includes_its_subqueries(db: tuple[sa.Engine, TableSet]) -> None:
    _, tables = db
    wide, pairs = tables["wide"], tables["pairs"]
    orphan = ~sa.exists().where(pairs.c.a == wide.c.k)
    assert tables.reads(orphan) == {"wide", "pairs"}
    assert tables.reads(sa.text("1 = 1")) == {"wide", "pairs", "keys_only"}  # SQL text: all


def test_delete_where_keeps_the_other_tables_mapped_and_pending(
    db: tuple[sa.Engine, TableSet],
) -> None:
    """A DELETE on one table flushes what it reads, keeps the rest pending, and the
    rows of the other tables are still answered from the map."""
    engine, tables = db
    pairs = tables["pairs"]
    with engine.begin() as conn:
        tx = Tx(conn, tables)
        tx.insert("pairs", a="gone", b=1)
        tx.insert("pairs", a="kept", b=2)
        tx.insert("wide", k="w", n=1)
        seen = _statements(engine)
        assert tx.delete_where("pairs", pairs.c.a == "gone") == 1
        assert not any("wide" in s for s in seen)  # wide is neither read nor written yet
        row = tx.get("wide", k="w")
        assert row is not None and row.n == 1 and not any("wide" in s for s in seen)
        assert tx.get("pairs", a="gone", b=1) is None  # read again after the delete
        tx.update("wide", {"k": "w"}, n=2)
        tx.flush()
    assert _rows(engine, pairs) == [("kept", 2, None)]
    assert _rows(engine, tables["wide"]) == [("w", 2, None, None, None, None, None)]
