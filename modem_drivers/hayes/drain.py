"""When has the modem taken the last byte the driver wrote? (issue 18)

The escape's guard time is silence *at the modem's DTE interface*: it starts when the
modem has accepted the last data byte, not when the driver handed it to the port. Bytes
can wait in three places after `write()`: the transport's buffer (asyncio), the kernel's
tty buffer (about 4 KiB on a UART, about 20 KiB on a pty) and, while the modem holds CTS
low, the UART itself. On a real serial port with RTS/CTS the port says when it is empty
(`TIOCOUTQ` and CTS high). A pty, a TCP port or a terminal server cannot say, so the
driver keeps its own account: the modem cannot send faster than the line rate, so the
bytes it was given are gone from its buffer no earlier than `LineAccount.drained_at`.
Waiting for that moment is conservative by at most the modem's own buffer (a few KiB of
line time). The line can run slower than its rate (V.42 retransmissions, a retrain, or a
virtual modem whose process lost the CPU), so the account also heeds what the driver sees
of back-pressure: while its own port buffer still holds bytes, the port below it is full
(it holds as much as it took before back-pressure first showed), and all of that is still
to pass the modem (`LineAccount.observed`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LineAccount:
    """The driver's own account of the modem's transmit side during a call (sans-IO)."""

    rate: int = 0
    """Line rate in bit/s (8N1: 10 bits a byte); 0 while no call is up."""
    drained_at: float = 0.0
    """When everything written so far has left the modem, at the earliest."""
    written: int = 0
    line_time: float = 1.0
    """Seconds of the caller's clock per second of line time (see `Timings.line_time`)."""
    port_capacity: int = 0
    """Bytes the port below the driver's buffer (kernel tty or socket buffer, modem) took
    before back-pressure showed, the most seen; kept across calls (it is the port's)."""

    def start(self, rate: int | None, now: float, line_time: float = 1.0) -> None:
        self.rate = max(0, rate or 0)
        self.drained_at = now
        self.written = 0
        self.line_time = line_time

    def stop(self) -> None:
        """The call is gone: what the modem held is lost, nothing more will drain."""
        self.rate = 0
        self.drained_at = 0.0

    def wrote(self, count: int, now: float) -> None:
        """`count` bytes handed to the port at `now` (data mode)."""
        self.written += count
        if self.rate > 0:
            seconds = count * 10 / self.rate * self.line_time
            self.drained_at = max(self.drained_at, now) + seconds

    def accepted(self, count: int) -> None:
        """The port took `count` bytes of a write before the driver's buffer filled."""
        self.port_capacity = max(self.port_capacity, count)

    def observed(self, buffered: int, now: float) -> None:
        """At `now` the driver's own buffer still held `buffered` bytes: the port below
        is full, so the modem has `buffered + port_capacity` bytes still to take, however
        slowly the line has run so far."""
        if self.rate > 0 and buffered > 0:
            seconds = (buffered + self.port_capacity) * 10 / self.rate * self.line_time
            self.drained_at = max(self.drained_at, now + seconds)

    def remaining(self, now: float) -> float:
        """Seconds until the modem has sent what it was given, by this account."""
        return max(0.0, self.drained_at - now)


@dataclass(frozen=True)
class PortOutput:
    """What the port can say about bytes not yet taken by the modem."""

    buffered: int
    """Bytes in the driver's transport buffer."""
    queued: int | None
    """Bytes in the kernel's output queue (`TIOCOUTQ`), None where the port cannot say
    (a pty always says 0, so it counts as cannot-say)."""
    cts: bool | None
    """CTS, None where the port has no such line."""

    @property
    def knows(self) -> bool:
        """True when the port itself can tell that the modem took everything."""
        return self.queued is not None and self.cts is not None

    @property
    def empty(self) -> bool:
        return self.buffered == 0 and not self.queued and self.cts is not False


def modem_has_taken_all(output: PortOutput, account: LineAccount, now: float) -> bool:
    """Has the modem accepted the last byte written? The port's word where it can give
    one; the driver's line-rate account where it cannot."""
    if not output.empty:
        return False
    if output.knows:
        return True
    return account.remaining(now) <= 0
