"""The discrete-event core under the virtual phone network.

Every delay in the network (ring cadence, dialling, training, guard times, byte
serialisation) is a timer on one `Scheduler`. The scheduler never reads a clock:
whoever drives it passes the current network time to `run_due(now)`. The asyncio
runner maps real time onto network time (optionally scaled); tests drive it by hand
and run a day of ring cadences in microseconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """A heap of timers; `now` only moves forward when `run_due` is called."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        # (when, sequence, timer): the sequence keeps equal times in FIFO order and
        # spares the heap from ever comparing timers themselves.
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def call_at(self, when: float, callback: Callable[[], Any]) -> Timer:
        timer = Timer(max(when, self.now), callback)
        heapq.heappush(self._heap, (timer.when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        return self.call_at(self.now + max(0.0, delay), callback)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def advance_to(self, now: float) -> None:
        """Move the clock without running timers (input arrives at `now`)."""
        if now > self.now:
            self.now = now

    def run_due(self, now: float) -> int:
        """Run every timer due at or before `now`, in order; returns how many ran."""
        ran = 0
        heap = self._heap
        while heap:
            when, _, timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)
                continue
            if when > now:
                break
            heapq.heappop(heap)
            if when > self.now:
                self.now = when
            timer.callback()
            ran += 1
        self.advance_to(now)
        return ran

    def run_until_idle(self, limit: float) -> None:
        """Run all timers up to network time `limit` (for tests and scripted runs)."""
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > limit:
                break
            self.run_due(deadline)
        self.advance_to(limit)
