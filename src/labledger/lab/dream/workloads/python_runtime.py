"""D-REAM python-runtime workload: serve fixed requests — one micro-task over 1000 objects.

Genes: ``gc_gen0`` (generation-0 threshold), ``retained`` (the results of the
last N requests stay alive: a live heap the collector must keep scanning),
``container`` (the task's data structure — dict: build and look up; list:
build and sort tuples; str: format, join and split). The request size is
fixed, so ``p95_ms`` (over every request of the trial) compares across
genomes. perf: thousands of objects processed per second; errors: requests
whose result has the wrong size.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
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


REQUEST_OBJECTS = 1000


def task(kind: str, n: int, salt: int) -> tuple[int, object]:
    """One request: (size of the result, the result itself, which the caller may retain)."""
    if kind == "dict":
        d = {f"k{i}-{salt}": [i, str(i)] for i in range(n)}
        return sum(1 for i in range(n) if f"k{i}-{salt}" in d), d
    if kind == "list":
        rows = sorted((str((i * 7919 + salt) % n), i) for i in range(n))
        return len(rows), rows
    parts = ",".join(f"{i}:{salt}" for i in range(n)).split(",")
    return len(parts), parts


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    gc.set_threshold(int(genome.get("gc_gen0", 700)), 10, 10)
    n, kind = REQUEST_OBJECTS, str(genome.get("container", "dict"))
    live: collections.deque[object] = collections.deque(maxlen=int(genome.get("retained", 10)))
    latencies: list[float] = []
    done = errors = 0
    busy = 0.0
    for is_busy, seconds in phases(a.budget_ms, a.mode):
        if not is_busy:
            time.sleep(seconds)
            continue
        start = time.perf_counter()
        while time.perf_counter() < start + seconds:
            t0 = time.perf_counter()
            size, result = task(kind, n, done)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += size != n
            live.append(result)
            done += n
        busy += time.perf_counter() - start
    kpis = {"perf": done / 1000 / busy, "p95_ms": p95(latencies), "errors": errors, "oom": 0}
    finish(kpis, len(latencies))


if __name__ == "__main__":
    main()
