"""structlog set-up shared by every command of the stack.

Key/value events (`call.connected rate=33600 port=bank0`), coloured for a person at a
terminal and JSON lines when stderr is not a terminal (journald, files, CI).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


class Throttle:
    """Rate-limits a log line that repeats: at most `burst` lines per `period` for one
    key (an event and its error, say), then silence, counted; the next line let through
    carries the count (`suppressed=N`). 256 ports failing the same way write a few
    lines a minute, not 256. Sans-IO: the caller gives the time."""

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        self.burst = burst
        self.period = period
        self._windows: dict[object, tuple[float, int, int]] = {}
        """key -> (window start, lines let through in it, lines suppressed)."""

    def allow(self, key: object, now: float) -> dict[str, int] | None:
        """None: drop this line. Otherwise the fields to add to it ({} or suppressed)."""
        start, shown, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, shown = now, 0
        if shown >= self.burst:
            self._windows[key] = (start, shown, suppressed + 1)
            return None
        self._windows[key] = (start, shown + 1, 0)
        if len(self._windows) > 4096:  # keys with an error text: keep the map bounded
            self._windows = {
                k: v for k, v in self._windows.items() if now - v[0] < self.period or v[2]
            }
        return {"suppressed": suppressed} if suppressed else {}
