"""D-REAM memory workload: serve fixed requests — allocate and touch 256 pages of 4 KiB.

A request obtains a 1 MiB buffer (``PAGES`` pages of ``PAGE`` bytes), writes a
stamp unique to the request into every page, reads every stamp back and
releases the buffer. The request is the same for every genome; the genes
change only how buffers are obtained and whether they are reused:

* ``alloc`` — how a new buffer is made. ``bytearray``: ``malloc`` plus a zero
  fill, which faults every page in up front (glibc may hand back memory it
  kept from an earlier free). ``mmap``: an anonymous mapping whose pages fault
  in one by one on first touch and are returned to the kernel when it is
  unmapped. ``mmap_populate``: the same with ``MAP_POPULATE``, so the kernel
  pre-faults all pages in one call at map time.
* ``pool`` — buffers kept for reuse (0: every request makes and releases its
  own buffer). Request *i* uses slot *i* mod ``pool``, made on first use, so a
  warm pool pays no allocation or page faults, but a bigger pool is a bigger
  working set (``pool`` MiB: more cache and TLB misses, higher ``peak_rss_mb``).

perf: MiB/s of buffers served (allocated or reused, touched and verified);
p95_ms: the 95th percentile over every request of the trial; errors: pages
whose stamp did not read back; oom: 1 when a buffer could not be allocated
(the trial then stops serving and reports what it served).
"""

from __future__ import annotations

import argparse
import array
import json
import mmap
import time
from typing import Any

from _common import finish, p95  # type: ignore[import-not-found]  # run by path: its dir is on sys.path

PAGE = 4096
PAGES = 256
SIZE = PAGE * PAGES
WORDS_PER_PAGE = PAGE // 8
ALLOCS = ("bytearray", "mmap", "mmap_populate")


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


class Buffer:
    """One 1 MiB buffer, viewed as 64-bit words; ``release`` gives its memory back."""

    def __init__(self, alloc: str) -> None:
        self.map: mmap.mmap | None = None
        if alloc == "bytearray":
            raw: Any = bytearray(SIZE)
        else:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
            if alloc == "mmap_populate":
                flags |= mmap.MAP_POPULATE
            raw = self.map = mmap.mmap(-1, SIZE, flags=flags)
        self.words = memoryview(raw).cast("Q")

    def touch(self, request: int) -> int:
        """Write the request's stamp into every page, read them back: pages that differ."""
        stamp = array.array("Q", [request]) * PAGES
        self.words[::WORDS_PER_PAGE] = memoryview(stamp)
        seen = self.words[::WORDS_PER_PAGE]
        if seen.tobytes() == stamp.tobytes():
            return 0
        return sum(a != b for a, b in zip(seen.tolist(), stamp, strict=True))

    def release(self) -> None:
        self.words.release()
        if self.map is not None:
            self.map.close()


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    alloc = str(genome.get("alloc", "bytearray"))
    if alloc not in ALLOCS:
        raise SystemExit(f"memory workload: alloc must be one of {ALLOCS}, not {alloc!r}")
    pool: list[Buffer | None] = [None] * int(genome.get("pool", 0))
    latencies: list[float] = []
    errors = oom = 0
    busy = 0.0
    for is_busy, seconds in phases(a.budget_ms, a.mode):
        if not is_busy or oom:
            time.sleep(seconds)
            continue
        start = time.perf_counter()
        while time.perf_counter() < start + seconds:
            request = len(latencies)
            t0 = time.perf_counter()
            slot = request % len(pool) if pool else None
            try:
                buf = pool[slot] if slot is not None else None
                if buf is None:
                    buf = Buffer(alloc)
            except (MemoryError, OSError):
                oom = 1
                break
            errors += buf.touch(request)
            if slot is None:
                buf.release()
            else:
                pool[slot] = buf
            latencies.append((time.perf_counter() - t0) * 1000)
        busy += time.perf_counter() - start
    for kept in pool:
        if kept is not None:
            kept.release()
    perf = len(latencies) * SIZE / 2**20 / busy if busy else None
    kpis = {"perf": perf, "p95_ms": p95(latencies), "errors": errors, "oom": oom}
    finish(kpis, len(latencies))


if __name__ == "__main__":
    main()
