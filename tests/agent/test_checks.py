"""The check engine: hysteresis, `for`, lasting UNKNOWN, Nagios flap detection, and the
chain property (every problem is followed by exactly one recovery, in order)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.client.agent.checks import (
    HISTORY,
    CheckEvent,
    Direction,
    Engine,
    EventType,
    Rule,
    Thresholds,
    flap_percent,
)
from callhome.client.agent.collectors.base import Reading, State

OK, WARNING, CRITICAL, UNKNOWN = State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN
TEMP = Thresholds(warning=70, warning_clear=65, critical=90, critical_clear=85)


def value(v: float, check: str = "temp") -> Reading:
    return Reading(check, None, f"{v} C", v, "C")


def verdict(state: State, check: str = "md/md0") -> Reading:
    return Reading(check, state, state.name)


def feed(
    engine: Engine, rule: Rule, readings: list[Reading], step: float = 60.0
) -> list[CheckEvent]:
    events = []
    for index, reading in enumerate(readings):
        events += engine.observe(index * step, [reading], rule)
    return events


def changes(events: list[CheckEvent]) -> list[tuple[State, State]]:
    return [(e.previous, e.state) for e in events]


def test_hysteresis_enters_above_and_leaves_only_below_the_clear_value() -> None:
    rule = Rule(TEMP, flap_detection=False)
    events = feed(Engine(), rule, [value(v) for v in (60, 71, 68, 66, 64, 91, 87, 84, 66, 60)])
    assert changes(events) == [
        (OK, WARNING),
        (WARNING, OK),
        (OK, CRITICAL),
        (CRITICAL, WARNING),
        (WARNING, OK),
    ]


def test_below_direction_for_fans() -> None:
    fan = Thresholds(warning=1000, warning_clear=1200, critical=300, direction=Direction.BELOW)
    assert not fan.problems()
    events = feed(
        Engine(),
        Rule(fan, flap_detection=False),
        [value(v, "fan") for v in (2000, 900, 1100, 1300, 200)],
    )
    assert changes(events) == [(OK, WARNING), (WARNING, OK), (OK, CRITICAL)]


def test_inconsistent_thresholds_are_named() -> None:
    assert Thresholds(warning=70, warning_clear=75).problems() == [
        "warning_clear must not be above warning (it is where warning is left)"
    ]
    assert Thresholds(warning=90, critical=70).problems() == ["warning must come before critical"]
    assert Thresholds(critical_clear=3).problems() == ["critical_clear without critical"]


def test_for_duration_delays_a_problem_but_not_a_recovery() -> None:
    rule = Rule(TEMP, for_seconds=300, flap_detection=False)
    engine = Engine()
    assert engine.observe(0, [value(95)], rule) == []
    assert engine.observe(200, [value(95)], rule) == []
    [event] = engine.observe(300, [value(95)], rule)
    assert (event.previous, event.state, event.since) == (OK, CRITICAL, 0)
    [event] = engine.observe(360, [value(10)], rule)
    assert (event.previous, event.state) == (CRITICAL, OK)


def test_a_blip_shorter_than_for_is_no_event() -> None:
    rule = Rule(TEMP, for_seconds=300, flap_detection=False)
    assert feed(Engine(), rule, [value(95), value(95), value(20), value(95)], step=120) == []


def test_collector_unknown_is_reported_only_when_it_lasts() -> None:
    rule = Rule(unknown_after=600, flap_detection=False)
    engine = Engine()
    engine.observe(0, [verdict(OK)], rule)
    assert engine.observe(60, [verdict(UNKNOWN)], rule) == []
    assert engine.observe(120, [verdict(OK)], rule) == []  # one bad collection: no news
    assert engine.observe(180, [verdict(UNKNOWN)], rule) == []
    [event] = engine.observe(780, [verdict(UNKNOWN)], rule)
    assert (event.previous, event.state, event.since) == (OK, UNKNOWN, 180)
    [event] = engine.observe(840, [verdict(OK)], rule)
    assert (event.previous, event.state) == (UNKNOWN, OK)


def test_a_reading_with_neither_verdict_nor_value_is_unknown_never_ok() -> None:
    engine = Engine()
    rule = Rule(unknown_after=0)
    [event] = engine.observe(0, [Reading("x", None, "garbage")], rule)
    assert event.state is UNKNOWN


def test_flap_percent_is_nagios_weighted() -> None:
    assert flap_percent([OK] * HISTORY) == 0
    alternating = [OK, CRITICAL] * 10 + [OK]
    assert round(flap_percent(alternating), 3) == 100.0  # 20 changes, mean weight 1.0
    # one change at the newest end weighs 1.25; at the oldest 0.75
    assert flap_percent([OK] * 20 + [CRITICAL]) == 1.25 * 100 / 20
    assert flap_percent([OK] + [CRITICAL] * 20) == 0.75 * 100 / 20


def test_a_flapping_fan_gives_one_flapping_and_one_stable_event_nothing_between() -> None:
    rule = Rule(Thresholds(warning=1000, direction=Direction.BELOW))
    readings = [value(2000, "fan")] * 3 + [value(v, "fan") for v in (500, 2000) * 12]
    readings += [value(2000, "fan")] * HISTORY
    events = feed(Engine(), rule, readings)
    types = [e.type for e in events]
    assert EventType.FLAPPING in types and types[-1] is EventType.STABLE
    start = types.index(EventType.FLAPPING)
    assert types[start + 1 :] == [EventType.STABLE]
    assert events[-1].state is OK


def test_restore_suppresses_repeating_a_known_state() -> None:
    engine = Engine()
    engine.restore("md/md0", CRITICAL, 5.0)
    assert engine.observe(10, [verdict(CRITICAL)], Rule()) == []
    [event] = engine.observe(20, [verdict(OK)], Rule())
    assert event.is_recovery


def test_summary_line() -> None:
    engine = Engine()
    engine.observe(0, [verdict(OK, "a"), verdict(CRITICAL, "md/md0")], Rule())
    assert engine.summary() == "2 checks: 1 OK, 1 CRITICAL (md/md0)"


readings_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.one_of(
            st.sampled_from([OK, WARNING, CRITICAL, UNKNOWN]),
            st.floats(0, 100, allow_nan=False),
            st.none(),
        ),
        st.floats(0, 400),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(readings_strategy, st.floats(0, 300), st.floats(0, 900), st.booleans())
def test_every_problem_is_followed_by_exactly_one_recovery_in_order(
    steps: list[tuple[str, State | float | None, float]],
    for_seconds: float,
    unknown_after: float,
    flapping: bool,
) -> None:
    rule = Rule(TEMP, for_seconds=for_seconds, unknown_after=unknown_after, flap_detection=flapping)
    engine = Engine()
    now = 0.0
    events: list[CheckEvent] = []

    def reading(check: str, item: State | float | None) -> Reading:
        if isinstance(item, State):
            return verdict(item, check)
        return Reading(check, None, "x", item)

    for check, item, gap in steps:
        now += gap
        events += engine.observe(now, [reading(check, item)], rule)
    # then long enough healthy: every check must come back to OK and stop flapping
    for _ in range(HISTORY + 2):
        now += 1000
        events += engine.observe(now, [reading("a", OK), reading("b", OK)], rule)
    for check in ("a", "b"):
        mine = [e for e in events if e.check == check]
        reported = OK
        flapping_now = False
        for event in mine:
            assert event.previous is reported  # a chain: nothing lost, nothing out of order
            if event.type is EventType.CHANGE:
                assert not flapping_now  # nothing between flapping and stable
                assert event.state is not event.previous  # only changes are events
            elif event.type is EventType.FLAPPING:
                assert not flapping_now
                assert event.state is reported
                flapping_now = True
            else:
                assert flapping_now
                flapping_now = False
            reported = event.state
        assert reported is OK and not flapping_now
        problems = [e for e in mine if e.state is not OK]
        recoveries = [e for e in mine if e.is_recovery]
        # exactly one recovery closes each run of problems
        runs = 0
        in_problem = False
        for event in mine:
            if event.state is not OK and not in_problem:
                runs += 1
                in_problem = True
            elif event.state is OK:
                in_problem = False
        assert len(recoveries) == runs
        assert not problems or recoveries


def test_a_snapshot_loaded_keeps_the_flapping_and_its_window() -> None:
    rule = Rule(Thresholds(warning=1000, direction=Direction.BELOW))
    flapping = [value(v, "fan") for v in (500, 2000) * 8]
    engine = Engine()
    events = feed(engine, rule, flapping)
    assert [e.type for e in events][-1] is EventType.FLAPPING
    restarted = Engine()
    for item in json.loads(json.dumps(engine.snapshot())):
        restarted.load(item)
    assert restarted.snapshot() == engine.snapshot()
    assert restarted.checks["fan"].flapping and len(restarted.checks["fan"].history) == 16
    # still flapping: no second "flapping", and one "stable" once it has settled
    later = [
        *restarted.observe(2000, [value(500, "fan")], rule),
        *restarted.observe(2060, [value(2000, "fan")], rule),
    ]
    for index in range(HISTORY):
        later += restarted.observe(3000 + 60 * index, [value(2000, "fan")], rule)
    assert [e.type for e in later] == [EventType.STABLE]
    assert later[0].state is OK


def test_an_older_agents_item_is_restored_from_its_reported_state() -> None:
    engine = Engine()
    engine.load({"check": "md/md0", "state": "CRITICAL", "since": 5.0})
    assert engine.observe(10, [verdict(CRITICAL)], Rule()) == []


@settings(max_examples=150, deadline=None)
@given(
    readings_strategy,
    st.sets(st.integers(0, 120)),
    st.floats(0, 300),
    st.floats(0, 900),
    st.booleans(),
)
def test_a_restart_from_the_stored_state_changes_no_event(
    steps: list[tuple[str, State | float | None, float]],
    restarts: set[int],
    for_seconds: float,
    unknown_after: float,
    flapping: bool,
) -> None:
    """An engine stopped at any point and rebuilt from its snapshot (through JSON, as the
    spool keeps it) reports exactly what one that never stopped reports: so the chain
    above (every problem followed by exactly one recovery, in order; one "flapping",
    one "stable", nothing between) holds across restarts too."""
    rule = Rule(TEMP, for_seconds=for_seconds, unknown_after=unknown_after, flap_detection=flapping)
    steady, restarted = Engine(), Engine()
    now = 0.0
    expected: list[CheckEvent] = []
    got: list[CheckEvent] = []
    for index, (check, item, gap) in enumerate(steps):
        if index in restarts:
            snapshot = json.loads(json.dumps(restarted.snapshot()))
            restarted = Engine()
            for saved in snapshot:
                restarted.load(saved)
        now += gap
        reading = (
            verdict(item, check) if isinstance(item, State) else Reading(check, None, "x", item)
        )
        expected += steady.observe(now, [reading], rule)
        got += restarted.observe(now, [reading], rule)
    assert got == expected
