"""One typed replay in a fresh process: events/s and peak RSS growth (perf_bench case 4/6).

    python benchmarks/perf_child.py '{"subject": "labledger", "backend": "sqlite", ...}'

Prints one JSON object: events, seconds, rss_before_mb, peak_rss_mb, growth_mb.
The peak is the kernel's high-water mark (VmHWM), reset just before the
replay through /proc/self/clear_refs where the kernel allows it, else the
process-lifetime ``ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from perf_subjects import (
    LabledgerSubject,
    PeerSubject,
    RawPostgresSubject,
    RawSqliteSubject,
    Subject,
    peer_env_postgres,
    peer_env_sqlite,
)


def open_subject(spec: dict[str, Any]) -> Subject:
    kind, backend, target = spec["subject"], spec["backend"], spec["target"]
    if kind == "labledger":
        return LabledgerSubject(target)
    if kind == "raw":
        return RawSqliteSubject(Path(target)) if backend == "sqlite" else RawPostgresSubject(target)
    env = peer_env_sqlite(Path(target)) if backend == "sqlite" else peer_env_postgres(target)
    return PeerSubject(env)


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> int:
    spec = json.loads(sys.argv[1])
    subject = open_subject(spec)
    subject.replay_typed(2000)  # warm: imports, decoders, pools
    before = status_mb("VmRSS")
    reset = reset_peak()
    start = time.perf_counter()
    n = subject.replay_typed(spec["limit"])
    seconds = time.perf_counter() - start
    peak = (
        status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    subject.close()
    out = {
        "events": n,
        "seconds": seconds,
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "growth_mb": round(peak - before, 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
