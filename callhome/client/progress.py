"""What `send` and `line-test` show while a call is under way.

The dialer reports each step (`progress(step, **fields)`: opening, dialling, connected,
handshake, transfer, sending ..., hanging up). On a terminal, once a call has taken
more than `DELAY` seconds, one status line is redrawn in place: the phase, a bar of
the bytes sent of the total, the rate against the line rate and the time left. Anywhere
else (a pipe, a log, `--json` on stdout) each step is a plain line, and the byte counts
at most every `PLAIN_EVERY` seconds, so that logs stay readable.

`status_line` is pure (numbers in, text out) for the tests; `CallProgress` only decides
when and where to write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

DELAY = 3.0
"""Seconds before the status line appears (a short call is just its summary)."""
PLAIN_EVERY = 5.0
WIDTH = 24

STEPS = {
    "opening": "opening {port}",
    "modem failed": "modem {port} failed: {error}",
    "dialling": "dialling {number} via {port} ({profile}) ... ringing, training",
    "dial failed": "{number}: {result}",
    "answering": "answering {caller}",
    "connected": "connected: {connect}",
    "handshake": "handshake",
    "transfer": "transfer: {messages} message(s)",
    "hanging up": "hanging up",
    "waiting": "every line failed; trying again in {seconds:g} s",
}
PHASES = {
    "opening": "opening",
    "dialling": "dialling",
    "answering": "answering",
    "connected": "training",
    "handshake": "handshake",
    "transfer": "sending",
    "sending": "sending",
    "hanging up": "hanging up",
    "waiting": "waiting",
}


def _size(count: float) -> str:
    if count < 10_000:
        return f"{count:.0f} B"
    return f"{count / 1024:.1f} KiB"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def status_line(
    phase: str,
    elapsed: float,
    *,
    sent: int | None = None,
    total: int | None = None,
    rate: float | None = None,
    line_rate: int | None = None,
) -> str:
    """`sending [#########...........] 12.0 KiB of 40.0 KiB  2.9 of 3.4 kB/s (86 %)
    0:10 left` for a transfer; the phase and the time so far otherwise. `rate` is
    bytes per second; `line_rate` bit/s (8N1: a byte is 10 bits)."""
    text = f"{phase:<10} {_duration(elapsed):>5}"
    if sent is None or not total:
        return text
    share = min(1.0, sent / total)
    filled = int(share * WIDTH)
    text += f" [{'#' * filled}{'.' * (WIDTH - filled)}] {_size(sent)} of {_size(total)}"
    if rate:
        text += f"  {rate / 1000:.1f}"
        if line_rate:
            text += f" of {line_rate / 10_000:.1f} kB/s ({rate * 10 / line_rate:.0%})"
        else:
            text += " kB/s"
        if sent < total:
            text += f"  {_duration((total - sent) / rate)} left"
    return text


class CallProgress:
    """The `progress` callback of `call_centre` for a person watching."""

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay: float = DELAY,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.delay = delay
        self.started = clock()
        self.phase = "starting"
        self.line_rate: int | None = None
        self.sent: int | None = None
        self.total: int | None = None
        self.rate: float | None = None
        self._drawn = False
        self._last_plain = -PLAIN_EVERY

    def __call__(self, step: str, **fields: Any) -> None:
        now = self.clock()
        self.phase = PHASES.get(step, self.phase)
        if step == "connected":
            self.line_rate = fields.get("rate")
        if step == "sending":
            self.sent, self.total = fields.get("sent"), fields.get("total")
            self.rate = fields.get("rate")
            if self.tty:
                self._draw(now)
            elif now - self._last_plain >= PLAIN_EVERY:
                self._last_plain = now
                self._plain(now, f"sent {self.sent} of {self.total} bytes")
            return
        if step in ("transfer", "hanging up"):
            self.sent = self.total = self.rate = None
        text = STEPS.get(step, step)
        try:
            with_fields = text.format_map(_Missing(fields))
        except (ValueError, TypeError):  # a field missing where a number was expected
            with_fields = step
        if self.tty:
            self._clear()
            self._plain(now, with_fields)
            self._draw(now)
        else:
            self._plain(now, with_fields)

    def tick(self) -> None:
        """Redraw (the time so far moves on while nothing else happens)."""
        if self.tty:
            self._draw(self.clock())

    def done(self) -> None:
        if self.tty:
            self._clear()

    def _plain(self, now: float, text: str) -> None:
        self.stream.write(f"[{now - self.started:6.1f} s] {text}\n")
        self.stream.flush()

    def _draw(self, now: float) -> None:
        if now - self.started < self.delay:
            return
        line = status_line(
            self.phase,
            now - self.started,
            sent=self.sent,
            total=self.total,
            rate=self.rate,
            line_rate=self.line_rate,
        )
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


async def with_ticks(progress: CallProgress, work: Awaitable[T], every: float = 0.5) -> T:
    """Await `work` while the status line is redrawn every `every` seconds."""

    async def ticking() -> None:
        while True:
            await asyncio.sleep(every)
            progress.tick()

    ticker = asyncio.ensure_future(ticking())
    try:
        return await work
    finally:
        ticker.cancel()
        progress.done()


class _Missing(dict[str, Any]):
    """A step's text with a field the dialer did not give reads `?`, never raises."""

    def __missing__(self, key: str) -> str:
        return "?"
