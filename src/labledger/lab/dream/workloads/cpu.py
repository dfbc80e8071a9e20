"""D-REAM cpu workload: hash a chunk over and over in ``threads`` threads.

Genes: ``threads``, ``chunk_kb``, ``algo`` (a hashlib name). hashlib releases
the GIL for large inputs, so threads run in parallel. perf: MiB/s hashed;
p95_ms: one digest; errors: digests that differ from the first one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time


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


def p95(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else None


def work(algo: str, data: bytes, until: float, expected: bytes, out: list[list[float]]) -> None:
    latencies: list[float] = []
    errors = 0.0
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        digest = hashlib.new(algo, data).digest()
        latencies.append((time.perf_counter() - t0) * 1000)
        errors += digest != expected
    out.append([errors, *latencies])


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    threads, algo = int(genome.get("threads", 1)), str(genome.get("algo", "sha256"))
    data = bytes(range(256)) * (int(genome.get("chunk_kb", 64)) * 4)
    expected = hashlib.new(algo, data).digest()
    results: list[list[float]] = []
    busy = 0.0
    for is_busy, seconds in phases(a.budget_ms, a.mode):
        if not is_busy:
            time.sleep(seconds)
            continue
        start = time.perf_counter()
        pool = [
            threading.Thread(target=work, args=(algo, data, start + seconds, expected, results))
            for _ in range(threads)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        busy += time.perf_counter() - start
    latencies = [x for r in results for x in r[1:]]
    mib = len(latencies) * len(data) / 2**20
    kpis = {
        "perf": mib / busy,
        "p95_ms": p95(latencies),
        "errors": int(sum(r[0] for r in results)),
        "oom": 0,
    }
    print(json.dumps(kpis))


if __name__ == "__main__":
    main()
