"""D-REAM storage workload: write with fsync cadence, then read back and verify.

Genes: ``buffer_kb`` (write size), ``fsync_every`` (writes per fsync),
``file_mb`` (file size before it is read back and rewritten). Works in a
fresh temporary directory under ``--workdir`` (removed afterwards).
perf: MiB/s written plus read; p95_ms: one write (with its fsync when due);
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


class Disk:
    def __init__(self, path: str, buffer: bytes, fsync_every: int, limit: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.buffer, self.fsync_every, self.limit = buffer, fsync_every, limit
        self.writes = self.written = self.moved = self.errors = 0
        self.latencies: list[float] = []

    def write(self) -> None:
        t0 = time.perf_counter()
        try:
            os.write(self.fd, self.buffer)
            self.writes += 1
            if self.writes % self.fsync_every == 0:
                os.fsync(self.fd)
        except OSError:
            self.errors += 1
            return
        self.latencies.append((time.perf_counter() - t0) * 1000)
        self.written += len(self.buffer)
        self.moved += len(self.buffer)
        if self.written >= self.limit:
            self.verify()

    def verify(self) -> None:
        """Read back everything written since the last verify, then start over."""
        try:
            os.fsync(self.fd)
            os.lseek(self.fd, 0, os.SEEK_SET)
            left = self.written
            while left > 0:
                chunk = os.read(self.fd, min(len(self.buffer), left))
                if not chunk:
                    self.errors += 1
                    break
                self.errors += chunk != self.buffer[: len(chunk)]
                left -= len(chunk)
                self.moved += len(chunk)
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError:
            self.errors += 1
        self.written = 0


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    buffer = os.urandom(int(genome.get("buffer_kb", 64)) * 1024)
    limit = int(genome.get("file_mb", 16)) * 2**20
    busy = 0.0
    with tempfile.TemporaryDirectory(dir=a.workdir or None, prefix="dream-storage-") as tmp:
        disk = Disk(os.path.join(tmp, "data"), buffer, int(genome.get("fsync_every", 8)), limit)
        for is_busy, seconds in phases(a.budget_ms, a.mode):
            if not is_busy:
                time.sleep(seconds)
                continue
            start = time.perf_counter()
            while time.perf_counter() < start + seconds:
                disk.write()
            disk.verify()
            busy += time.perf_counter() - start
        os.close(disk.fd)
    kpis = {
        "perf": disk.moved / 2**20 / busy,
        "p95_ms": p95(disk.latencies),
        "errors": disk.errors,
        "oom": 0,
    }
    finish(kpis, len(disk.latencies))


if __name__ == "__main__":
    main()
