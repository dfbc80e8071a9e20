"""Typed errors on damaged reads (issue #18): a row that cannot be a record gives
``CorruptionDetected`` naming its position to every reader — ``read``, ``read-all``
(exit 1), subscriptions, projection catch-up and the API (500, ``"kind": "integrity"``),
never a traceback. The damage is what random flips produced before: a time past year
9999, a blob where text was, text that is not UTF-8, an integer where the payload was.
SQLite stores any type in any column, so an UPDATE (with the append-only triggers
dropped on this throwaway copy) makes each one exactly.
"""

from __future__ import annotations

import io
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

from labledger import CorruptionDetected, NewEvent, init_store, open_store
from labledger.api import create_app
from labledger.cli.main import run
from labledger.projections import ProjectionEngine, all_projections
from labledger.security import KeyRing
from labledger.store.subscribe import subscribe

DAMAGE = {
    "year 105619": "recorded_at = 3270000000000000000",
    "blob for the stream": "stream = X'00ff'",
    "text not UTF-8": "stream = CAST(X'c328' AS TEXT)",
    "integer for the data": "data = 7",
    "text for the position type": "schema_version = 'one'",
}
BAD = 3


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, bool]]:
    """The damaged store's URL, and whether stream s0 still selects the bad row."""
    path = tmp_path / "damaged.db"
    url = f"sqlite:///{path}"
    init_store(url)
    with open_store(url) as store:
        for i in range(5):
            store.append("s0", [NewEvent.from_json("run.Heartbeat", {"seq": i})])
    raw = sqlite3.connect(path)
    raw.execute("DROP TRIGGER ll_events_no_update")
    raw.execute(f"UPDATE ll_events SET {DAMAGE[request.param]} WHERE position = {BAD}")
    raw.commit()
    raw.close()
    yield url, not DAMAGE[request.param].startswith("stream")


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO()))
    monkeypatch.setattr(sys, "stderr", err)
    try:
        return run(argv), err.getvalue()
    finally:
        monkeypatch.undo()


def test_cli_read_and_read_all_exit_1_naming_the_position(
    damaged: tuple[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, in_stream = damaged
    reads = [["read-all"], ["read-all", "--from-position", "2"]] + [["read", "s0"]] * in_stream
    for argv in reads:
        code, err = _cli(["--db", url, *argv], monkeypatch)
        assert code == 1, (argv, err)
        assert "Traceback" not in err and f"position {BAD}" in err, err


def test_store_subscription_and_projection_raise_corruption_detected(
    damaged: tuple[str, bool],
) -> None:
    with open_store(damaged[0]) as store:
        with pytest.raises(CorruptionDetected) as read:
            list(store.read_all())
        assert read.value.position == BAD

        async def follow() -> None:
            async for _ in subscribe(store):
                pass

        with pytest.raises(CorruptionDetected) as followed:
            anyio.run(follow)
        assert followed.value.position == BAD
        with pytest.raises(CorruptionDetected) as projected:
            ProjectionEngine(store, all_projections()).run()
        assert projected.value.position == BAD


def test_the_api_answers_500_integrity_naming_the_position(damaged: tuple[str, bool]) -> None:
    url, in_stream = damaged
    app = create_app(url, keyring=KeyRing())
    paths = ["/api/events", f"/api/events/{BAD}", "/api/runs"]
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        for path in paths + ["/api/streams/s0/events"] * in_stream:
            r = client.get(path)
            body = r.json()
            assert r.status_code == 500, (path, r.text)
            assert (body["error"], body["kind"], body["position"]) == (
                "CorruptionDetected",
                "integrity",
                BAD,
            ), path
        assert client.get("/api/events/1").status_code == 200  # the sound rows still read
