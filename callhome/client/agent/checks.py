"""The check engine: readings and times in, state changes out (sans-IO).

Each check (one `Reading.check` name) has a *confirmed* state and a *reported* state.
A reading gives a *raw* state: the collector's own verdict, or the configured thresholds
applied to its value with hysteresis (WARNING is entered at `warning` and left only
below `warning_clear`; the same for CRITICAL). A raw problem state becomes the confirmed
state once it has lasted `for` (a collector's UNKNOWN once it has lasted
`unknown_after`: a collector that fails once is not news, one that stays blind is);
OK is confirmed at once.

Flap detection is Nagios's: the raw states of the last 21 results, the changes between
them weighted from 0.75 (oldest) to 1.25 (newest), as a percentage of the 20 possible
changes. At or above `flap_high` the check is flapping; it stops below `flap_low`.
While flapping the check reports one "flapping" event and nothing else until one
"stable" event that carries the state it settled in.

Only changes of the reported state become events, so every problem event is followed by
exactly one recovery, in order: the events of a check form a chain (each event's
`previous` is the state the one before left it in).

`Engine.snapshot` is all of that as JSON-ready data (the history included) and
`Engine.load` takes it back: an engine rebuilt from a snapshot gives the same events as
one that never stopped, so a restart of the agent neither ends a flapping nor starts one.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .collectors.base import Reading, State

HISTORY = 21
"""Results in the flap window (Nagios's MAX_STATE_HISTORY_ENTRIES)."""
_LOW_CURVE, _HIGH_CURVE = 0.75, 1.25


class Direction(enum.Enum):
    ABOVE = "above"
    """A problem when the value is high (temperatures, used space)."""
    BELOW = "below"
    """A problem when the value is low (fan speeds, free space)."""


@dataclass(frozen=True)
class Thresholds:
    warning: float | None = None
    critical: float | None = None
    warning_clear: float | None = None
    """Where WARNING is left (defaults to `warning`: no hysteresis)."""
    critical_clear: float | None = None
    direction: Direction = Direction.ABOVE

    def problems(self) -> list[str]:
        """What is inconsistent (for the config checker): empty when sound."""
        out = []
        sign = 1 if self.direction is Direction.ABOVE else -1
        for name, enter, leave in (
            ("warning", self.warning, self.warning_clear),
            ("critical", self.critical, self.critical_clear),
        ):
            if leave is not None and enter is None:
                out.append(f"{name}_clear without {name}")
            elif leave is not None and enter is not None and sign * (leave - enter) > 0:
                side = "above" if sign > 0 else "below"
                out.append(f"{name}_clear must not be {side} {name} (it is where {name} is left)")
        if (
            self.warning is not None
            and self.critical is not None
            and sign * (self.warning - self.critical) > 0
        ):
            out.append("warning must come before critical")
        return out

    def evaluate(self, value: float, previous: State) -> State:
        """The raw state of `value`, given the raw state before it (for hysteresis)."""
        if math.isnan(value):
            return State.UNKNOWN

        def beyond(limit: float | None) -> bool:
            if limit is None:
                return False
            return value >= limit if self.direction is Direction.ABOVE else value <= limit

        def still(limit: float | None, clear: float | None) -> bool:
            if limit is None:
                return False
            bound = limit if clear is None else clear
            return value > bound if self.direction is Direction.ABOVE else value < bound

        if beyond(self.critical) or (
            previous is State.CRITICAL and still(self.critical, self.critical_clear)
        ):
            return State.CRITICAL
        if beyond(self.warning) or (
            previous in (State.WARNING, State.CRITICAL) and still(self.warning, self.warning_clear)
        ):
            return State.WARNING
        return State.OK


@dataclass(frozen=True)
class Rule:
    """How readings of the checks of one `[[check]]` table become states."""

    thresholds: Thresholds | None = None
    for_seconds: float = 0.0
    unknown_after: float = 600.0
    flap_low: float = 5.0
    flap_high: float = 20.0
    flap_detection: bool = True

    def hold(self, state: State) -> float:
        if state is State.OK:
            return 0.0
        if state is State.UNKNOWN:
            return self.unknown_after
        return self.for_seconds


class EventType(enum.Enum):
    CHANGE = "change"
    FLAPPING = "flapping"
    STABLE = "stable"


@dataclass(frozen=True)
class CheckEvent:
    check: str
    type: EventType
    state: State
    """The reported state after the event (for FLAPPING: the one it had when it began)."""
    previous: State
    since: float
    """When the raw state that this event reports began."""
    time: float
    text: str = ""
    value: float | None = None
    unit: str | None = None
    flap_percent: float | None = None

    @property
    def is_problem(self) -> bool:
        return self.type is EventType.CHANGE and self.state is not State.OK

    @property
    def is_recovery(self) -> bool:
        return self.state is State.OK and self.previous is not State.OK


@dataclass
class CheckStatus:
    """What the engine knows of one check (also what `agent status` shows)."""

    check: str
    reported: State = State.OK
    reported_since: float = 0.0
    confirmed: State = State.OK
    confirmed_since: float = 0.0
    raw: State = State.OK
    raw_since: float = 0.0
    flapping: bool = False
    flap_percent: float = 0.0
    text: str = ""
    value: float | None = None
    unit: str | None = None
    last_seen: float | None = None
    history: deque[State] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def snapshot(self) -> dict[str, Any]:
        """What a restart needs (`Engine.load`); the last value and text are left out:
        they are the next reading's, and a snapshot that only changes with the states is
        written only when they change."""
        return {
            "check": self.check,
            "state": self.reported.name,
            "since": self.reported_since,
            "confirmed": self.confirmed.name,
            "confirmed_since": self.confirmed_since,
            "raw": self.raw.name,
            "raw_since": self.raw_since,
            "flapping": self.flapping,
            "flap_percent": self.flap_percent,  # as of the last result judged for flapping
            # one letter a result (OWCU): the window of a flapping check changes with
            # every collection, and is written each time
            "history": "".join(state.name[0] for state in self.history),
        }


_INITIALS = {state.name[0]: state for state in State}


def flap_percent(history: Iterable[State]) -> float:
    """Nagios's weighted percent state change over up to 21 results, oldest first."""
    states = list(history)[-HISTORY:]
    changes = 0.0
    for index in range(1, len(states)):
        if states[index] != states[index - 1]:
            # Nagios indexes the full window; a partial window counts as its newest end
            position = index + (HISTORY - len(states))
            changes += (position - 1) * (_HIGH_CURVE - _LOW_CURVE) / (HISTORY - 2) + _LOW_CURVE
    return changes * 100.0 / (HISTORY - 1)


class Engine:
    """All the checks of one device. `observe` takes one collection's readings."""

    def __init__(self, default: Rule = Rule()) -> None:
        self.default = default
        self.checks: dict[str, CheckStatus] = {}

    def restore(self, check: str, state: State, since: float) -> None:
        """What a previous run had reported, so a restart does not report it again."""
        self.checks[check] = CheckStatus(
            check,
            reported=state,
            reported_since=since,
            confirmed=state,
            confirmed_since=since,
            raw=state,
            raw_since=since,
            history=deque([state], maxlen=HISTORY),
        )

    def snapshot(self) -> list[dict[str, Any]]:
        """Every check's state and flap window, JSON-ready, by check name."""
        return [self.checks[name].snapshot() for name in sorted(self.checks)]

    def load(self, item: Mapping[str, Any]) -> None:
        """One check of a `snapshot`. An item of an older agent (only `check`, `state`
        and `since`: what it had reported) is `restore`d. Raises KeyError, ValueError or
        TypeError on an item that is not one."""
        check, state, since = str(item["check"]), State[item["state"]], float(item["since"])
        if "history" not in item:
            self.restore(check, state, since)
            return
        history = [_INITIALS[letter] for letter in str(item["history"])]
        status = CheckStatus(
            check,
            reported=state,
            reported_since=since,
            confirmed=State[item["confirmed"]],
            confirmed_since=float(item["confirmed_since"]),
            raw=State[item["raw"]],
            raw_since=float(item["raw_since"]),
            flapping=bool(item["flapping"]),
            flap_percent=float(item.get("flap_percent", flap_percent(history))),
            history=deque(history, maxlen=HISTORY),
        )
        self.checks[check] = status

    def observe(
        self, now: float, readings: Iterable[Reading], rule: Rule | None = None
    ) -> list[CheckEvent]:
        """One collection's readings (judged by `rule`, that of their `[[check]]`)."""
        events: list[CheckEvent] = []
        for reading in readings:
            event = self._one(now, reading, rule or self.default)
            if event is not None:
                events.append(event)
        return events

    def _one(self, now: float, reading: Reading, rule: Rule) -> CheckEvent | None:
        status = self.checks.get(reading.check)
        if status is None:
            status = self.checks[reading.check] = CheckStatus(
                reading.check, reported_since=now, confirmed_since=now, raw_since=now
            )
        raw = self._raw(rule, reading, status.raw)
        if raw != status.raw:
            status.raw, status.raw_since = raw, now
        status.history.append(raw)
        status.text, status.value, status.unit = reading.text, reading.value, reading.unit
        status.last_seen = now
        if raw != status.confirmed and now - status.raw_since >= rule.hold(raw):
            status.confirmed, status.confirmed_since = raw, status.raw_since
        if rule.flap_detection:
            status.flap_percent = flap_percent(status.history)
            if not status.flapping and status.flap_percent >= rule.flap_high:
                status.flapping = True
                return self._event(status, EventType.FLAPPING, status.reported, now, reading)
            if status.flapping and status.flap_percent < rule.flap_low:
                status.flapping = False
                previous = status.reported
                status.reported, status.reported_since = status.confirmed, status.confirmed_since
                return self._event(status, EventType.STABLE, previous, now, reading)
        if status.flapping or status.confirmed == status.reported:
            return None
        previous = status.reported
        status.reported, status.reported_since = status.confirmed, status.confirmed_since
        return self._event(status, EventType.CHANGE, previous, now, reading)

    @staticmethod
    def _raw(rule: Rule, reading: Reading, previous: State) -> State:
        if reading.state is not None:
            return reading.state
        if reading.value is None:
            return State.UNKNOWN  # nothing to judge by: never OK by default
        if rule.thresholds is None:
            return State.OK  # a value kept for information only
        return rule.thresholds.evaluate(reading.value, previous)

    @staticmethod
    def _event(
        status: CheckStatus, kind: EventType, previous: State, now: float, reading: Reading
    ) -> CheckEvent:
        return CheckEvent(
            check=status.check,
            type=kind,
            state=status.reported,
            previous=previous,
            since=status.reported_since,
            time=now,
            text=reading.text,
            value=reading.value,
            unit=reading.unit,
            flap_percent=round(status.flap_percent, 1),
        )

    def summary(self) -> str:
        """One line for a line test: how many checks in each state, and which are not OK."""
        if not self.checks:
            return "no checks"
        counts = {state: 0 for state in State}
        bad = []
        for status in sorted(self.checks.values(), key=lambda s: s.check):
            counts[status.reported] += 1
            if status.reported is not State.OK or status.flapping:
                bad.append(status.check + (" flapping" if status.flapping else ""))
        parts = [f"{n} {state.name}" for state, n in counts.items() if n]
        line = f"{len(self.checks)} checks: " + ", ".join(parts)
        if bad:
            shown = bad[:4] + ([f"+{len(bad) - 4}"] if len(bad) > 4 else [])
            line += " (" + ", ".join(shown) + ")"
        return line
