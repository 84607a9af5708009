"""When the agent calls (sans-IO): events and times in, "call by" times out.

CRITICAL calls now. WARNING (and a lasting UNKNOWN, and the start of flapping) waits at
most `warning_delay` or rides with an earlier call. Recoveries and information never
call by themselves: they ride with the next call. Per check, at most `throttle_events`
events in `throttle_window` go out; past that the policy counts what it holds back and
the next call carries one summary per check with the count and the latest state, so
nothing is dropped silently.

Line tests: every `test_interval` with a random spread of ±`test_spread` (a fleet
started together does not call together), or daily at `test_at` in the time zone
`test_zone`. A test missed while the system was off runs `catch_up_delay` after start.
A failed call is retried after the shared backoff; a successful one resets it.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from typing import Any

from ...backoff import Backoff
from .checks import CheckEvent, EventType
from .collectors.base import State


class Urgency(enum.IntEnum):
    NEXT_CALL = 0
    BATCH = 1
    NOW = 2


def urgency(event: CheckEvent) -> Urgency:
    if event.type is EventType.FLAPPING:
        return Urgency.BATCH
    if event.state is State.CRITICAL:
        return Urgency.NOW
    if event.state in (State.WARNING, State.UNKNOWN):
        return Urgency.BATCH
    return Urgency.NEXT_CALL


@dataclass(frozen=True)
class PolicyConfig:
    warning_delay: float = 3600.0
    throttle_events: int = 30
    throttle_window: float = 7200.0
    test_interval: float = 86400.0
    test_spread: float = 0.1
    test_at: clock_time | None = None
    """Daily at this wall-clock time in `test_zone` instead of an interval."""
    test_zone: str = "UTC"
    catch_up_delay: float = 120.0
    retry: Backoff = field(
        default_factory=lambda: Backoff(300.0, 2.0, 3600.0, "decorrelated"), compare=False
    )


@dataclass(frozen=True)
class CallPlan:
    """What the next call must carry besides what the spool holds."""

    line_test: bool
    summaries: list[dict[str, Any]]


@dataclass
class _Throttle:
    sent: deque[float] = field(default_factory=deque)
    held: int = 0
    first_held: float | None = None
    latest: CheckEvent | None = None


class CallPolicy:
    def __init__(
        self,
        config: PolicyConfig,
        rng: random.Random,
        *,
        now: float,
        last_test: float | None,
        pending: bool = False,
    ) -> None:
        """`last_test`: when the last line test reached the centre (persisted by the
        daemon); `pending`: the spool already holds messages (a previous run's)."""
        self.config = config
        self.rng = rng
        self.last_test = last_test
        self.call_by: float | None = now if pending else None
        self.retry_at: float | None = None
        self.retry = config.retry
        self.test_interval = config.test_interval
        self.throttles: dict[str, _Throttle] = {}
        self.in_call = False
        self._during: float | None = None
        """What was wanted while a call was on: that call may not carry it."""
        self.next_test = self._schedule(now, starting=True)

    # events -------------------------------------------------------------------------

    def admit(self, event: CheckEvent, now: float) -> bool:
        """Whether `event` goes into the spool now (False: held back by the throttle and
        counted for the summary). Updates when the next call is due."""
        throttle = self.throttles.setdefault(event.check, _Throttle())
        while throttle.sent and throttle.sent[0] <= now - self.config.throttle_window:
            throttle.sent.popleft()
        if len(throttle.sent) >= self.config.throttle_events:
            throttle.held += 1
            throttle.latest = event
            if throttle.first_held is None:
                throttle.first_held = now
            return False
        throttle.sent.append(now)
        self._wanted(urgency(event), now)
        return True

    def queued(self, now: float, urgent: bool = False) -> None:
        """Something else entered the spool (a person's `send --no-call`, a previous
        run's messages): it goes with the next call, or now if `urgent`."""
        self._wanted(Urgency.NOW if urgent else Urgency.BATCH, now)

    def _wanted(self, level: Urgency, now: float) -> None:
        if level is Urgency.NEXT_CALL:
            return
        by = now if level is Urgency.NOW else now + self.config.warning_delay
        self.call_by = by if self.call_by is None else min(self.call_by, by)
        if self.in_call:
            self._during = by if self._during is None else min(self._during, by)

    # calls --------------------------------------------------------------------------

    def due(self) -> float:
        """When the next call should start (never before a pending retry)."""
        moment = self.next_test if self.call_by is None else min(self.call_by, self.next_test)
        return moment if self.retry_at is None else max(moment, self.retry_at)

    def plan(self, now: float) -> CallPlan:
        """At the start of a call: whether it carries a line test, and the throttle
        summaries to queue (each held-back count is handed out once)."""
        summaries = []
        for check, throttle in sorted(self.throttles.items()):
            if throttle.held and throttle.latest is not None:
                latest = throttle.latest
                summaries.append(
                    {
                        "check": check,
                        "held": throttle.held,
                        "first_held": throttle.first_held,
                        "state": latest.state.name,
                        "since": latest.since,
                        "text": latest.text,
                    }
                )
                throttle.held, throttle.first_held, throttle.latest = 0, None, None
        self.in_call, self._during = True, None
        return CallPlan(line_test=now >= self.next_test, summaries=summaries)

    def finished(self, now: float, ok: bool, plan: CallPlan) -> None:
        self.in_call = False
        if not ok:
            self.retry_at = now + self.retry.next()
            self.call_by = now if self.call_by is None else self.call_by
            return
        self.retry.reset()
        self.retry_at = None
        self.call_by, self._during = self._during, None
        if plan.line_test:
            self.last_test = now
            self.next_test = self._schedule(now)

    def abandoned(self) -> None:
        """The call planned was not one (an answered caller that was not the centre):
        no retry, no test recorded; what was wanted meanwhile is still wanted."""
        self.in_call = False
        if self._during is not None:
            self.call_by = self._during if self.call_by is None else min(self.call_by, self._during)
        self._during = None

    def adopt_interval(self, seconds: float, now: float) -> bool:
        """The centre says how often it expects a test: True when that changed it."""
        if seconds <= 0 or seconds == self.test_interval or self.config.test_at is not None:
            return False
        self.test_interval = seconds
        self.next_test = self._schedule(now)
        return True

    # the line-test schedule ---------------------------------------------------------

    def _schedule(self, now: float, starting: bool = False) -> float:
        soon = now + self.config.catch_up_delay
        if self.last_test is None:
            return soon  # never tested: prove the line now
        if self.config.test_at is not None:
            missed = _previous_daily(now, self.config.test_at, self.config.test_zone)
            if starting and self.last_test < missed:
                return soon
            return _next_daily(max(now, self.last_test), self.config.test_at, self.config.test_zone)
        spread = self.config.test_spread
        moment = self.last_test + self.test_interval * (1 + self.rng.uniform(-spread, spread))
        if moment <= now:
            return soon if starting else now
        return moment


def _next_daily(after: float, at: clock_time, zone: str) -> float:
    """The first `at` in `zone` strictly after `after` (POSIX seconds)."""
    from zoneinfo import ZoneInfo  # only for `test_at`: see config.py

    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(after, tz)
    for days in range(0, 3):
        day = (local + timedelta(days=days)).date()
        candidate = datetime.combine(day, at, tz).timestamp()
        if candidate > after:
            return candidate
    raise AssertionError("a daily time always comes within three days")


def _previous_daily(before: float, at: clock_time, zone: str) -> float:
    """The last `at` in `zone` at or before `before`."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    local = datetime.fromtimestamp(before, tz)
    for days in range(0, 3):
        day = (local - timedelta(days=days)).date()
        candidate = datetime.combine(day, at, tz).timestamp()
        if candidate <= before:
            return candidate
    raise AssertionError("a daily time always came within three days")
