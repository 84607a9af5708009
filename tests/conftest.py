"""What every test gets: a process left as it found it, so one test's failure (or its
logging set-up) cannot change the outcome of the next one on the same worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

from modem_drivers import inproc

# No per-example deadline: on a shared 2-core machine it measures the load, not the code
# (a zoneinfo lookup's first call took 304 ms against the default 200 ms and failed the
# suite); speed is measured in benchmarks/, not in unit tests.
settings.register_profile("callhome", deadline=None)
settings.load_profile("callhome")


@pytest.fixture(autouse=True)
def _isolated_process_state() -> Iterator[None]:
    structlog.reset_defaults()  # a command run in-process may have set a level filter
    yield
    structlog.reset_defaults()
    # a test that failed before stopping its network leaves its in-process ports behind
    # (`inproc` refuses a second 'bank0'): forget them here, not in the next test
    inproc._endpoints.clear()


SLOW_FIRST = ("tests/e2e/", "tests/agent/test_e2e.py", "tests/chaos/", "tests/web/test_browser")
"""Tests that take 10-45 s each. Started first, the many short ones fill the workers
around them; started last (alphabetical order put `web/` at the end), a worker is left
running one alone while the others idle."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def slow(item: pytest.Item) -> bool:
        path = item.nodeid
        return any(path.startswith(prefix) for prefix in SLOW_FIRST)

    items.sort(key=lambda item: not slow(item))  # stable: the order within each part stays
