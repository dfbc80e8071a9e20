"""Prometheus metrics through ``prometheus_client``: process, HTTP, build info, the app's
own counters, and gauges read from the store at scrape time.

Each app has its own registry (two apps in one process — tests, a notebook —
must not share counters). Label values are bounded so a client cannot grow
the series without limit: an event ``type`` that is not in the typed
catalog counts as ``other``, and an HTTP request is labelled by its route
template (``/ui/events/{position}``), never by its raw path.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labledger._version import __version__
from labledger.events import is_known
from labledger.projections.status import ProjectionStatus

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"


def health(s: ProjectionStatus) -> str:
    """A projection's health for people: ``idle`` when nobody follows it.

    "Stalled" means behind and not moving *while something follows it*. The
    status says whether a follower is attached when it knows (``followed``,
    defined by ``projections/status.py``); when it does not, no follower is
    known, and a behind projection that does not move is idle, not failed.
    """
    if s.state != "stalled":
        return s.state
    return "stalled" if getattr(s, "followed", False) is True else "idle"


class Metrics:
    """The metrics of one API process (prometheus_client objects are thread-safe)."""

    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        Info("labledger_build", "The running labledger.", registry=reg).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self._appended = Counter(
            "labledger_api_events_appended",
            "Events appended through the API, by catalogued type (others: 'other').",
            ["type"],
            registry=reg,
        )
        self._rejections = Counter(
            "labledger_api_rejections", "Writes refused, by reason.", ["reason"], registry=reg
        )
        self._append_s = Histogram(
            "labledger_api_append_duration_seconds",
            "Latency of durable appends.",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self._subscribers = Gauge("labledger_api_subscribers", "Open live tails.", registry=reg)
        self._verify_runs = Counter(
            "labledger_verify_runs", "Integrity scans run by this server.", registry=reg
        )
        self._verify_failures = Counter(
            "labledger_verify_failures", "Integrity scans that failed.", registry=reg
        )
        self._requests = Counter(
            "labledger_http_requests",
            "HTTP requests, by method, route template and status code.",
            ["method", "route", "status"],
            registry=reg,
        )
        self._request_s = Histogram(
            "labledger_http_request_duration_seconds",
            "Time to the response's headers, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self._scraped = _ScrapeGauges(reg)

    def appended_events(self, types: Iterable[str], seconds: float) -> None:
        """Count one successful append call: its events by type and its latency."""
        for t in types:
            self._appended.labels(type=t if is_known(t) else OTHER).inc()
        self._append_s.observe(seconds)

    def rejected(self, reason: str) -> None:
        """Count one refused write (conflict, invalid, unauthorized or a command's reason)."""
        self._rejections.labels(reason=reason).inc()

    def verified(self, ok: bool) -> None:
        """Count one integrity scan and whether it failed."""
        self._verify_runs.inc()
        if not ok:
            self._verify_failures.inc()

    def subscriber(self, delta: int) -> None:
        """An SSE tail opened (+1) or closed (-1)."""
        self._subscribers.inc(delta)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request."""
        self._requests.labels(method=method, route=route, status=str(status)).inc()
        self._request_s.labels(method=method, route=route).observe(seconds)

    def render(self, projections: list[ProjectionStatus], head: int, nonces: int) -> str:
        """The text exposition format, the store's gauges read now."""
        self._scraped.update(projections, head, nonces)
        return generate_latest(self.registry).decode()


class _ScrapeGauges:
    """Gauges whose values come from the store when ``/metrics`` is scraped."""

    def __init__(self, reg: CollectorRegistry) -> None:
        by_projection = ["projection"]
        self.head = Gauge("labledger_head_position", "The last position in the log.", registry=reg)
        self.nonces = Gauge(
            "labledger_nonce_ledger_size", "Live nonces in the store's nonce ledger.", registry=reg
        )
        self.lag = Gauge(
            "labledger_projection_lag_events",
            "Events behind the head.",
            by_projection,
            registry=reg,
        )
        self.lag_s = Gauge(
            "labledger_projection_lag_seconds",
            "Seconds behind the head.",
            by_projection,
            registry=reg,
        )
        self.stalled = Gauge(
            "labledger_projection_stalled",
            "1 when a projection is behind and not moving while followed.",
            by_projection,
            registry=reg,
        )
        self.idle = Gauge(
            "labledger_projection_idle",
            "1 when a projection is behind and nobody follows it (it catches up when read).",
            by_projection,
            registry=reg,
        )

    def update(self, projections: list[ProjectionStatus], head: int, nonces: int) -> None:
        self.head.set(head)
        self.nonces.set(nonces)
        for p in projections:
            word = health(p)
            self.lag.labels(projection=p.name).set(p.lag_events)
            self.lag_s.labels(projection=p.name).set(p.lag_seconds)
            self.stalled.labels(projection=p.name).set(int(word == "stalled"))
            self.idle.labels(projection=p.name).set(int(word == "idle"))


class HttpMetrics:
    """ASGI middleware: count every request by method, route template and status.

    Plain ASGI on purpose, not ``app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` relays a streaming body through a task of its own,
    and a live tail whose browser went away then kept running (with the
    store's change watcher) after its client left — tests/api/test_tail_stress.py
    caught it. Here ``send`` is only watched for the status, never buffered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered: list[tuple[int, float]] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append((int(message["status"]), time.perf_counter() - started))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            status, seconds = answered[0] if answered else (500, time.perf_counter() - started)
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics: Metrics = scope["app"].state.ledger.metrics
            metrics.request(scope["method"], route, status, seconds)
