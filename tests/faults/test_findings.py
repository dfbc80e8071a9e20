"""Store bugs the fault suite found (issue #8), fixed; kept as regression tests."""

from __future__ import annotations

import threading
import time

from labledger import CorruptionDetected, NewEvent, init_store, open_store
from labledger.testing.backends import Backend


def test_postgres_verify_is_consistent_under_concurrent_appends(
    postgres_backend: Backend,
) -> None:
    url = postgres_backend.fresh_url()
    init_store(url)
    stop = threading.Event()

    def append_forever() -> None:
        with open_store(url) as writer:
            while not stop.is_set():
                writer.append("s", [NewEvent.from_json("t.T", {})])

    thread = threading.Thread(target=append_forever, daemon=True)
    thread.start()
    problems: list[str] = []
    try:
        with open_store(url) as store:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not problems:
                report = store.verify()
                if not report.ok:
                    problems.append(report.message)
    finally:
        stop.set()
        thread.join()
    assert not problems, problems


def test_invalid_utf8_in_a_text_column_is_corruption_detected(sqlite_backend: Backend) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    with open_store(url) as store:
        store.append("s", [NewEvent.from_json("test.Golden", {"i": 1})])
    with sqlite_backend.tamper(url) as conn:  # what a flipped bit 7 in "test.Golden" does
        conn.exec_driver_sql("UPDATE ll_events SET type = CAST(X'74E573742E476F6C64656E' AS TEXT)")
    with open_store(url) as store:
        try:
            report = store.verify()
        except CorruptionDetected:
            return
        assert not report.ok and report.first_bad_position == 1


def test_non_integer_in_an_integer_column_is_reported(sqlite_backend: Backend) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    with open_store(url) as store:
        store.append("s", [NewEvent.from_json("test.Golden", {"i": 1})])
    with sqlite_backend.tamper(url) as conn:
        conn.exec_driver_sql("UPDATE ll_events SET recorded_at = 1.5")
    with open_store(url) as store:
        try:
            report = store.verify()
        except CorruptionDetected:
            return
        assert not report.ok and report.first_bad_position == 1
