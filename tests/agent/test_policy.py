"""The call policy over simulated weeks (virtual time: a week runs in milliseconds)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from datetime import time as clock_time

from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.backoff import Backoff
from callhome.client.agent.checks import CheckEvent, EventType
from callhome.client.agent.collectors.base import State
from callhome.client.agent.policy import CallPlan, CallPolicy, PolicyConfig

HOUR, DAY = 3600.0, 86400.0
T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()


def event(check: str, state: State, previous: State = State.OK, now: float = 0.0) -> CheckEvent:
    return CheckEvent(check, EventType.CHANGE, state, previous, now, now, text=state.name)


def policy(config: PolicyConfig | None = None, **kwargs: object) -> CallPolicy:
    options: dict[str, object] = {"now": T0, "last_test": T0}
    options.update(kwargs)
    return CallPolicy(config or PolicyConfig(), random.Random(7), **options)  # type: ignore[arg-type]


def run(p: CallPolicy, until: float, ok: bool = True) -> list[tuple[float, CallPlan]]:
    """Make every call the policy asks for until `until`; return (time, plan) of each."""
    calls = []
    while (moment := p.due()) <= until:
        plan = p.plan(moment)
        calls.append((moment, plan))
        p.finished(moment, ok, plan)
    return calls


def test_critical_calls_now_warning_waits_an_hour_recovery_waits_for_the_next_call() -> None:
    p = policy()
    assert p.admit(event("fan", State.WARNING, now=T0 + 10), T0 + 10)
    assert p.due() == T0 + 10 + HOUR
    assert p.admit(event("md", State.CRITICAL, now=T0 + 20), T0 + 20)
    assert p.due() == T0 + 20
    p.finished(T0 + 30, True, p.plan(T0 + 30))
    assert p.admit(event("md", State.OK, State.CRITICAL), T0 + 40)
    assert p.due() == p.next_test  # nothing calls before the line test


def test_a_healthy_week_is_seven_line_tests_spread_about_a_day_apart() -> None:
    p = policy()
    calls = run(p, T0 + 7 * DAY)
    assert len(calls) in (6, 7, 8)
    assert all(plan.line_test for _, plan in calls)
    gaps = [b - a for (a, _), (b, _) in zip([(T0, None), *calls], calls, strict=False)]
    assert all(0.9 * DAY <= gap <= 1.1 * DAY for gap in gaps)
    assert len({round(gap) for gap in gaps}) > 1  # spread, not lock-step


def test_a_test_missed_while_off_runs_soon_after_start() -> None:
    p = policy(now=T0 + 3 * DAY, last_test=T0)
    assert p.due() == T0 + 3 * DAY + 120
    never = policy(last_test=None)
    assert never.due() == T0 + 120


def test_daily_calendar_schedule_in_a_time_zone() -> None:
    config = PolicyConfig(test_at=clock_time(3, 30), test_zone="Europe/Paris")
    p = policy(config, now=T0 + HOUR, last_test=T0 - HOUR)  # 00:00 UTC = 01:00 Paris
    moment = datetime.fromtimestamp(p.due(), UTC)
    assert (moment.hour, moment.minute) == (2, 30)  # 03:30 CET
    calls = run(p, T0 + 7 * DAY)
    assert len(calls) == 7
    # missed while off: the 03:30 of today passed after the last test
    late = policy(config, now=T0 + 10 * HOUR, last_test=T0 - HOUR)
    assert late.due() == T0 + 10 * HOUR + 120


def test_the_throttle_holds_back_and_counts_and_the_summary_goes_once() -> None:
    p = policy(PolicyConfig(throttle_events=30, throttle_window=2 * HOUR))
    admitted = [p.admit(event("fan", State.WARNING, now=T0 + i), T0 + i) for i in range(45)]
    assert admitted.count(True) == 30
    plan = p.plan(T0 + 60)
    [summary] = plan.summaries
    assert summary["held"] == 15 and summary["state"] == "WARNING"
    assert p.plan(T0 + 61).summaries == []
    # the window slides: two hours later events pass again
    assert p.admit(event("fan", State.OK, State.WARNING), T0 + 2 * HOUR + 1)


def test_failed_calls_retry_with_backoff_then_reset() -> None:
    config = PolicyConfig(retry=Backoff(300, 2, 3600, "none"))
    p = policy(config)
    p.admit(event("md", State.CRITICAL), T0)
    p.finished(T0, False, p.plan(T0))
    assert p.due() == T0 + 300
    p.finished(T0 + 300, False, p.plan(T0 + 300))
    assert p.due() == T0 + 300 + 600
    p.finished(T0 + 900, True, p.plan(T0 + 900))
    assert p.retry_at is None and p.due() == p.next_test


def test_the_centre_interval_is_adopted() -> None:
    p = policy()
    assert p.adopt_interval(6 * HOUR, T0)
    assert not p.adopt_interval(6 * HOUR, T0)
    calls = run(p, T0 + DAY)
    assert len(calls) in (4, 5)


def test_pending_spool_calls_at_start() -> None:
    assert policy(pending=True).due() == T0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 7 * DAY),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(list(State)),
        ),
        max_size=300,
    ),
    st.integers(1, 30),
)
def test_nothing_is_dropped_silently_and_critical_is_never_late(
    items: list[tuple[float, str, State]], limit: int
) -> None:
    p = policy(PolicyConfig(throttle_events=limit))
    admitted = held_total = 0
    for offset, check, state in sorted(items):
        now = T0 + offset
        for _moment, plan in run(p, now):
            held_total += sum(s["held"] for s in plan.summaries)
        if p.admit(event(check, state, now=now), now):
            admitted += 1
            if state is State.CRITICAL:
                assert p.due() <= now
            if state is State.WARNING:
                assert p.due() <= now + HOUR
    for _, plan in run(p, T0 + 8 * DAY):
        held_total += sum(s["held"] for s in plan.summaries)
    assert admitted + held_total == len(items)


def test_an_event_during_a_call_gets_its_own_call() -> None:
    p = policy()
    p.admit(event("md", State.CRITICAL), T0)
    plan = p.plan(T0)
    p.admit(event("disk", State.CRITICAL), T0 + 5)  # the call in progress may miss it
    p.finished(T0 + 10, True, plan)
    assert p.due() == T0 + 5
