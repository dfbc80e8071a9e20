"""D-REAM storage workload: serve fixed requests — make one 4 KiB record durable.

A request is one 4 KiB record appended to a file; it is served when an fsync
covers it. Genes shape how records are grouped, not what a request is:
``buffer_kb`` (records gather in a buffer of this size, written with one
``write``), ``fsync_every`` (writes per fsync: group commit), ``file_mb``
(file size before it is read back, verified and truncated). Bigger groups
raise throughput and the latency of each record, which waits for its group's
fsync: ``p95_ms`` is the 95th percentile over every record of the trial, from
its submission until it is durable. Works in a fresh temporary directory under
``--workdir`` (removed afterwards). perf: MiB/s of records made durable;
errors: bytes read back that differ, plus I/O errors.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _common import finish, p95  # type: ignore[import-not-found]  # run by path: its dir is on sys.path


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for name in ("--genome", "--mode", "--workdir"):
        p.add_argument(name, default="{}" if name == "--genome" else "")
    p.add_argument("--budget-ms", type=float, default=200.0)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def phases(budget_ms: float, mode: str) -> list[tuple[bool, float]]:
    """(busy, seconds) phases: one busy phase, or busy/quiet alternating in quarters."""
    total = budget_ms / 1000
    return [(True, total / 4), (False, total / 4)] * 2 if mode == "alternate" else [(True, total)]


RECORD = 4096


class Disk:
    def __init__(self, path: str, buffer_kb: int, fsync_every: int, limit: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.record = os.urandom(RECORD)
        self.per_write = max(1, buffer_kb * 1024 // RECORD)
        self.fsync_every, self.limit = fsync_every, limit
        self.writes = self.written = self.durable = self.errors = 0
        self.pending: list[float] = []  # submission times of records not yet durable
        self.unsynced = 0  # records written but not yet fsynced
        self.latencies: list[float] = []

    def submit(self) -> None:
        """One request: a record joins the buffer; a full buffer is written, maybe fsynced."""
        self.pending.append(time.perf_counter())
        if len(self.pending) - self.unsynced >= self.per_write:
            self.write()

    def write(self) -> None:
        waiting = len(self.pending) - self.unsynced
        if waiting:
            try:
                os.write(self.fd, self.record * waiting)
            except OSError:
                self.errors += 1
            self.unsynced += waiting
            self.written += waiting * RECORD
            self.writes += 1
        if self.writes % self.fsync_every == 0 or self.written >= self.limit:
            self.sync()

    def sync(self) -> None:
        """fsync: every written record is now durable (its request is served)."""
        try:
            os.fsync(self.fd)
        except OSError:
            self.errors += 1
        now = time.perf_counter()
        served, self.pending = self.pending[: self.unsynced], self.pending[self.unsynced :]
        self.latencies += [(now - t) * 1000 for t in served]
        self.durable += len(served)
        self.unsynced = 0
        if self.written >= self.limit:
            self.verify()

    def drain(self) -> None:
        """End of a busy phase: write and fsync what is left, so every request is served."""
        self.write()
        if self.unsynced:
            self.sync()

    def verify(self) -> None:
        """Read back everything written since the last verify, then start over."""
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            left = self.written
            while left > 0:
                chunk = os.read(self.fd, min(RECORD, left))
                if not chunk:
                    self.errors += 1
                    break
                self.errors += chunk != self.record[: len(chunk)]
                left -= len(chunk)
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError:
            self.errors += 1
        self.written = 0


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    buffer_kb = int(genome.get("buffer_kb", 64))
    limit = int(genome.get("file_mb", 16)) * 2**20
    busy = 0.0
    with tempfile.TemporaryDirectory(dir=a.workdir or None, prefix="dream-storage-") as tmp:
        every = int(genome.get("fsync_every", 8))
        disk = Disk(os.path.join(tmp, "data"), buffer_kb, every, limit)
        for is_busy, seconds in phases(a.budget_ms, a.mode):
            if not is_busy:
                time.sleep(seconds)
                continue
            start = time.perf_counter()
            while time.perf_counter() < start + seconds:
                disk.submit()
            disk.drain()
            busy += time.perf_counter() - start
        os.close(disk.fd)
    kpis = {
        "perf": disk.durable * RECORD / 2**20 / busy,
        "p95_ms": p95(disk.latencies),
        "errors": disk.errors,
        "oom": 0,
    }
    finish(kpis, len(disk.latencies))


if __name__ == "__main__":
    main()
