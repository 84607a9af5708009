"""The supervision engine: which devices are late, down, back; sans-IO.

Times in, events out: the engine never reads a clock, sleeps or does I/O. The shell
feeds it what the bank stored (`message`) and the operator's commands (`start_test`,
`retire`), asks `next_wakeup()` when something is next due, and calls `advance(now)`
then. A year of schedules therefore runs in seconds in the tests.

Every device has ONE timer: the next moment anything about it is due (its deadline,
the end of its grace, the end of a test, a path's deadline, the end of a storm). Timers
live in one heap with lazy deletion: re-arming a device pushes a new entry and leaves
the old one to be skipped when it surfaces. A heap key is one int, ``due_ms << 24 |
index``, and per-device values live in typed arrays, so a million devices fit in a
few hundred bytes each (benchmarks/supervision_scale.py).

The state machine, in `TRANSITIONS` (h11's way: one table says what may follow what):

    new ──message──▶ up ──deadline──▶ late ──grace──▶ down ──message──▶ restored
     │                ▲                 │                                  │
     └──deadline──▶ late                └──message──▶ up ◀───message───────┘
    any ──start_test──▶ on_test ──test_end──▶ up | late (overdue: a fresh grace)
    any ──retire──▶ retired (no timer, nothing more)
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_INDEX_BITS = 24
_INDEX_MASK = (1 << _INDEX_BITS) - 1
MAX_DEVICES = 1 << _INDEX_BITS
NO_TIMER = -1


class State(enum.IntEnum):
    NEW = 0
    UP = 1
    LATE = 2
    DOWN = 3
    RESTORED = 4
    ON_TEST = 5
    RETIRED = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


class Trigger(enum.Enum):
    MESSAGE = "message"
    DEADLINE = "deadline"
    GRACE = "grace"
    TEST_START = "test_start"
    TEST_END = "test_end"
    RETIRE = "retire"


_SUPERVISED = (State.NEW, State.UP, State.LATE, State.DOWN, State.RESTORED)

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.NEW, Trigger.MESSAGE): State.UP,
    (State.UP, Trigger.MESSAGE): State.UP,
    (State.LATE, Trigger.MESSAGE): State.UP,
    (State.DOWN, Trigger.MESSAGE): State.RESTORED,
    (State.RESTORED, Trigger.MESSAGE): State.UP,
    (State.ON_TEST, Trigger.MESSAGE): State.ON_TEST,
    (State.NEW, Trigger.DEADLINE): State.LATE,
    (State.UP, Trigger.DEADLINE): State.LATE,
    (State.RESTORED, Trigger.DEADLINE): State.LATE,
    (State.LATE, Trigger.GRACE): State.DOWN,
    **{(state, Trigger.TEST_START): State.ON_TEST for state in (*_SUPERVISED, State.ON_TEST)},
    # TEST_END's target depends on the deadline (up, or late with a fresh grace)
    **{(state, Trigger.RETIRE): State.RETIRED for state in (*_SUPERVISED, State.ON_TEST)},
}
"""Every allowed change; anything else is a bug (`LocalProtocolError`-style)."""


class TransitionError(Exception):
    """A change the table does not allow (a bug of the caller or the engine)."""


def transition(state: State, trigger: Trigger) -> State:
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise TransitionError(f"{trigger.value} is not allowed in state {state.label}") from None


# -- schedules --------------------------------------------------------------------------


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class DailySchedule:
    """A device that calls once a day at a local time in an IANA zone ("03:00
    Europe/Paris"). Its deadline is the first slot more than `lead` after its last
    message: a message up to `lead` before a slot (or any time after it) counts for that
    slot, so an early test does not make the device late, and a stray report in the
    afternoon does not excuse the next night's test."""

    at: time
    zone: str
    lead: float = 3600.0

    @classmethod
    def parse(cls, text: str, lead: float = 3600.0) -> DailySchedule:
        parts = text.split()
        if parts and parts[0] == "daily":
            parts = parts[1:]
        if len(parts) != 2:
            raise ScheduleError(f"{text!r}: expected 'daily HH:MM Zone/Name'")
        try:
            at = time.fromisoformat(parts[0])
        except ValueError:
            raise ScheduleError(f"{text!r}: {parts[0]!r} is not a time of day (HH:MM)") from None
        try:
            ZoneInfo(parts[1])
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"{text!r}: unknown time zone {parts[1]!r}") from None
        return cls(at, parts[1], lead)

    @property
    def text(self) -> str:
        return f"daily {self.at.strftime('%H:%M')} {self.zone}"

    def next_slot(self, after: float) -> float:
        """The first slot strictly later than `after` + `lead`."""
        zone = ZoneInfo(self.zone)
        start = after + self.lead
        day = datetime.fromtimestamp(start, zone).date()
        for offset in range(3):
            slot = datetime.combine(day + timedelta(days=offset), self.at, zone).timestamp()
            if slot > start:
                return slot
        raise AssertionError("a daily slot within three days")  # pragma: no cover


# -- what the engine tells -----------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    device: str
    at: float


@dataclass(frozen=True)
class Late(Event):
    deadline: float


@dataclass(frozen=True)
class Down(Event):
    deadline: float
    """When the device was due; `at` - `deadline` is the grace (plus any lateness)."""
    last_seen: float | None
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class LateCleared(Event):
    """A late device called inside its grace: no alert was raised."""


@dataclass(frozen=True)
class Restored(Event):
    down_since: float


@dataclass(frozen=True)
class PathFailed(Event):
    path: str
    last_heard: float
    working: tuple[str, ...]
    """The paths that are still heard from."""


@dataclass(frozen=True)
class PathRestored(Event):
    path: str


@dataclass(frozen=True)
class SkewDetected(Event):
    skew: float
    """Device time minus the centre's, in seconds."""


@dataclass(frozen=True)
class SkewCleared(Event):
    skew: float


@dataclass(frozen=True)
class StormStarted(Event):
    messages: int
    window: float


@dataclass(frozen=True)
class StormEnded(Event):
    messages: int
    """Messages the device sent during the storm (all of them stored)."""


@dataclass(frozen=True)
class TestStarted(Event):
    __test__ = False  # not a pytest class
    until: float


@dataclass(frozen=True)
class TestEnded(Event):
    __test__ = False
    started: float
    messages: int
    """Messages received during the test."""
    missed: bool
    """Its deadline passed during the test (it would have been late)."""
    state: State
    """Where supervision resumed."""


@dataclass(frozen=True)
class Retired(Event):
    pass


# -- configuration and persistence ---------------------------------------------------------


@dataclass(frozen=True)
class EngineConfig:
    skew_bound: float = 300.0
    """Device time further than this from the centre's is a trouble of the device."""
    storm_threshold: int = 100
    """More messages than this within `storm_window` is a storm (0: never)."""
    storm_window: float = 60.0
    storm_quiet: float = 600.0
    """A storm ends after this long without a message."""


@dataclass
class DeviceRecord:
    """What the store keeps of one device's supervision, so that a restart neither
    loses nor repeats an alert."""

    name: str
    interval: float
    grace: float
    state: State = State.NEW
    since: float = 0.0
    """When the device entered `state` (for late: when its grace started)."""
    last: float = 0.0
    """Its last counting message (for a new device: when it was enrolled)."""
    line_tests_only: bool = False
    schedule: str | None = None
    paths: dict[str, float] = field(default_factory=dict)
    failed_paths: set[str] = field(default_factory=set)
    skewed: bool = False
    test_started: float | None = None
    test_until: float | None = None
    test_messages: int = 0
    test_missed: bool = False
    test_resume: State = State.NEW
    """The state supervision was in when the test began (shown afterwards)."""
    test_resume_since: float = 0.0
    storm_last: float | None = None
    storm_messages: int = 0


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    state: State
    since: float
    last: float | None
    deadline: float | None
    """When it is next due (late from then on), or None."""
    alert_at: float | None
    """When it goes down if nothing comes."""
    interval: float
    grace: float
    schedule: str | None
    paths: Mapping[str, float]
    failed_paths: frozenset[str]
    skewed: bool
    storming: bool
    test_until: float | None
    line_tests_only: bool = False


@dataclass
class _Test:
    started: float
    until: float
    resume: State
    resume_since: float
    messages: int = 0
    missed: bool = False


_LINE_TESTS_ONLY = 1
_SKEWED = 2
_HEARD = 4
"""Has sent a counting message (else `last` is its enrolment)."""


class Engine:
    """Supervision of every device; see the module's docstring."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._state = bytearray()
        self._flags = bytearray()
        self._since = array("d")
        self._last = array("d")
        self._interval = array("d")
        self._grace = array("d")
        self._due = array("q")
        self._window_start = array("d")
        self._window_count = array("I")
        # sparse: only the few devices that have them
        self._schedules: dict[int, DailySchedule] = {}
        self._paths: dict[int, dict[str, float]] = {}
        self._failed: dict[int, set[str]] = {}
        self._tests: dict[int, _Test] = {}
        self._storms: dict[int, list[float]] = {}  # [last message, messages]
        self._heap: list[int] = []
        self._heapify = False
        self._dirty: set[int] = set()

    # -- devices ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def names(self) -> list[str]:
        return list(self._names)

    @property
    def index(self) -> Mapping[str, int]:
        """Device name -> its number here (live: grows as devices are added)."""
        return self._index

    def add(
        self,
        name: str,
        *,
        interval: float,
        grace: float,
        enrolled: float,
        schedule: DailySchedule | None = None,
        line_tests_only: bool = False,
    ) -> None:
        """Supervise a newly enrolled device (state new, due one interval from now)."""
        self.load(
            DeviceRecord(
                name,
                interval,
                grace,
                since=enrolled,
                last=enrolled,
                schedule=schedule.text if schedule else None,
                line_tests_only=line_tests_only,
            ),
            schedule_lead=schedule.lead if schedule else 3600.0,
        )
        self._dirty.add(self._index[name])

    def load(self, record: DeviceRecord, *, schedule_lead: float = 3600.0) -> None:
        """Take a device as the store kept it. Timers are pushed unsorted and heapified
        once, so that loading a million devices is one O(n) pass."""
        if record.name in self._index:
            i = self._index[record.name]
        else:
            i = len(self._names)
            if i >= MAX_DEVICES:
                raise ValueError(f"more than {MAX_DEVICES} devices")
            self._names.append(record.name)
            self._index[record.name] = i
            self._state.append(0)
            self._flags.append(0)
            for column in (self._since, self._last, self._interval, self._grace):
                column.append(0.0)
            self._due.append(NO_TIMER)
            self._window_start.append(-math.inf)
            self._window_count.append(0)
        self._state[i] = record.state
        self._since[i] = record.since
        self._last[i] = record.last
        self._interval[i] = record.interval
        self._grace[i] = record.grace
        flags = 0
        if record.line_tests_only:
            flags |= _LINE_TESTS_ONLY
        if record.skewed:
            flags |= _SKEWED
        if record.state is not State.NEW or record.paths:
            flags |= _HEARD
        self._flags[i] = flags
        self._pop_sparse(i)
        if record.schedule:
            self._schedules[i] = DailySchedule.parse(record.schedule, schedule_lead)
        if record.paths:
            self._paths[i] = dict(record.paths)
        if record.failed_paths:
            self._failed[i] = set(record.failed_paths)
        if record.test_until is not None:
            self._tests[i] = _Test(
                record.test_started if record.test_started is not None else record.since,
                record.test_until,
                record.test_resume,
                record.test_resume_since,
                record.test_messages,
                record.test_missed,
            )
        if record.storm_last is not None:
            self._storms[i] = [record.storm_last, float(record.storm_messages)]
        due = self._next_due(i)
        self._due[i] = NO_TIMER if due is None else _ms(due)
        if due is not None:
            self._heap.append(self._due[i] << _INDEX_BITS | i)
            self._heapify = True

    def load_plain(
        self,
        name: str,
        interval: float,
        grace: float,
        state: State,
        since: float,
        last: float,
        line_tests_only: bool = False,
    ) -> None:
        """`load` for the common device: no schedule, path, test, storm or skew; no
        record object made (a million of these load in seconds). A new name only."""
        i = len(self._names)
        if i >= MAX_DEVICES:
            raise ValueError(f"more than {MAX_DEVICES} devices")
        self._names.append(name)
        self._index[name] = i
        self._state.append(state)
        flags = _LINE_TESTS_ONLY if line_tests_only else 0
        self._flags.append(flags if state == State.NEW else flags | _HEARD)
        self._since.append(since)
        self._last.append(last)
        self._interval.append(interval)
        self._grace.append(grace)
        self._window_start.append(-math.inf)
        self._window_count.append(0)
        if state == State.LATE:
            due: float | None = since + grace
        elif state in (State.NEW, State.UP, State.RESTORED):
            due = last + interval
        elif state == State.ON_TEST:
            raise ValueError("a device on test has a record: use load()")
        else:
            due = None
        if due is None:
            self._due.append(NO_TIMER)
        else:
            ms = math.ceil(due * 1000.0)
            self._due.append(ms)
            self._heap.append(ms << _INDEX_BITS | i)
            self._heapify = True

    def load_plain_many(
        self, rows: Sequence[tuple[str, float, float, int, float, float, bool]]
    ) -> None:
        """`load_plain` for many new devices at once, (name, interval, grace, state,
        since, last, line_tests_only) each: columns extended in one go."""
        if not rows:
            return
        first = len(self._names)
        if first + len(rows) > MAX_DEVICES:
            raise ValueError(f"more than {MAX_DEVICES} devices")
        names, intervals, graces, states, sinces, lasts, only = zip(*rows, strict=True)
        if State.ON_TEST in states or any(name in self._index for name in names):
            raise ValueError("load_plain_many: new devices not on test only")
        self._names.extend(names)
        self._index.update(zip(names, range(first, first + len(rows)), strict=True))
        self._state.extend(states)
        self._flags.extend(
            (_LINE_TESTS_ONLY if o else 0) | (0 if st == State.NEW else _HEARD)
            for o, st in zip(only, states, strict=True)
        )
        self._since.extend(sinces)
        self._last.extend(lasts)
        self._interval.extend(intervals)
        self._grace.extend(graces)
        self._window_start.extend(itertools.repeat(-math.inf, len(rows)))
        self._window_count.extend(itertools.repeat(0, len(rows)))
        ceil = math.ceil
        late, timed = State.LATE, (State.NEW, State.UP, State.RESTORED)
        dues = [
            ceil((si + g) * 1000.0)
            if st == late
            else ceil((la + iv) * 1000.0)
            if st in timed
            else NO_TIMER
            for st, si, la, iv, g in zip(states, sinces, lasts, intervals, graces, strict=True)
        ]
        self._due.extend(dues)
        self._heap.extend(
            ms << _INDEX_BITS | i for i, ms in enumerate(dues, first) if ms != NO_TIMER
        )
        self._heapify = True

    def _pop_sparse(self, i: int) -> None:
        for table in (self._schedules, self._paths, self._failed, self._tests, self._storms):
            table.pop(i, None)

    def record(self, name: str) -> DeviceRecord:
        i = self._index[name]
        test = self._tests.get(i)
        storm = self._storms.get(i)
        schedule = self._schedules.get(i)
        flags = self._flags[i]
        return DeviceRecord(
            name=name,
            interval=self._interval[i],
            grace=self._grace[i],
            state=State(self._state[i]),
            since=self._since[i],
            last=self._last[i],
            line_tests_only=bool(flags & _LINE_TESTS_ONLY),
            schedule=schedule.text if schedule else None,
            paths=dict(self._paths.get(i, {})),
            failed_paths=set(self._failed.get(i, ())),
            skewed=bool(flags & _SKEWED),
            test_started=test.started if test else None,
            test_until=test.until if test else None,
            test_messages=test.messages if test else 0,
            test_missed=test.missed if test else False,
            test_resume=test.resume if test else State.NEW,
            test_resume_since=test.resume_since if test else 0.0,
            storm_last=storm[0] if storm else None,
            storm_messages=int(storm[1]) if storm else 0,
        )

    def take_dirty(self) -> list[DeviceRecord]:
        """The devices changed since the last call, for the shell to persist."""
        dirty, self._dirty = self._dirty, set()
        return [self.record(self._names[i]) for i in sorted(dirty)]

    def configure(
        self,
        name: str,
        *,
        interval: float | None = None,
        grace: float | None = None,
        line_tests_only: bool | None = None,
        schedule: DailySchedule | bool | None = False,
    ) -> None:
        """Change a device's expectations (`schedule=None` removes a schedule)."""
        i = self._index[name]
        if interval is not None:
            self._interval[i] = interval
        if grace is not None:
            self._grace[i] = grace
        if line_tests_only is not None:
            self._flags[i] = (self._flags[i] & ~_LINE_TESTS_ONLY) | (
                _LINE_TESTS_ONLY if line_tests_only else 0
            )
        if schedule is None:
            self._schedules.pop(i, None)
        elif isinstance(schedule, DailySchedule):
            self._schedules[i] = schedule
        self._dirty.add(i)
        self._arm(i)

    def expected_interval(self, name: str) -> float:
        """The interval the centre expects of the device (sent in its acknowledgement)."""
        i = self._index[name]
        return 86400.0 if i in self._schedules else self._interval[i]

    def status(self, name: str) -> DeviceStatus:
        i = self._index[name]
        state = State(self._state[i])
        deadline = alert_at = None
        if state in (State.NEW, State.UP, State.RESTORED):
            deadline = self._deadline(i, self._last[i])
            alert_at = deadline + self._grace[i]
        elif state is State.LATE:
            deadline = self._deadline(i, self._last[i])
            alert_at = self._since[i] + self._grace[i]
        test = self._tests.get(i)
        schedule = self._schedules.get(i)
        return DeviceStatus(
            name=name,
            state=state,
            since=self._since[i],
            last=self._last[i] if self._flags[i] & _HEARD else None,
            deadline=deadline,
            alert_at=alert_at,
            interval=self._interval[i],
            grace=self._grace[i],
            schedule=schedule.text if schedule else None,
            paths=dict(self._paths.get(i, {})),
            failed_paths=frozenset(self._failed.get(i, ())),
            skewed=bool(self._flags[i] & _SKEWED),
            storming=i in self._storms,
            test_until=test.until if test else None,
            line_tests_only=bool(self._flags[i] & _LINE_TESTS_ONLY),
        )

    # -- inputs ----------------------------------------------------------------------------

    def message(
        self,
        name: str,
        now: float,
        *,
        path: str | None = None,
        device_time: float | None = None,
        kind: str = "report",
    ) -> list[Event]:
        """An authenticated message of `name` was stored at `now`."""
        i = self._index.get(name)
        if i is None:
            return []
        state = State(self._state[i])
        if state is State.RETIRED:
            return []
        events: list[Event] = []
        self._dirty.add(i)
        self._count_storm(i, name, now, events)
        counts = not (self._flags[i] & _LINE_TESTS_ONLY) or kind == "line-test"
        if state is State.ON_TEST:
            self._tests[i].messages += 1
            if counts:
                self._heard(i, now, path)
            self._arm(i)
            return events
        if device_time is not None:
            self._check_skew(i, name, now, device_time, events)
        if not counts:
            self._arm(i)
            return events
        self._heard(i, now, path, events)
        target = transition(state, Trigger.MESSAGE)
        if state is State.LATE:
            events.append(LateCleared(name, now))
        elif state is State.DOWN:
            events.append(Restored(name, now, self._since[i]))
        if target is not state:
            self._state[i] = target
            self._since[i] = now
        self._arm(i)
        return events

    def start_test(self, name: str, now: float, duration: float) -> list[Event]:
        """Take a device out of supervision until `now + duration` (e.g. maintenance)."""
        i = self._index[name]
        state = State(self._state[i])
        target = transition(state, Trigger.TEST_START)
        if state is State.ON_TEST:
            self._tests[i].until = now + duration
        else:
            self._tests[i] = _Test(now, now + duration, state, self._since[i])
        self._state[i] = target
        self._since[i] = now
        self._dirty.add(i)
        self._arm(i)
        return [TestStarted(name, now, now + duration)]

    def end_test(self, name: str, now: float) -> list[Event]:
        """End a test early (it also ends by itself at its `until`)."""
        i = self._index[name]
        if self._state[i] != State.ON_TEST:
            return []
        return self._finish_test(i, now)

    def retire(self, name: str, now: float) -> list[Event]:
        i = self._index[name]
        state = State(self._state[i])
        if state is State.RETIRED:
            return []
        self._state[i] = transition(state, Trigger.RETIRE)
        self._since[i] = now
        self._pop_sparse(i)
        self._dirty.add(i)
        self._arm(i)
        return [Retired(name, now)]

    # -- time ------------------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """When `advance` next has something to do (None: nothing is armed)."""
        heap = self._fix_heap()
        while heap:
            key = heap[0]
            i = key & _INDEX_MASK
            if self._due[i] == key >> _INDEX_BITS:
                return (key >> _INDEX_BITS) / 1000.0
            heapq.heappop(heap)  # a stale entry: the device was re-armed since
        return None

    def advance(self, now: float) -> list[Event]:
        """Everything due at or before `now`, in order of when it fell due."""
        heap = self._fix_heap()
        events: list[Event] = []
        limit = math.floor(now * 1000.0)
        while heap and heap[0] >> _INDEX_BITS <= limit:
            key = heapq.heappop(heap)
            i = key & _INDEX_MASK
            if self._due[i] != key >> _INDEX_BITS:
                continue
            self._due[i] = NO_TIMER
            self._fire(i, now, events)
            self._arm(i)
        return events

    def _fix_heap(self) -> list[int]:
        if self._heapify:
            heapq.heapify(self._heap)
            self._heapify = False
        return self._heap

    # -- internals -------------------------------------------------------------------------

    def _deadline(self, i: int, last: float) -> float:
        schedule = self._schedules.get(i)
        if schedule is not None:
            return schedule.next_slot(last)
        return last + self._interval[i]

    def _heard(
        self, i: int, now: float, path: str | None, events: list[Event] | None = None
    ) -> None:
        self._last[i] = now
        self._flags[i] |= _HEARD
        if path is None:
            return
        paths = self._paths.setdefault(i, {})
        paths[path] = now
        failed = self._failed.get(i)
        if failed and path in failed:
            failed.discard(path)
            if not failed:
                del self._failed[i]
            if events is not None:
                events.append(PathRestored(self._names[i], now, path))

    def _check_skew(
        self, i: int, name: str, now: float, device_time: float, events: list[Event]
    ) -> None:
        skew = device_time - now
        skewed = bool(self._flags[i] & _SKEWED)
        if abs(skew) > self.config.skew_bound and not skewed:
            self._flags[i] |= _SKEWED
            events.append(SkewDetected(name, now, skew))
        elif abs(skew) <= self.config.skew_bound and skewed:
            self._flags[i] &= ~_SKEWED
            events.append(SkewCleared(name, now, skew))

    def _count_storm(self, i: int, name: str, now: float, events: list[Event]) -> None:
        storm = self._storms.get(i)
        if storm is not None:
            storm[0] = now
            storm[1] += 1
            return
        threshold = self.config.storm_threshold
        if threshold <= 0:
            return
        if now - self._window_start[i] >= self.config.storm_window:
            self._window_start[i] = now
            self._window_count[i] = 0
        count = self._window_count[i] + 1
        self._window_count[i] = min(count, 0xFFFFFFFF)
        if count > threshold:
            self._storms[i] = [now, float(count)]
            self._window_count[i] = 0
            events.append(StormStarted(name, now, count, self.config.storm_window))

    def _next_due(self, i: int) -> float | None:
        state = self._state[i]
        candidates: list[float] = []
        if state == State.RETIRED:
            return None
        storm = self._storms.get(i)
        if storm is not None:
            candidates.append(storm[0] + self.config.storm_quiet)
        if state == State.ON_TEST:
            candidates.append(self._tests[i].until)
        elif state == State.LATE:
            candidates.append(self._since[i] + self._grace[i])
        elif state != State.DOWN:
            candidates.append(self._deadline(i, self._last[i]))
        paths = self._paths.get(i)
        if paths and len(paths) > 1 and state in (State.UP, State.RESTORED, State.LATE):
            failed = self._failed.get(i, ())
            candidates.extend(
                self._deadline(i, heard) + self._grace[i]
                for path, heard in paths.items()
                if path not in failed
            )
        return min(candidates) if candidates else None

    def _arm(self, i: int) -> None:
        due = self._next_due(i)
        if due is None:
            self._due[i] = NO_TIMER
            return
        ms = _ms(due)
        if ms == self._due[i]:
            return  # already armed at that moment
        self._due[i] = ms
        if self._heapify:
            self._heap.append(ms << _INDEX_BITS | i)
        else:
            heapq.heappush(self._heap, ms << _INDEX_BITS | i)

    def _fire(self, i: int, now: float, events: list[Event]) -> None:
        name = self._names[i]
        self._dirty.add(i)
        storm = self._storms.get(i)
        if storm is not None and now >= storm[0] + self.config.storm_quiet:
            del self._storms[i]
            events.append(StormEnded(name, now, int(storm[1])))
        state = State(self._state[i])
        if state is State.ON_TEST:
            test = self._tests[i]
            if now >= test.until:
                self._finish_test(i, test.until, events)
            return
        if state in (State.NEW, State.UP, State.RESTORED):
            deadline = self._deadline(i, self._last[i])
            if now >= deadline:
                self._state[i] = transition(state, Trigger.DEADLINE)
                self._since[i] = deadline
                events.append(Late(name, now, deadline))
                state = State.LATE
        if state is State.LATE:
            down_at = self._since[i] + self._grace[i]
            if now >= down_at:
                self._state[i] = transition(state, Trigger.GRACE)
                self._since[i] = down_at
                paths = tuple(sorted(self._paths.get(i, ())))
                heard = self._last[i] if self._flags[i] & _HEARD else None
                events.append(Down(name, now, self._deadline(i, self._last[i]), heard, paths))
                return
        if state in (State.UP, State.RESTORED, State.LATE):
            self._check_paths(i, name, now, events)

    def _check_paths(self, i: int, name: str, now: float, events: list[Event]) -> None:
        paths = self._paths.get(i)
        if not paths or len(paths) < 2:
            return
        failed = self._failed.setdefault(i, set())
        grace = self._grace[i]
        for path, heard in sorted(paths.items()):
            if path not in failed and now >= self._deadline(i, heard) + grace:
                failed.add(path)
                working = tuple(p for p in sorted(paths) if p not in failed)
                events.append(PathFailed(name, now, path, heard, working))
        if not failed:
            del self._failed[i]

    def _finish_test(self, i: int, now: float, events: list[Event] | None = None) -> list[Event]:
        events = [] if events is None else events
        test = self._tests.pop(i)
        deadline = self._deadline(i, self._last[i])
        missed = test.missed or deadline <= now
        since = now
        was_down = test.resume is State.DOWN
        if deadline > now:
            resumed = State.UP if self._flags[i] & _HEARD else State.NEW
        elif was_down:
            resumed, since = State.DOWN, test.resume_since  # still down: alerted already
        else:
            resumed = State.LATE  # overdue: supervision resumes with a fresh grace
        self._state[i] = resumed
        self._since[i] = since
        self._dirty.add(i)
        name = self._names[i]
        events.append(TestEnded(name, now, test.started, test.messages, missed, resumed))
        if was_down and resumed is not State.DOWN:
            events.append(Restored(name, now, test.resume_since))
        self._arm(i)
        return events


def _ms(when: float) -> int:
    """A due time in whole milliseconds, rounded up: a timer never fires early."""
    return math.ceil(when * 1000.0)


def load_all(
    engine: Engine, records: Iterable[DeviceRecord], *, schedule_lead: float = 3600.0
) -> int:
    """Load many devices at once (one heapify at the end); returns how many."""
    count = 0
    for record in records:
        engine.load(record, schedule_lead=schedule_lead)
        count += 1
    return count
