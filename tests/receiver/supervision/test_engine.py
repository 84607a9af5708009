"""The supervision engine, in virtual time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.supervision.engine import (
    DailySchedule,
    DeviceRecord,
    Down,
    Engine,
    EngineConfig,
    Late,
    PathFailed,
    PathRestored,
    Restored,
    ScheduleError,
    SkewCleared,
    SkewDetected,
    State,
    StormEnded,
    TestEnded,
    TestStarted,
    TransitionError,
    Trigger,
    transition,
)

DAY = 86400.0
T0 = 1_800_000_000.0


def engine(**config: float) -> Engine:
    return Engine(EngineConfig(**config))  # type: ignore[arg-type]


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def run_until(e: Engine, until: float) -> list:
    """What the shell does: sleep until next_wakeup, advance, repeat."""
    out = []
    while (wake := e.next_wakeup()) is not None and wake <= until:
        out += e.advance(wake)
    return out


def test_a_silent_device_goes_late_then_down_once():
    e = engine()
    e.add("a", interval=3600, grace=600, enrolled=T0)
    assert e.status("a").state is State.NEW
    assert e.next_wakeup() == T0 + 3600
    assert e.advance(T0 + 3599.999) == []
    (late,) = e.advance(T0 + 3600)
    assert isinstance(late, Late) and late.deadline == T0 + 3600
    assert e.status("a").state is State.LATE
    (down,) = run_until(e, T0 + 10 * DAY)
    assert isinstance(down, Down) and down.at == T0 + 4200
    assert e.status("a").state is State.DOWN
    assert e.next_wakeup() is None  # down: nothing more until it calls


@pytest.mark.parametrize(("offset", "alerted"), [(-1.0, False), (1.0, True)])
def test_a_message_one_second_either_side_of_deadline_plus_grace(offset, alerted):
    e = engine()
    e.add("a", interval=3600, grace=600, enrolled=T0)
    e.message("a", T0 + 10)
    deadline = T0 + 10 + 3600
    events = run_until(e, deadline + 600 + offset)
    events += e.message("a", deadline + 600 + offset)
    assert ("Down" in kinds(events)) is alerted
    if alerted:
        assert kinds(events) == ["Late", "Down", "Restored"]
        assert e.status("a").state is State.RESTORED
    else:
        assert kinds(events) == ["Late", "LateCleared"]
        assert e.status("a").state is State.UP


def test_any_message_resets_the_deadline_unless_only_line_tests_count():
    e = engine()
    e.add("a", interval=100, grace=10, enrolled=T0)
    e.add("b", interval=100, grace=10, enrolled=T0, line_tests_only=True)
    for name in ("a", "b"):
        e.message(name, T0 + 50, kind="line-test")
        e.message(name, T0 + 120, kind="report")
    assert e.status("a").deadline == T0 + 220
    assert e.status("b").deadline == T0 + 150


def test_restored_then_up_then_late_again():
    e = engine()
    e.add("a", interval=100, grace=10, enrolled=T0)
    run_until(e, T0 + 200)
    (restored,) = e.message("a", T0 + 300)
    assert isinstance(restored, Restored) and restored.down_since == T0 + 110
    assert e.message("a", T0 + 310) == []
    assert e.status("a").state is State.UP
    assert kinds(run_until(e, T0 + 410)) == ["Late"]


def test_a_year_of_daily_tests_in_virtual_time():
    """A device that tests daily for a year, skipping a week in June."""
    e = engine()
    e.add("a", interval=DAY, grace=900, enrolled=T0)
    events = []
    for day in range(365):
        now = T0 + day * DAY + 60 - day  # a little earlier each day: never at the deadline
        events += run_until(e, now)
        if not 150 <= day < 157:
            events += e.message("a", now, kind="line-test")
    events += run_until(e, T0 + 366 * DAY)
    assert kinds(events) == ["Late", "Down", "Restored", "Late", "Down"]
    assert events[1].at == T0 + 150 * DAY + 60 - 149 + 900  # day 149's test + interval + grace


def test_the_transition_table_refuses_what_it_does_not_name():
    assert transition(State.UP, Trigger.DEADLINE) is State.LATE
    with pytest.raises(TransitionError):
        transition(State.DOWN, Trigger.DEADLINE)
    with pytest.raises(TransitionError):
        transition(State.RETIRED, Trigger.MESSAGE)


# -- restarts --------------------------------------------------------------------------------


def restart(e: Engine) -> Engine:
    """A new engine from what the store kept (every record, as the shell persists it)."""
    fresh = Engine(e.config)
    for name in e.names():
        fresh.load(e.record(name))
    return fresh


def test_a_restart_during_grace_neither_loses_nor_repeats_the_alert():
    e = engine()
    e.add("a", interval=100, grace=50, enrolled=T0)
    assert kinds(run_until(e, T0 + 120)) == ["Late"]
    e = restart(e)
    assert e.status("a").state is State.LATE
    events = run_until(e, T0 + 1000)
    assert kinds(events) == ["Down"] and events[0].at == T0 + 150
    e = restart(e)
    assert run_until(e, T0 + 5000) == []


def test_a_deadline_that_fell_while_stopped_fires_at_start_once():
    e = engine()
    e.add("a", interval=100, grace=50, enrolled=T0)
    e = restart(e)
    start = T0 + 1000  # the receiver was stopped across deadline and grace
    assert e.next_wakeup() == T0 + 100
    events = e.advance(start)
    assert kinds(events) == ["Late", "Down"] and all(ev.at == start for ev in events)
    assert e.advance(start + 1) == []
    e = restart(e)
    assert e.advance(start + 2000) == []


# -- on test ---------------------------------------------------------------------------------


def test_on_test_suppresses_alerts_and_resumes_by_itself():
    e = engine()
    e.add("a", interval=100, grace=50, enrolled=T0)
    e.message("a", T0)
    (started,) = e.start_test("a", T0 + 10, 4 * 3600)
    assert isinstance(started, TestStarted) and e.status("a").state is State.ON_TEST
    e.message("a", T0 + 20)
    e = restart(e)
    events = run_until(e, T0 + 10 + 4 * 3600)
    (ended,) = events
    assert isinstance(ended, TestEnded)
    assert (ended.messages, ended.missed, ended.state) == (1, True, State.LATE)
    # overdue at the end of the test: a fresh grace, then down
    assert kinds(run_until(e, T0 + 10 + 4 * 3600 + 50)) == ["Down"]


def test_a_device_that_called_during_its_test_resumes_up():
    e = engine()
    e.add("a", interval=1000, grace=50, enrolled=T0)
    e.start_test("a", T0, 100)
    e.message("a", T0 + 90)
    (ended,) = run_until(e, T0 + 100)
    assert (ended.messages, ended.missed, ended.state) == (1, False, State.UP)
    assert e.end_test("a", T0 + 200) == []


def test_retired_devices_are_forgotten():
    e = engine()
    e.add("a", interval=100, grace=10, enrolled=T0)
    assert kinds(e.retire("a", T0 + 1)) == ["Retired"]
    assert e.next_wakeup() is None and e.message("a", T0 + 2) == []
    assert e.retire("a", T0 + 3) == []


# -- paths, skew, storms ---------------------------------------------------------------------


def test_one_silent_path_is_a_path_failure_all_silent_is_down():
    e = engine()
    e.add("a", interval=100, grace=10, enrolled=T0)
    e.message("a", T0, path="line-a")
    e.message("a", T0 + 1, path="line-b")
    events = []
    for k in range(1, 4):  # line-b goes silent; line-a keeps calling
        events += run_until(e, T0 + k * 90)
        events += e.message("a", T0 + k * 90, path="line-a")
    (failed,) = events
    assert isinstance(failed, PathFailed)
    assert (failed.path, failed.working, failed.at) == ("line-b", ("line-a",), T0 + 111)
    assert e.status("a").state is State.UP and e.status("a").failed_paths == {"line-b"}
    e = restart(e)
    (back,) = e.message("a", T0 + 300, path="line-b")
    assert isinstance(back, PathRestored) and back.path == "line-b"
    events = run_until(e, T0 + 1000)  # line-a (last at +270) fails first, then all
    assert kinds(events) == ["PathFailed", "Late", "Down"]
    assert events[0].path == "line-a" and events[0].working == ("line-b",)
    assert events[2].paths == ("line-a", "line-b")


def test_clock_skew_beyond_the_bound_is_a_trouble_once():
    e = engine(skew_bound=60)
    e.add("a", interval=100, grace=10, enrolled=T0)
    assert e.message("a", T0, device_time=T0 + 59) == []
    (skew,) = e.message("a", T0 + 1, device_time=T0 - 120)
    assert isinstance(skew, SkewDetected) and skew.skew == -121
    assert e.message("a", T0 + 2, device_time=T0 - 120) == []
    (cleared,) = e.message("a", T0 + 3, device_time=T0 + 3)
    assert isinstance(cleared, SkewCleared)


def test_a_storm_is_one_event_and_ends_after_a_quiet_period():
    e = engine(storm_threshold=5, storm_window=60, storm_quiet=300)
    e.add("a", interval=1000, grace=10, enrolled=T0)
    e.add("b", interval=1000, grace=10, enrolled=T0)
    events = []
    for k in range(50):
        events += e.message("a", T0 + k)
    events += e.message("b", T0 + 1)
    assert kinds(events) == ["StormStarted"] and events[0].device == "a"
    assert e.status("a").storming and not e.status("b").storming
    assert e.status("a").last == T0 + 49  # every message still counted
    (ended,) = run_until(e, T0 + 49 + 300)
    assert isinstance(ended, StormEnded) and ended.messages == 50
    assert isinstance(ended, StormEnded)


# -- schedules -------------------------------------------------------------------------------


def test_daily_schedule_in_a_zone_across_dst():
    schedule = DailySchedule.parse("daily 03:00 Europe/Paris")
    paris = ZoneInfo("Europe/Paris")
    last = datetime(2026, 3, 28, 2, 30, tzinfo=paris).timestamp()  # 30 min early: counts
    slot = datetime.fromtimestamp(schedule.next_slot(last), paris)
    assert (slot.day, slot.hour, slot.minute) == (29, 3, 0)  # the night clocks go forward
    afternoon = datetime(2026, 3, 28, 16, 0, tzinfo=paris).timestamp()
    assert datetime.fromtimestamp(schedule.next_slot(afternoon), paris).day == 29
    with pytest.raises(ScheduleError):
        DailySchedule.parse("daily 03:00 Mars/Olympus")
    with pytest.raises(ScheduleError):
        DailySchedule.parse("daily 3 o'clock UTC")


def test_a_year_on_a_calendar_schedule():
    schedule = DailySchedule.parse("daily 03:00 America/New_York")
    e = engine()
    start = datetime(2026, 1, 1, 12, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    e.add("a", interval=DAY, grace=1800, enrolled=start, schedule=schedule)
    events = []
    for day in range(1, 366):
        slot = schedule.next_slot(start + (day - 1) * DAY)
        events += run_until(e, slot - 600)
        events += e.message("a", slot - 600)  # every night, 10 min early
    assert events == []
    events += run_until(e, slot + DAY + 1800)
    assert kinds(events) == ["Late", "Down"]


# -- property: the state follows the table ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["msg", "wait", "test", "end"]), st.floats(0, 500)),
        max_size=40,
    )
)
def test_down_and_restored_alternate_and_restarts_change_nothing(steps):
    e, twin = engine(), engine()
    for x in (e, twin):
        x.add("a", interval=100, grace=30, enrolled=T0)
    now = T0
    seen, twin_seen = [], []
    for action, dt in steps:
        now += dt
        for x, out in ((e, seen), (twin, twin_seen)):
            out += run_until(x, now)
            if action == "msg":
                out += x.message("a", now)
            elif action == "test":
                out += x.start_test("a", now, dt + 1)
            elif action == "end":
                out += x.end_test("a", now)
        twin = restart(twin)
    assert kinds(seen) == kinds(twin_seen)
    alerts = [k for k in kinds(seen) if k in ("Down", "Restored")]
    assert alerts[::2] == ["Down"] * len(alerts[::2])
    assert alerts[1::2] == ["Restored"] * len(alerts[1::2])


@pytest.mark.parametrize("state", [State.NEW, State.UP, State.LATE, State.DOWN, State.RESTORED])
def test_the_fast_load_path_arms_the_same_timer_as_load(state):
    slow, fast, bulk = engine(), engine(), engine()
    bulk.load_plain_many([("a", 100.0, 10.0, state, T0 + 5, T0, False)])
    slow.load(DeviceRecord("a", 100.0, 10.0, state=state, since=T0 + 5, last=T0))
    fast.load_plain("a", 100.0, 10.0, state, T0 + 5, T0)
    assert slow.status("a") == fast.status("a") and slow.next_wakeup() == fast.next_wakeup()
    assert bulk.status("a") == fast.status("a") and bulk.next_wakeup() == fast.next_wakeup()
    expected = kinds(run_until(slow, T0 + 1000))
    assert expected == kinds(run_until(fast, T0 + 1000)) == kinds(run_until(bulk, T0 + 1000))
