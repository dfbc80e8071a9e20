"""A real browser on the dashboard (issue #9): headless Debian Chromium, no driver library.

The store is filled by small real lab runs (D-REAM and ToolGen through the
CLI) plus a typed Esper run; uvicorn serves it on a free loopback port.
Chromium dumps the rendered DOM of the ToolGen and D-REAM pages, where the
leaderboard table and a baselines chart must be, and saves a screenshot.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from labledger.api import create_app
from labledger.cli.main import run as cli
from labledger.ledger import open_ledger
from labledger.store import init_store
from tests.api._lab import fill_esper, ring

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('lab') / 'lab.db'}"
    init_store(url)
    dream = ["dream", "run", "--domain", "cpu", "--generations", "2", "--population", "2"]
    assert cli(["--db", url, *dream, "--trials", "2", "--budget-ms", "20", "--seed", "1"]) == 0
    assert cli(["--db", url, "toolgen", "run", "--epochs", "2", "--timed-runs", "3"]) == 0
    with open_ledger(url, strict=False, keyring=ring()) as store:
        fill_esper(store, ring())
    port = _free_port()
    config = uvicorn.Config(
        create_app(url, keyring=ring()),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _chromium(profile: Path, *args: str) -> str:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_dashboard_in_a_real_browser(served: str, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    toolgen = _chromium(profile, "--dump-dom", f"{served}/ui/toolgen")
    assert '<table id="leaderboard">' in toolgen
    assert "text_deduplicate" in toolgen and "epochs-chart" in toolgen
    dream = _chromium(profile, "--dump-dom", f"{served}/ui/dream")
    assert '<table id="baselines">' in dream
    assert 'class="chart baselines-chart"' in dream and ">baseline</text>" in dream
    esper = _chromium(profile, "--dump-dom", f"{served}/ui/esper")
    assert "accuracy-chart" in esper and "germinated s0" in esper
    shot = tmp_path / "dashboard.png"
    _chromium(profile, f"--screenshot={shot}", "--window-size=1280,1600", f"{served}/ui/dream")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
