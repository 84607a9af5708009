"""What every test gets: a process left as it found it, so one test's failure (or its
logging set-up) cannot change the outcome of the next one on the same worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from modem_drivers import inproc


@pytest.fixture(autouse=True)
def _isolated_process_state() -> Iterator[None]:
    structlog.reset_defaults()  # a command run in-process may have set a level filter
    yield
    structlog.reset_defaults()
    # a test that failed before stopping its network leaves its in-process ports behind
    # (`inproc` refuses a second 'bank0'): forget them here, not in the next test
    inproc._endpoints.clear()
