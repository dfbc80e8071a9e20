"""Prometheus metrics: the app's own counters, plus gauges read at scrape time.

Counters and the histogram live in this process (what this server appended,
refused and how long its appends took); projection lag, head and nonce
ledger size are read from the store when ``/metrics`` is scraped. The text
exposition format is written by hand: it is a few lines, and it spares a
dependency.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence

from labledger.projections.status import ProjectionStatus

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


class Metrics:
    """Thread-safe counters of one API process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.appended: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.verify_runs = 0
        self.verify_failures = 0
        self.subscribers = 0
        self._buckets = [0] * len(LATENCY_BUCKETS_S)
        self._latency_count = 0
        self._latency_sum = 0.0

    def appended_events(self, types: Iterable[str], seconds: float) -> None:
        """Count one successful append call: its events by type and its latency."""
        with self._lock:
            self.appended.update(types)
            self._latency_count += 1
            self._latency_sum += seconds
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self._buckets[i] += 1

    def rejected(self, reason: str) -> None:
        """Count one refused write (conflict, invalid, unauthorized or a command's reason)."""
        with self._lock:
            self.rejections[reason] += 1

    def verified(self, ok: bool) -> None:
        """Count one integrity scan and whether it failed."""
        with self._lock:
            self.verify_runs += 1
            self.verify_failures += 0 if ok else 1

    def subscriber(self, delta: int) -> None:
        """An SSE tail opened (+1) or closed (-1)."""
        with self._lock:
            self.subscribers += delta

    def render(self, projections: list[ProjectionStatus], head: int, nonces: int) -> str:
        """The text exposition format (version 0.0.4)."""
        with self._lock:
            lines = self._counters()
        lines += _gauge("labledger_head_position", "The last position in the log.", [("", head)])
        lines += _gauge(
            "labledger_nonce_ledger_size",
            "Live nonces in the store's nonce ledger.",
            [("", nonces)],
        )
        lag = [(_labels(projection=p.name), p.lag_events) for p in projections]
        lines += _gauge("labledger_projection_lag_events", "Events behind the head.", lag)
        secs = [(_labels(projection=p.name), p.lag_seconds) for p in projections]
        lines += _gauge("labledger_projection_lag_seconds", "Seconds behind the head.", secs)
        stalled = [(_labels(projection=p.name), int(p.stalled)) for p in projections]
        lines += _gauge("labledger_projection_stalled", "1 when a projection stalled.", stalled)
        return "\n".join(lines) + "\n"

    def _counters(self) -> list[str]:
        lines = ["# HELP labledger_api_events_appended_total Events appended through the API."]
        lines.append("# TYPE labledger_api_events_appended_total counter")
        for t, n in sorted(self.appended.items()):
            lines.append(f"labledger_api_events_appended_total{_labels(type=t)} {n}")
        lines.append("# HELP labledger_api_rejections_total Writes refused, by reason.")
        lines.append("# TYPE labledger_api_rejections_total counter")
        for r, n in sorted(self.rejections.items()):
            lines.append(f"labledger_api_rejections_total{_labels(reason=r)} {n}")
        name = "labledger_api_append_duration_seconds"
        lines += [f"# HELP {name} Latency of durable appends.", f"# TYPE {name} histogram"]
        for bound, n in zip(LATENCY_BUCKETS_S, self._buckets, strict=True):
            lines.append(f'{name}_bucket{{le="{bound}"}} {n}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self._latency_count}')
        lines += [f"{name}_sum {self._latency_sum}", f"{name}_count {self._latency_count}"]
        lines += _gauge("labledger_api_subscribers", "Open live tails.", [("", self.subscribers)])
        lines += [
            "# HELP labledger_verify_failures_total Integrity scans that failed.",
            "# TYPE labledger_verify_failures_total counter",
            f"labledger_verify_failures_total {self.verify_failures}",
            "# HELP labledger_verify_runs_total Integrity scans run by this server.",
            "# TYPE labledger_verify_runs_total counter",
            f"labledger_verify_runs_total {self.verify_runs}",
        ]
        return lines


def _gauge(name: str, help_text: str, samples: Sequence[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    return lines + [f"{name}{labels} {value}" for labels, value in samples]
