"""The store conformance suite: DESIGN §3 invariants 1–6 and 8, as test classes.

Subclass with ``backend_fixture`` naming a fixture that returns a
:class:`~labledger.testing.backends.Backend`; every test here runs against it.
"""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from labledger import (
    ANY,
    EXISTS,
    NO_STREAM,
    BlobNotFound,
    CorruptionDetected,
    EventStore,
    IdempotencyConflict,
    InvalidEvent,
    NewEvent,
    StreamAppend,
    WrongExpectedVersion,
    init_store,
    open_store,
)
from labledger.testing.backends import Backend, sa_url


def ev(n: int = 0, type: str = "test.Happened", **envelope: str) -> NewEvent:
    return NewEvent.from_json(type, {"n": n, "text": f"event {n}"}, metadata={"m": n}, **envelope)


class BackendFixtures:
    backend_fixture: str

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Backend:
        result: Backend = request.getfixturevalue(self.backend_fixture)
        return result

    @pytest.fixture
    def url(self, backend: Backend) -> str:
        url = backend.fresh_url()
        init_store(url)
        return url

    @pytest.fixture
    def store(self, url: str) -> Iterator[EventStore]:
        with open_store(url) as store:
            yield store


class AppendContract(BackendFixtures):
    def test_batch_lands_in_order_with_envelope(self, store: EventStore) -> None:
        batch = [
            ev(i, correlation_id="corr", causation_id="cause", run_id="r1", actor="me")
            for i in range(3)
        ]
        result = store.append("s", batch, NO_STREAM)
        assert (result.first_position, result.last_position) == (1, 3)
        assert (result.first_version, result.last_version) == (0, 2)
        read = store.read_stream("s")
        assert [e.id for e in read] == [e.id for e in batch]
        first = read[0]
        assert (first.stream, first.stream_version, first.position) == ("s", 0, 1)
        assert (first.type, first.schema_version) == ("test.Happened", 1)
        assert (first.correlation_id, first.causation_id, first.run_id, first.actor) == (
            "corr",
            "cause",
            "r1",
            "me",
        )
        assert first.data == batch[0].data and first.metadata == batch[0].metadata
        assert first.recorded_at.tzinfo is not None

    @pytest.mark.parametrize(
        ("expected", "ok_when_missing", "ok_when_present"),
        [(ANY, True, True), (NO_STREAM, True, False), (EXISTS, False, True)],
    )
    def test_named_expected_versions(
        self, store: EventStore, expected: object, ok_when_missing: bool, ok_when_present: bool
    ) -> None:
        for ok in (ok_when_missing, ok_when_present):
            head = store.head()
            if ok:
                store.append("s", [ev()], expected)  # type: ignore[arg-type]
            else:
                with pytest.raises(WrongExpectedVersion):
                    store.append("s", [ev()], expected)  # type: ignore[arg-type]
                assert store.head() == head
            if store.stream_version("s") < 0:
                store.append("s", [ev()])

    def test_exact_version_conflict_writes_nothing_and_carries_actual(
        self, store: EventStore
    ) -> None:
        store.append("s", [ev(0), ev(1)], NO_STREAM)
        store.append("s", [ev(2)], 1)
        with pytest.raises(WrongExpectedVersion) as info:
            store.append("s", [ev(3), ev(4)], 1)
        assert info.value.actual == 2 and info.value.stream == "s"
        assert store.head() == 3 and store.stream_version("s") == 2
        assert len(store.read_stream("s")) == 3

    def test_same_ids_same_content_return_original_positions(self, store: EventStore) -> None:
        batch = [ev(0), ev(1)]
        first = store.append("s", batch, NO_STREAM)
        store.append("other", [ev(9)])
        again = store.append("s", batch, NO_STREAM)
        assert again.already_appended and not first.already_appended
        assert (again.first_position, again.last_position) == (
            first.first_position,
            first.last_position,
        )
        assert store.head() == 3

    def test_same_id_other_content_is_a_conflict(self, store: EventStore) -> None:
        e = ev(0)
        store.append("s", [e])
        forged = NewEvent(type=e.type, data=b'{"n":1}', id=e.id)
        with pytest.raises(IdempotencyConflict):
            store.append("s", [forged])
        with pytest.raises(IdempotencyConflict):
            store.append("elsewhere", [e])
        with pytest.raises(IdempotencyConflict):
            store.append("s", [e, ev(5)])  # half old, half new
        assert store.head() == 1

    def test_large_batches_keep_idempotency_and_order(self, store: EventStore) -> None:
        """Issue #19: a batch large enough for PostgreSQL's COPY path behaves like any other."""
        batch = [ev(n) for n in range(250)]
        first = store.append("s", batch, NO_STREAM)
        again = store.append("s", batch, NO_STREAM)
        assert again.already_appended
        assert (again.first_position, again.last_position) == (1, 250)
        reused = [*(ev(n) for n in range(1000, 1200)), batch[7]]  # one id already stored
        with pytest.raises(IdempotencyConflict) as info:
            store.append("t", reused)
        assert info.value.event_id == batch[7].id and store.head() == first.last_position
        read = list(store.read_stream("s"))
        assert [r.id for r in read] == [e.id for e in batch]
        assert [r.data for r in read] == [e.data for e in batch]
        assert store.verify().ok

    @pytest.mark.parametrize("size", [1, 32, 250])
    def test_every_write_path_stores_every_field(self, store: EventStore, size: int) -> None:
        """Issue #19: one row, a multi-row statement and COPY (PostgreSQL, binary) store alike."""
        batch = [
            ev(n, correlation_id=f"c-{n}", run_id="rün-✓", actor="ä/b") if n % 2 else ev(n)
            for n in range(size)
        ]
        store.append("strëam/ü", batch, NO_STREAM)
        read = list(store.read_stream("strëam/ü"))
        assert [r.stream_version for r in read] == list(range(size))
        for record, sent in zip(read, batch, strict=True):
            assert (record.id, record.type, record.schema_version) == (sent.id, sent.type, 1)
            assert (record.data, record.metadata) == (sent.data, sent.metadata)
            assert (record.correlation_id, record.causation_id, record.run_id, record.actor) == (
                sent.correlation_id,
                None,
                sent.run_id,
                sent.actor,
            )
        assert store.verify().ok

    def test_mixed_batch_names_the_stored_id(self, store: EventStore) -> None:
        """Issue #12: the message named a new id as "already appended"."""
        stored = ev(0)
        store.append("s", [stored])
        new = ev(1)
        with pytest.raises(IdempotencyConflict) as info:
            store.append("s", [new, stored])
        assert info.value.event_id == stored.id
        assert stored.id in str(info.value) and new.id not in str(info.value)
        assert store.head() == 1

    @pytest.mark.parametrize(
        "payload", [b"state1", b"[1, 2]", b'"text"', b"", b"{", b"\xff", b"null", b"{} {}"]
    )
    def test_data_and_metadata_must_be_json_objects(
        self, store: EventStore, payload: bytes
    ) -> None:
        """Issue #12: ``data=b"state1"`` was stored, and ``read`` printed non-JSON lines."""
        store.append("s", [ev(0)])
        with pytest.raises(InvalidEvent, match="data is not a JSON object"):
            store.append("s", [NewEvent(type="test.Happened", data=payload)])
        with pytest.raises(InvalidEvent, match="metadata is not a JSON object"):
            store.append("s", [NewEvent(type="test.Happened", data=b"{}", metadata=payload)])
        assert store.head() == 1 and store.verify().ok

    def test_duplicate_id_inside_a_batch_is_refused(self, store: EventStore) -> None:
        e = ev(0)
        with pytest.raises(InvalidEvent):
            store.append("s", [e, e])
        assert store.head() == 0

    def test_ids_are_canonical_uuids(self, store: EventStore) -> None:
        upper = str(uuid.uuid4()).upper()
        store.append("s", [NewEvent(type="t.T", data=b"{}", id=upper)])
        assert store.read_stream("s")[0].id == upper.lower()
        with pytest.raises(InvalidEvent):
            store.append("s", [NewEvent(type="t.T", data=b"{}", id="not-a-uuid")])

    @pytest.mark.parametrize("stream", ["", "x" * 257, "nul\x00byte", "\ud800"])
    def test_bad_stream_names_are_refused(self, store: EventStore, stream: str) -> None:
        with pytest.raises(InvalidEvent):
            store.append(stream, [ev()])
        assert store.head() == 0

    def test_empty_batch_and_bad_expected_version_are_refused(self, store: EventStore) -> None:
        with pytest.raises(InvalidEvent):
            store.append("s", [])
        with pytest.raises(InvalidEvent):
            store.append("s", [ev()], -3)
        with pytest.raises(InvalidEvent):
            store.append("s", ["not an event"])  # type: ignore[list-item]
        assert store.head() == 0

    def test_multi_stream_append_is_all_or_nothing(self, store: EventStore) -> None:
        store.append("b", [ev()])
        with pytest.raises(WrongExpectedVersion):
            store.append_many(
                [StreamAppend("a", [ev(1)], NO_STREAM), StreamAppend("b", [ev(2)], NO_STREAM)]
            )
        assert store.head() == 1 and store.stream_version("a") == -1
        results = store.append_many(
            [StreamAppend("a", [ev(3)], NO_STREAM), StreamAppend("b", [ev(4), ev(5)], 0)]
        )
        assert [(r.stream, r.first_position, r.last_position) for r in results] == [
            ("a", 2, 2),
            ("b", 3, 4),
        ]

    def test_positions_are_gap_free_from_one(self, store: EventStore) -> None:
        for i in range(20):
            store.append(f"s{i % 3}", [ev(i)] * 1 if i % 2 else [ev(i), ev(i + 100)])
        positions = [e.position for e in store.read_all()]
        assert positions == list(range(1, len(positions) + 1)) == list(range(1, store.head() + 1))

    def test_database_refuses_update_and_delete(self, store: EventStore, url: str) -> None:
        store.append("s", [ev()])
        store.put_blob(b"blob")
        engine = sa.create_engine(sa_url(url))
        statements = [
            "UPDATE ll_events SET data = data",
            "DELETE FROM ll_events",
            "UPDATE ll_blobs SET size = 0",
            "DELETE FROM ll_blobs",
        ]
        if engine.dialect.name == "postgresql":
            statements.append("TRUNCATE ll_events")
        for sql in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as c:
                c.exec_driver_sql(sql)
        engine.dispose()
        assert store.verify().ok and store.head() == 1


class ReadContract(BackendFixtures):
    def test_read_stream_window(self, store: EventStore) -> None:
        store.append("s", [ev(i) for i in range(10)])
        assert [e.stream_version for e in store.read_stream("s", 4, 3)] == [4, 5, 6]
        assert store.read_stream("s", 10) == []
        assert store.read_stream("missing") == []
        assert store.stream_version("missing") == -1

    def test_read_all_pages_from_a_position(self, store: EventStore) -> None:
        for i in range(25):
            store.append(f"s{i % 4}", [ev(i)])
        assert [e.position for e in store.read_all(7, batch_size=4)] == list(range(7, 26))
        assert [e.position for e in store.read_all(0, batch_size=3, limit=5)] == [1, 2, 3, 4, 5]
        assert list(store.read_all(26)) == []

    def test_read_all_sees_events_committed_while_iterating(self, store: EventStore) -> None:
        store.append("s", [ev(i) for i in range(5)])
        seen = []
        for e in store.read_all(batch_size=2):
            seen.append(e.position)
            if e.position == 3:
                store.append("s", [ev(99)])
        assert seen == [1, 2, 3, 4, 5, 6]

    def test_read_all_memory_is_constant(self, store: EventStore) -> None:
        payload = {"blob": "x" * 2000}
        for i in range(40):
            store.append("s", [NewEvent.from_json("t.Big", payload | {"i": i}) for _ in range(100)])
        tracemalloc.start()
        count = sum(1 for _ in store.read_all(batch_size=200))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == 4000
        # 4,000 events of 2 kB are 8 MB; a page of 200 is ~0.4 MB.
        assert peak < 3_000_000, f"peak {peak} bytes: read_all is holding the log"

    def test_streams_prefix_is_literal(self, store: EventStore) -> None:
        for name in ["a_b-1", "axb-1", "a%c", "abc", "run-1", "run-2", "runner"]:
            store.append(name, [ev()])
        assert [s.stream for s in store.streams("a_b")] == ["a_b-1"]
        assert [s.stream for s in store.streams("a%")] == ["a%c"]
        assert [s.stream for s in store.streams("run-")] == ["run-1", "run-2"]
        assert len(store.streams()) == 7
        assert store.streams("'; DROP TABLE ll_events; --") == []
        assert store.head() == 7


class BlobContract(BackendFixtures):
    def test_blobs_are_content_addressed(self, store: EventStore) -> None:
        data = bytes(range(256)) * 100
        sha = store.put_blob(data)
        assert sha == store.put_blob(data)
        assert store.get_blob(sha) == data
        assert store.get_blob(sha.upper()) == data
        with pytest.raises(BlobNotFound):
            store.get_blob("0" * 64)

    def test_damaged_blob_is_detected(self, store: EventStore, backend: Backend, url: str) -> None:
        sha = store.put_blob(b"kernel bytes")
        with backend.tamper(url) as conn:
            conn.execute(sa.text("UPDATE ll_blobs SET data = :d"), {"d": b"kernel bytez"})
        with pytest.raises(CorruptionDetected):
            store.get_blob(sha)
