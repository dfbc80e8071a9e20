"""A small lab served over real HTTP, and a real headless Chromium driven by selenium.

Shared by the browser test and ``scripts/screenshots.py``. The store is
filled by small real lab runs (D-REAM and ToolGen through the CLI, seeded),
a typed Esper run, and one D-REAM run whose domain is an XSS string (issue
#18). uvicorn serves it on a free loopback port with the CSP h-http sets on
every page, so a page that needed an inline script would break here.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from labledger.api import create_app
from labledger.cli.main import run as cli
from labledger.events.dream import (
    Provenance,
    Regime,
    SensorProvenance,
    TrialKpis,
    TrialRecorded,
)
from labledger.events.esper import SystemStateReported, TrainingMetrics
from labledger.events.runs import RunFinished, RunOutcome, RunStarted, Subsystem
from labledger.ledger import open_ledger
from labledger.store import NewEvent, init_store
from tests.api._lab import fill_esper, ring

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
XSS = "<img src=x onerror=alert(document.domain)>"
XSS_RUN = "dream-xss"
LOSS_RUN = "esper-loss"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def browser_missing() -> str | None:
    """Why the real browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (path.exists() and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install chromium chromium-driver"
    return None


def fill_lab(url: str) -> None:
    """The XSS D-REAM run, a seeded D-REAM run, a ToolGen run and two Esper runs."""
    init_store(url)
    with open_ledger(url, strict=False, keyring=ring()) as store:
        store.append(f"dream-{XSS_RUN}", xss_run())  # first: the seeded run is the latest
    dream = ["dream", "run", "--domain", "cpu", "--generations", "3", "--population", "4"]
    assert cli(["--db", url, *dream, "--trials", "2", "--budget-ms", "20", "--seed", "1"]) == 0
    assert cli(["--db", url, "toolgen", "run", "--epochs", "2", "--timed-runs", "3"]) == 0
    with open_ledger(url, strict=False, keyring=ring()) as store:
        fill_esper(store, ring())
        store.append("esper-esper-loss", high_loss_run())


def high_loss_run() -> list[NewEvent]:
    """An Esper run whose loss starts at 1.7: issue #17 saw it drawn above a top tick of 1.5."""
    started = RunStarted(subsystem=Subsystem.ESPER, config={}, code_version="t", host="h")
    events = [started.to_new_event(run_id=LOSS_RUN, actor="tolaria")]
    for epoch, loss in enumerate((1.7, 1.2, 0.9, 0.5)):
        metrics = TrainingMetrics(
            epoch=epoch,
            step=epoch * 10,
            loss=loss,
            accuracy=0.3 + 0.1 * epoch,
            grad_norm=1.0,
            learning_rate=0.01,
            throughput_samples_per_s=None,
        )
        state = SystemStateReported(metrics=metrics, seed_stages={})
        events.append(state.to_new_event(run_id=LOSS_RUN, actor="tolaria"))
    return events


def xss_run() -> list[NewEvent]:
    """A D-REAM run whose domain is markup: every page must show it as text."""
    started = RunStarted(subsystem=Subsystem.DREAM, config={}, code_version="t", host="h")
    events = [started.to_new_event(run_id=XSS_RUN, actor="dream")]
    for gen in range(2):
        for cand in range(3):
            kpis = TrialKpis(
                perf=1.0 + gen + 0.1 * cand,
                p95_ms=5.0,
                watts=None,
                temp_peak_c=None,
                errors=0,
                oom=0,
            )
            trial = TrialRecorded(
                domain=XSS,
                regime=next(iter(Regime)),
                cand_id=f"x{gen}.{cand}",
                generation=gen,
                trial=0,
                genome={"threads": 1 + cand, "block": 16 * (gen + 1), "mode": f"m{cand % 2}"},
                kpis=kpis,
                sensors=SensorProvenance(watts=Provenance.ABSENT, temp_peak_c=Provenance.ABSENT),
                units={"perf": "MiB/s hashed", "p95_ms": "ms"},
            )
            events.append(trial.to_new_event(run_id=XSS_RUN, actor="dream"))
    events.append(RunFinished(outcome=RunOutcome.SUCCEEDED).to_new_event(run_id=XSS_RUN))
    return events


def with_csp(app: FastAPI) -> FastAPI:
    """The app with h-http's Content-Security-Policy on every response."""

    async def csp(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    app.middleware("http")(csp)
    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(url: str) -> Iterator[str]:
    """uvicorn on a free loopback port over ``url``; yields the base address."""
    port = _free_port()
    app = with_csp(create_app(url, keyring=ring()))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium through Debian's chromedriver (never a driver download)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",  # parallel coordinates draw with WebGL
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
