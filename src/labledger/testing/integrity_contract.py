"""Integrity and schema contracts: verify names the first bad position; migrations."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from labledger import (
    EventStore,
    NewEvent,
    SchemaNotInitialized,
    init_store,
    open_store,
)
from labledger.store import Problem
from labledger.store.migrations import HEAD_REVISION, VERSION_TABLE, downgrade, script_head
from labledger.testing.backends import Backend, sa_url
from labledger.testing.store_contract import BackendFixtures, ev

FIVE_STREAMS = ["alpha", "beta", "gamma", "delta", "eps"]


def _fill(store: EventStore, n: int = 10) -> None:
    for i in range(n):
        store.append(FIVE_STREAMS[i % 5], [ev(i, run_id="r", actor="a")])


def _tamper_and_verify(
    store: EventStore, backend: Backend, url: str, sql: str, **params: object
) -> tuple[int | None, Problem | None]:
    with backend.tamper(url) as conn:
        conn.execute(sa.text(sql), params)
    report = store.verify()
    assert not report.ok, "verify missed the damage"
    return report.first_bad_position, report.problem


class IntegrityContract(BackendFixtures):
    def test_clean_log_verifies(self, store: EventStore) -> None:
        _fill(store)
        report = store.verify()
        assert report.ok and report.events_checked == 10 and report.head == 10
        assert len(report.head_hash) == 64

    def test_empty_log_verifies(self, store: EventStore) -> None:
        assert store.verify().ok

    @pytest.mark.parametrize(
        "column",
        [
            "data",
            "metadata",
            "checksum",
            "chain",
            "stream",
            "type",
            "event_id",
            "actor",
            "stream_version",
            "schema_version",
            "recorded_at",
        ],
    )
    def test_flipped_field_names_its_position(
        self, store: EventStore, backend: Backend, url: str, column: str
    ) -> None:
        _fill(store)
        engine = sa.create_engine(sa_url(url))
        with engine.connect() as c:
            value = c.execute(
                sa.text(f"SELECT {column} FROM ll_events WHERE position = 6")
            ).scalar_one()
        engine.dispose()
        if isinstance(value, int):
            changed: object = value + 1
        elif isinstance(value, bytes | memoryview):
            raw = bytearray(bytes(value))
            raw[len(raw) // 2] ^= 0x01  # one bit
            changed = bytes(raw)
        else:
            changed = value[:-1] + chr(ord(value[-1]) ^ 1)
        if column == "stream_version":
            changed = value + 7  # stays unique within the stream
        bad, problem = _tamper_and_verify(
            store, backend, url, f"UPDATE ll_events SET {column} = :v WHERE position = 6", v=changed
        )
        assert bad == 6
        assert problem is (Problem.CHAIN if column == "chain" else Problem.CHECKSUM)

    def test_deleted_row_is_a_gap(self, store: EventStore, backend: Backend, url: str) -> None:
        _fill(store)
        bad, problem = _tamper_and_verify(
            store, backend, url, "DELETE FROM ll_events WHERE position = 4"
        )
        assert (bad, problem) == (4, Problem.GAP)

    def test_truncated_tail_is_reported_by_the_index(
        self, store: EventStore, backend: Backend, url: str
    ) -> None:
        _fill(store)
        _, problem = _tamper_and_verify(
            store, backend, url, "DELETE FROM ll_events WHERE position = 10"
        )
        assert problem is Problem.INDEX

    def test_swapped_rows_are_detected_at_the_first(
        self, store: EventStore, backend: Backend, url: str
    ) -> None:
        _fill(store)
        with backend.tamper(url) as conn:
            conn.execute(
                sa.text("UPDATE ll_events SET position = position + 1000 WHERE position IN (3, 7)")
            )
            conn.execute(sa.text("UPDATE ll_events SET position = 7 WHERE position = 1003"))
            conn.execute(sa.text("UPDATE ll_events SET position = 3 WHERE position = 1007"))
        report = store.verify()
        assert (report.ok, report.first_bad_position) == (False, 3)

    def test_inserted_row_is_detected(self, store: EventStore, backend: Backend, url: str) -> None:
        _fill(store)
        with backend.tamper(url) as conn:
            conn.execute(
                sa.text("UPDATE ll_events SET position = position + 1000 WHERE position >= 5")
            )
            conn.execute(
                sa.text("UPDATE ll_events SET position = position - 999 WHERE position > 1000")
            )
        report = store.verify()
        assert not report.ok and report.first_bad_position == 5

    def test_vacuum_keeps_positions(self, store: EventStore, url: str) -> None:
        for i in range(30):
            store.append(f"s{i}", [ev(i)])
        engine = sa.create_engine(sa_url(url))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM")
        engine.dispose()
        assert [e.position for e in store.read_all()] == list(range(1, 31))
        assert store.verify().ok


class SchemaContract(BackendFixtures):
    def test_code_revision_is_alembic_head(self) -> None:
        assert script_head() == HEAD_REVISION

    def test_open_without_init_tells_what_to_run(self, backend: Backend) -> None:
        url = backend.fresh_url()
        with pytest.raises(SchemaNotInitialized, match=r"labledger --db .* init"):
            open_store(url)

    def test_open_behind_head_is_refused(self, backend: Backend) -> None:
        url = backend.fresh_url()
        init_store(url)
        downgrade(url, "base")
        with pytest.raises(SchemaNotInitialized):
            open_store(url)

    def test_upgrade_downgrade_upgrade(self, backend: Backend) -> None:
        url = backend.fresh_url()
        assert init_store(url) == HEAD_REVISION
        assert init_store(url) == HEAD_REVISION  # idempotent
        with open_store(url) as store:
            store.append("s", [NewEvent.from_json("t.T", {})])
        assert downgrade(url, "base") == "base"
        engine = sa.create_engine(sa_url(url))
        names = set(sa.inspect(engine).get_table_names())
        engine.dispose()
        assert not names & {"ll_events", "ll_streams", "ll_blobs", "ll_nonces", "ll_projections"}
        assert init_store(url) == HEAD_REVISION
        with open_store(url) as store:
            assert store.head() == 0
            store.append("s", [NewEvent.from_json("t.T", {})])
            assert store.verify().ok

    def test_own_version_table(self, url: str) -> None:
        engine = sa.create_engine(sa_url(url))
        names = set(sa.inspect(engine).get_table_names())
        engine.dispose()
        assert VERSION_TABLE in names and "alembic_version" not in names

    def test_durability_settings(self, store: EventStore) -> None:
        with store.read() as conn:
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
                assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) > 0
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            else:
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
