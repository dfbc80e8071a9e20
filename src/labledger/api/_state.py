"""What one running API holds: the store, the projection engine, metrics, auth."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from labledger.api._auth import Authenticator, is_loopback
from labledger.api._metrics import Metrics
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.base import Tx
from labledger.store import EventStore, VerifyReport

_encode = msgspec.json.Encoder().encode


class ApiState:
    """Shared by every request of one app; the store and engine are thread-safe to read.

    Catching a projection up writes its tables and checkpoint; two requests
    doing it at once would race for the same checkpoint, so catch-ups are
    serialized by one lock (reads after the catch-up run concurrently).
    """

    def __init__(self, store: EventStore, auth: Authenticator, bind_host: str) -> None:
        self.store = store
        self.auth = auth
        self.bind_host = bind_host
        self.open_reads = is_loopback(bind_host)
        self.engine = ProjectionEngine(store, all_projections())
        self.metrics = Metrics()
        self.last_verify: VerifyReport | None = None
        self._catch_up_lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="labledger-api-")
        self.cache_dir = Path(self._tmp.name)
        self.export_lock = threading.Lock()

    @contextmanager
    def read(self, name: str) -> Iterator[Tx]:
        """A consistent read of projection ``name``, caught up to the head first."""
        with self._catch_up_lock:
            self.engine.catch_up(name)
        with self.engine.read(name) as tx:
            yield tx

    def verify(self) -> VerifyReport:
        """Run a full integrity scan, remember it and count it."""
        report = self.store.verify()
        self.last_verify = report
        self.metrics.verified(report.ok)
        return report

    def close(self) -> None:
        """Release the store and the cache directory."""
        self.store.close()
        self._tmp.cleanup()


def encode(obj: object) -> bytes:
    """JSON bytes of API results (msgspec: structs, enums and raw payloads included)."""
    return _encode(obj)
