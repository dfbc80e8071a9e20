"""One signed command replayed from several processes at once: exactly one wins (issue #3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labledger import init_store
from labledger.events.typed import typed
from labledger.ledger import open_ledger
from labledger.security import REJECTIONS_STREAM, KeyRing, sign
from labledger.testing.backends import Backend
from labledger.testing.security_contract import SECRET, command

WORKER = r"""
import sys, time
from labledger import CommandRefused, NewEvent
from labledger.ledger import open_ledger
from labledger.security import KeyRing
url, data, start = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
store = open_ledger(url, keyring=KeyRing({"k1": bytes.fromhex(sys.argv[4])}))
event = NewEvent(type="esper.AdaptationCommand", data=data)   # a fresh id: a replay
time.sleep(max(0.0, start - time.time()))
try:
    store.append("cmds", [event])
    print("WON")
except CommandRefused as exc:
    print("REJECTED", exc.reason)
"""

PROCESSES = 6


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_concurrent_replay_admits_exactly_one(
    request: pytest.FixtureRequest, backend_name: str
) -> None:
    import time

    backend: Backend = request.getfixturevalue(
        f"{backend_name}_backend".replace("postgresql", "postgres")
    )
    url = backend.fresh_url()
    init_store(url)
    ring = KeyRing({"k1": SECRET})
    data = sign(command(), ring).to_new_event().data
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, data.decode(), str(start), SECRET.hex()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    verdicts = sorted(out.strip() for out, _ in outputs)
    assert verdicts == ["REJECTED replayed_nonce"] * (PROCESSES - 1) + ["WON"], outputs
    with open_ledger(url, keyring=ring) as store:
        assert store.stream_version("cmds") == 0
        reasons = [t.event.reason for t in typed(store.read_stream(REJECTIONS_STREAM))]  # type: ignore[attr-defined]
        assert reasons == ["replayed_nonce"] * (PROCESSES - 1)
        assert store.nonce_stats().size == 1 and store.verify().ok
