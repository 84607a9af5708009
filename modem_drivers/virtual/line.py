"""The analogue line between two connected virtual modems.

A `LineModel` says what a call's line is like; a `LineDirection` carries bytes one way
through it: it serialises them at 10 bit times a byte (8N1 at the DCE rate), delays
them by the one-way latency, flips bits at the configured error rate and in bursts,
and, with V.42 on, turns each would-be error into a stall (the modems retransmit
internally, so the DTE sees no errors but a pause).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .sim import Scheduler, Timer

MIN_RATE = 300
MAX_RATE = 33600


@dataclass(frozen=True)
class LineModel:
    rate: int = 33600
    """Highest DCE rate the line supports (bit/s); the call runs at the lowest of this
    and both modems' maxima."""
    latency: float = 0.05
    """One-way delay in seconds."""
    ber: float = 0.0
    """Independent bit error rate (ignored with V.42, which turns errors into stalls)."""
    burst_rate: float = 0.0
    """Error bursts per second of line time (each direction)."""
    burst_bits: int = 64
    """Length of a burst; each bit inside it flips with probability 1/2."""
    training_time: float = 3.0
    """Seconds from answer to CONNECT (carrier detection, training, V.42 negotiation)."""
    drop_at: float | None = None
    """Carrier drops this many seconds after CONNECT."""
    drop_after_bytes: int | None = None
    """Carrier drops after this many bytes have crossed the line (both directions)."""
    drop_rate: float = 0.0
    """Random carrier drops per hour of connected time."""
    v42: bool = True
    """V.42 LAPM between the modems: no bit errors reach the DTE, only stalls."""
    v42_stall: float = 0.25
    """With V.42, each corrupted LAPM frame costs this long a stall."""
    stall_rate: float = 0.0
    """Retrains per hour: the line carries nothing in either direction for stall_time."""
    stall_time: float = 5.0

    def __post_init__(self) -> None:
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise ValueError(f"rate must be between {MIN_RATE} and {MAX_RATE} bit/s")
        for name in (
            "latency",
            "ber",
            "burst_rate",
            "training_time",
            "drop_rate",
            "v42_stall",
            "stall_rate",
            "stall_time",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.ber >= 0.5:
            raise ValueError("ber must be below 0.5")
        if self.burst_bits < 1:
            raise ValueError("burst_bits must be at least 1")

    def replace(self, **changes: Any) -> LineModel:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


class LineDirection:
    """One direction of a connected call: a transmit buffer drained at the line rate."""

    def __init__(
        self,
        scheduler: Scheduler,
        model: LineModel,
        rate: int,
        rng: random.Random,
        deliver: Callable[[bytes], None],
        on_departed: Callable[[int], None],
        *,
        buffer_size: int = 2048,
        tick: float = 0.02,
    ) -> None:
        self._scheduler = scheduler
        self._model = model
        self.rate = rate
        self._rng = rng
        self._deliver = deliver
        self._on_departed = on_departed
        self.buffer_size = buffer_size
        self._buffer = bytearray()
        self._quantum = max(1, int(rate / 10 * tick))
        self._sending: Timer | None = None
        self._sending_size = 0
        self._in_flight: list[Timer] = []
        self._stalled_until = 0.0
        self._line_time = 0.0
        self._bits_to_error = self._draw_error_gap()
        self._next_burst = self._draw_burst_gap()
        self.closed = False
        self.bytes_sent = 0
        self.bits_flipped = 0
        self.stall_seconds = 0.0

    # -- the transmit side -------------------------------------------------------------

    def space(self) -> int:
        if self.closed:
            return 0
        return max(0, self.buffer_size - len(self._buffer) - self._sending_size)

    def send(self, data: bytes) -> int:
        """Queue bytes for transmission; returns how many fitted in the buffer."""
        if self.closed:
            return 0
        accepted = data[: self.space()]
        self._buffer += accepted
        self._start()
        return len(accepted)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def stall(self, seconds: float) -> None:
        """Stop transmitting for `seconds` (a retrain); bytes in the buffer wait."""
        until = self._scheduler.now + seconds
        if until > self._stalled_until:
            self.stall_seconds += until - max(self._stalled_until, self._scheduler.now)
            self._stalled_until = until

    def close(self) -> None:
        """Carrier gone: nothing more departs and nothing in flight arrives."""
        self.closed = True
        self._buffer.clear()
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
            self._sending_size = 0
        for timer in self._in_flight:
            timer.cancel()
        self._in_flight.clear()

    def _start(self) -> None:
        if self._sending is not None or not self._buffer or self.closed:
            return
        now = self._scheduler.now
        if self._stalled_until > now:
            self._sending = self._scheduler.call_at(self._stalled_until, self._resume)
            return
        count = min(len(self._buffer), self._quantum)
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        duration = count * 10 / self.rate
        self._sending_size = count
        self._sending = self._scheduler.call_later(duration, lambda: self._departed(chunk))

    def _resume(self) -> None:
        self._sending = None
        self._start()

    def _departed(self, chunk: bytes) -> None:
        self._sending = None
        self._sending_size = 0
        self._line_time += len(chunk) * 10 / self.rate
        chunk, errors = self._impair(chunk)
        if errors and self._model.v42:
            # LAPM hides the damage: the frame is resent, which the DTE sees as a pause.
            self.stall(self._model.v42_stall * errors)
        arrival = self._scheduler.now + self._model.latency
        if self._stalled_until > self._scheduler.now:
            arrival += self._stalled_until - self._scheduler.now
        timer = self._scheduler.call_at(arrival, lambda: self._arrive(chunk, timer))
        self._in_flight.append(timer)
        self.bytes_sent += len(chunk)
        self._start()
        self._on_departed(len(chunk))

    def _arrive(self, chunk: bytes, timer: Timer) -> None:
        if self._in_flight and self._in_flight[0] is timer:
            self._in_flight.pop(0)
        else:
            self._in_flight.remove(timer)
        if not self.closed:
            self._deliver(chunk)

    # -- impairments ---------------------------------------------------------------------

    def _draw_error_gap(self) -> float:
        p = self._model.ber
        if p <= 0:
            return math.inf
        u = self._rng.random()
        return math.floor(math.log1p(-u) / math.log1p(-p))

    def _draw_burst_gap(self) -> float:
        if self._model.burst_rate <= 0:
            return math.inf
        return self._line_time + self._rng.expovariate(self._model.burst_rate)

    def _impair(self, chunk: bytes) -> tuple[bytes, int]:
        """Apply random bit errors and bursts; returns the bytes and how many were hit."""
        bits = len(chunk) * 8
        hits: list[int] = []
        while self._bits_to_error < bits:
            hits.append(int(self._bits_to_error))
            gap = self._draw_error_gap()
            self._bits_to_error += gap + 1
        self._bits_to_error -= bits
        if self._line_time >= self._next_burst:
            start = self._rng.randrange(bits)
            for bit in range(start, min(bits, start + self._model.burst_bits)):
                if self._rng.random() < 0.5:
                    hits.append(bit)
            self._next_burst = self._draw_burst_gap()
        if not hits:
            return chunk, 0
        if self._model.v42:
            return chunk, len({h // 8 for h in hits})
        damaged = bytearray(chunk)
        for bit in hits:
            damaged[bit // 8] ^= 1 << (bit % 8)
        self.bits_flipped += len(hits)
        return bytes(damaged), len(hits)
