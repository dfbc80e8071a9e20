"""Shared by the workload scripts (imported by name: a script's own directory is on sys.path).

Every workload serves a fixed *request* (its unit of work, named in
``regimes.yaml``) many times per trial; ``p95_ms`` is taken over those
requests, so it compares across genomes. :func:`finish` adds what the runner
needs to judge the trial: how many requests were served, the CPU time the
process used (the input of the modelled power) and its peak resident memory.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from typing import Any


def p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile, or ``None`` for no values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else None


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: Linux keeps
    ``ru_maxrss`` across ``execve``, so a workload started by a large process
    (pytest, the runner) would report its parent's peak. Elsewhere ``ru_maxrss``
    (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / 2**20 if sys.platform == "darwin" else raw / 1024


def finish(kpis: dict[str, Any], requests: int) -> None:
    """Print the trial's one JSON line: ``kpis`` plus requests, CPU seconds and peak RSS."""
    usage = {"requests": requests, "cpu_s": time.process_time(), "peak_rss_mb": peak_rss_mb()}
    print(json.dumps({**kpis, **usage}))
