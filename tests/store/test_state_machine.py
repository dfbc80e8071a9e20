"""The store against an in-memory model on both backends (issue #2)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from labledger import ANY, EventStore, init_store, open_store
from labledger.testing.backends import Backend
from labledger.testing.profile import examples
from labledger.testing.store_machine import StoreMachine

SETTINGS = settings(
    max_examples=examples(25),
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


FAST = [Phase.explicit, Phase.reuse, Phase.generate]  # finding the bug is enough; no shrinking


def _fresh(backend: Backend) -> EventStore:
    url = backend.fresh_url()
    init_store(url)
    return open_store(url)


def _machine(backend: Backend) -> type[StoreMachine]:
    class Machine(StoreMachine):
        def make_store(self) -> EventStore:
            return _fresh(backend)

    return Machine


def test_sqlite_store_matches_model(sqlite_backend: Backend) -> None:
    run_state_machine_as_test(_machine(sqlite_backend), settings=SETTINGS)


def test_postgres_store_matches_model(postgres_backend: Backend) -> None:
    run_state_machine_as_test(_machine(postgres_backend), settings=SETTINGS)


def test_model_catches_a_store_that_ignores_expected_versions(sqlite_backend: Backend) -> None:
    """The machine can fail: a store that drops expected versions is caught."""

    class Sloppy(StoreMachine):
        def make_store(self) -> EventStore:
            store = _fresh(sqlite_backend)
            real = store.append
            store.append = lambda s, ev, expected=ANY: real(s, ev, ANY)  # type: ignore[method-assign]
            return store

    with pytest.raises(AssertionError, match="conflict not detected"):
        run_state_machine_as_test(
            Sloppy,
            settings=settings(SETTINGS, report_multiple_bugs=False, print_blob=False, phases=FAST),
        )
