"""The fault suite: runnable alone (``pytest -q tests/faults``); figures summarised at the end.

``LABLEDGER_TEST_PROFILE=long`` scales every harness up (see docs/reliability.md);
``LABLEDGER_FAULT_SEED`` replays a run's random choices.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from labledger.testing.profile import PROFILE
from tests.faults.harness import FIGURES, PG_BIN, ThrowawayPostgres


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of our own (the shared server must never be killed)."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15 binaries and runuser to start a throwaway cluster")
    # A long WAL writer delay keeps asynchronous commits in memory: the broken variant
    # (synchronous_commit = off) then reliably loses acknowledged commits to a kill.
    cluster = ThrowawayPostgres("wal_writer_delay=10000")
    yield cluster
    cluster.stop()


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section(f"fault-injection figures (profile: {PROFILE})")
    for name, text in FIGURES:
        terminalreporter.write_line(f"{name}: {text}")
