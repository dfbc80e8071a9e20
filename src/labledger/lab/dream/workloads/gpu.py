"""D-REAM gpu workload: square matrix multiplications on the first CUDA device.

Genes: ``size`` (matrix side), ``dtype`` (float32, float16, bfloat16).
perf: TFLOP/s; p95_ms: one synchronised matmul; errors: non-finite results;
oom: CUDA out of memory. Also reports the device's own ``watts`` and
``temp_peak_c`` when torch can read them (NVML), else leaves them absent.
Exits 3 when torch or a CUDA device is missing (the runner checks first).
"""

from __future__ import annotations

import argparse
import json
import sys
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


def device_reading(torch, name: str) -> float | None:  # type: ignore[no-untyped-def]
    try:
        return float(getattr(torch.cuda, name)())
    except Exception:  # NVML missing or unsupported: the reading stays absent
        return None


def main() -> None:
    a = args()
    try:
        import torch
    except ImportError:
        sys.exit("torch is not installed")
    if not torch.cuda.is_available():
        sys.exit(3)
    genome = json.loads(a.genome)
    n, dtype = int(genome.get("size", 1024)), getattr(torch, str(genome.get("dtype", "float32")))
    torch.manual_seed(a.seed)
    try:
        x = torch.randn(n, n, device="cuda", dtype=dtype)
        y = torch.randn(n, n, device="cuda", dtype=dtype)
    except torch.cuda.OutOfMemoryError:
        print(json.dumps({"perf": None, "p95_ms": None, "errors": 0, "oom": 1}))
        return
    latencies: list[float] = []
    errors, busy, watts, temp = 0, 0.0, [], []
    for is_busy, seconds in phases(a.budget_ms, a.mode):
        if not is_busy:
            time.sleep(seconds)
            continue
        start = time.perf_counter()
        while time.perf_counter() < start + seconds:
            t0 = time.perf_counter()
            z = x @ y
            torch.cuda.synchronize()
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += int(not bool(torch.isfinite(z).all()))
            watts.append(device_reading(torch, "power_draw"))
            temp.append(device_reading(torch, "temperature"))
        busy += time.perf_counter() - start
    flops = 2 * n**3 * len(latencies)
    kpis = {"perf": flops / busy / 1e12, "p95_ms": p95(latencies), "errors": errors, "oom": 0}
    measured_w = [w / 1000 for w in watts if w is not None]  # NVML reports milliwatts
    measured_t = [t for t in temp if t is not None]
    if measured_w:
        kpis["watts"] = sum(measured_w) / len(measured_w)
    if measured_t:
        kpis["temp_peak_c"] = max(measured_t)
    finish(kpis, len(latencies))


if __name__ == "__main__":
    main()
