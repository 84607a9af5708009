"""One retry policy for everything that tries again: the dialer's rounds and the bank's
port reopen (the driver's `reopen(retry_delays)` takes one too: it is iterable).

Exponential growth to a cap, with jitter so that a thousand devices that lost the line at
the same moment do not redial in step (AWS Architecture Blog, "Exponential Backoff and
Jitter": *full* jitter draws uniformly in [0, delay]; *decorrelated* jitter draws in
[initial, 3 x previous], capped). Pure: it reads no clock; the random source is a
parameter so tests replay it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Jitter = Literal["none", "full", "decorrelated"]


@dataclass
class Backoff:
    """Delays in seconds: `next()` gives the wait before the next attempt; `reset()` after
    a success. Iterating gives at most `attempts` delays (forever when None)."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: Jitter = "decorrelated"
    attempts: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _previous: float = field(default=0.0, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("initial", "factor", "cap"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"backoff {name} must be a finite number >= 0, not {value!r}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, not {self.factor!r}")
        if self.cap < self.initial:
            raise ValueError(f"backoff cap {self.cap!r} is below its initial {self.initial!r}")

    @property
    def count(self) -> int:
        """Delays handed out since the last reset."""
        return self._count

    def next(self) -> float:
        self._count += 1
        if self.jitter == "decorrelated":
            low = self.initial
            high = max(low, min(self.cap, 3 * (self._previous or self.initial)))
            delay = self.rng.uniform(low, high)
            self._previous = delay
            return delay
        # the exponent is bounded so attempt 10,000 neither overflows nor waits past the cap
        ceiling = min(self.cap, self.initial * self.factor ** min(self._count - 1, 64))
        return self.rng.uniform(0, ceiling) if self.jitter == "full" else ceiling

    def reset(self) -> None:
        self._previous = 0.0
        self._count = 0

    def __iter__(self) -> Iterator[float]:
        while self.attempts is None or self._count < self.attempts:
            yield self.next()

    def scaled(self, scale: float) -> Backoff:
        """The same policy with every time multiplied (the demo's and tests' time scale)."""
        return Backoff(
            self.initial * scale,
            self.factor,
            self.cap * scale,
            self.jitter,
            self.attempts,
            self.rng,
        )
