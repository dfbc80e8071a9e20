"""D-REAM memory workload: copy blocks within a working set in a given access pattern.

Genes: ``block_kb``, ``working_set_mb``, ``pattern`` (sequential, strided,
random). perf: MiB/s copied; p95_ms: one batch of copies (about 1 MiB);
errors: copies whose destination differs from the source; oom: the working
set could not be allocated (then nothing else is measured).
"""

from __future__ import annotations

import argparse
import json
import random
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


def offsets(pattern: str, slots: int, rng: random.Random) -> list[int]:
    if pattern == "random":
        return [rng.randrange(slots) for _ in range(slots)]
    if pattern == "strided":
        return [(i * 4) % slots for i in range(slots)]
    return list(range(slots))


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    block = int(genome.get("block_kb", 64)) * 1024
    size = max(int(genome.get("working_set_mb", 32)) * 2**20, 2 * block)
    try:
        src, dst = bytearray(size), bytearray(size)  # zeroed lazily: pages fault in on use
        pattern = bytes(range(256)) * 4096
        for at in range(0, size, len(pattern)):
            src[at : at + len(pattern)] = pattern[: size - at]
    except MemoryError:
        print(json.dumps({"perf": None, "p95_ms": None, "errors": 0, "oom": 1}))
        return
    slots = len(src) // block
    order = offsets(str(genome.get("pattern", "sequential")), slots, random.Random(a.seed))
    per_batch = max(1, 2**20 // block)
    view_src, view_dst = memoryview(src), memoryview(dst)
    latencies: list[float] = []
    copied = errors = 0
    busy = 0.0
    i = 0
    for is_busy, seconds in phases(a.budget_ms, a.mode):
        if not is_busy:
            time.sleep(seconds)
            continue
        start = time.perf_counter()
        while time.perf_counter() < start + seconds:
            t0 = time.perf_counter()
            for _ in range(per_batch):
                at = order[i % slots] * block
                view_dst[at : at + block] = view_src[at : at + block]
                i += 1
            latencies.append((time.perf_counter() - t0) * 1000)
            copied += per_batch * block
            errors += view_dst[at : at + block] != view_src[at : at + block]
        busy += time.perf_counter() - start
    kpis = {"perf": copied / 2**20 / busy, "p95_ms": p95(latencies), "errors": errors, "oom": 0}
    finish(kpis, len(latencies))


if __name__ == "__main__":
    main()
