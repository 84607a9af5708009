"""The watch and the rosters over the tz database, across every DST change of a year."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import example as case
from hypothesis import strategies as st

from receiver.sun.localtime import is_gap, local_to_utc, to_local
from receiver.sun.model import (
    Layer,
    Override,
    Roster,
    Routing,
    Site,
    WeeklyHours,
    Window,
)
from receiver.sun.schedule import (
    Schedule,
    on_call,
    roster_timeline,
    turn_index,
    turn_start,
    weekly_intervals,
)

ZONES = [
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Tokyo",
]
YEAR = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def hours(windows: dict[int, list[Window]]) -> WeeklyHours:
    return WeeklyHours(tuple(tuple(windows.get(day, [])) for day in range(7)))


@st.composite
def sites(draw: st.DrawFn) -> list[Site]:
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=4, unique=True))
    out = []
    for number, zone in enumerate(zones):
        # quarter-hours, and windows that may cross midnight or end at 24:00
        start = draw(st.integers(0, 95)) * 15
        length = draw(st.integers(4, 96)) * 15
        end = (start + length) % 1440
        window = Window(start, end) if length < 1440 else Window(0, 0)
        days = draw(st.sets(st.integers(0, 6), min_size=1))
        holidays = draw(st.sets(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=3))
        out.append(
            Site(
                f"s{number}",
                ZoneInfo(zone),
                hours({key: [window] for key in days}),
                frozenset(holidays),
            )
        )
    return out


def configured_boundaries(site: Site, moment: datetime) -> bool:
    """`moment` is, in `site`'s zone, the start or end of one of its windows, or the DST
    jump that swallowed such a time."""
    local = to_local(moment, site.zone)
    for back in (0, 1):
        day = local.date() - timedelta(days=back)
        midnight = datetime.combine(day, time())
        for window in site.hours.windows(day.weekday()):
            for offset in (window.start, window.start + window.length):
                naive = midnight + timedelta(minutes=offset)
                if local_to_utc(naive, site.zone) == moment:
                    return True
    return False


def open_by_wall_clock(site: Site, moment: datetime) -> bool:
    """An oracle that knows nothing of intervals: the local time against the windows."""
    local = to_local(moment, site.zone)
    minute = local.hour * 60 + local.minute
    today, yesterday = local.date(), local.date() - timedelta(days=1)
    for window in site.hours.windows(today.weekday()):
        if today not in site.holidays and window.start <= minute < window.start + window.length:
            return True
    for window in site.hours.windows(yesterday.weekday()):
        past = window.start + window.length - 1440
        if yesterday not in site.holidays and past > 0 and minute < past:
            return True
    return False


def near_transition(site: Site, moment: datetime) -> bool:
    offsets = {
        (moment + timedelta(hours=h)).astimezone(site.zone).utcoffset() for h in range(-26, 27)
    }
    return len(offsets) > 1


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites(), st.lists(st.integers(0, 365 * 86400 - 1), min_size=20, max_size=20))
def test_one_centre_on_duty_at_every_instant_of_a_year(
    chosen: list[Site], samples: list[int]
) -> None:
    schedule = Schedule(Routing(Path("x"), tuple(chosen)))
    watches = schedule.timeline(*YEAR)
    # the watches tile the year: no gap, no overlap, and somebody always has it
    assert watches[0].start == YEAR[0] and watches[-1].end == YEAR[1]
    for before, after in itertools.pairwise(watches):
        assert before.end == after.start
        assert (before.site, before.open) != (after.site, after.open)
    for watch in watches:
        assert watch.start < watch.end
    # every hand-over is at a configured local time of the incoming or the outgoing centre
    for before, after in itertools.pairwise(watches):
        if before.site != after.site:
            assert after.site is not None and before.site is not None
            assert configured_boundaries(after.site, after.start) or configured_boundaries(
                before.site, after.start
            ), (before, after)
    for second in samples:
        moment = YEAR[0] + timedelta(seconds=second)
        watch = next(w for w in watches if w.start <= moment < w.end)
        assert schedule.on_duty(moment) == watch.site
        assert watch.site is not None
        if not near_transition(watch.site, moment):
            assert open_by_wall_clock(watch.site, moment) == watch.open
        # whoever is open, the holder is open too (an open centre is never passed over)
        if any(open_by_wall_clock(s, moment) for s in chosen if not near_transition(s, moment)):
            assert watch.open or any(near_transition(s, moment) for s in chosen)


def test_the_example_hands_over_at_its_local_opening_all_year(example: Routing) -> None:
    schedule = Schedule(example)
    handovers = schedule.handovers(*YEAR)
    assert len(handovers) > 3 * 240
    for handover in handovers:
        assert handover.incoming is not None
        local = to_local(handover.at, handover.incoming.zone)
        # the watch moves west at the incoming centre's opening (09:00 Tokyo, 08:00
        # Paris and New York); it never moves because of DST
        expected = {"tokyo": time(9), "paris": time(8), "newyork": time(8)}
        assert local.time() == expected[handover.incoming.name], handover


def test_the_weeks_when_europe_and_america_differ(example: Routing) -> None:
    schedule = Schedule(example)
    paris_ny = {}
    for day in (date(2026, 3, 2), date(2026, 3, 10), date(2026, 3, 31)):
        start = datetime.combine(day, time(), UTC)
        for handover in schedule.handovers(start, start + timedelta(days=1)):
            if handover.incoming and handover.incoming.name == "newyork":
                paris_ny[day] = handover.at.time()
    # New York opens at 13:00 UTC in winter, 12:00 UTC from 8 March; Europe changes on
    # 29 March: the Paris shift is an hour shorter in between, and nothing is uncovered
    assert paris_ny == {
        date(2026, 3, 2): time(13),
        date(2026, 3, 10): time(12),
        date(2026, 3, 31): time(12),
    }
    # autumn: Europe leaves summer time on 25 October, America on 1 November
    opening = {}
    for day in (date(2026, 10, 20), date(2026, 10, 27), date(2026, 11, 3)):
        start = datetime.combine(day, time(), UTC)
        for handover in schedule.handovers(start, start + timedelta(days=1)):
            assert handover.incoming is not None
            opening[day, handover.incoming.name] = handover.at.time()
    assert opening == {
        (date(2026, 10, 20), "paris"): time(6),
        (date(2026, 10, 20), "newyork"): time(12),
        (date(2026, 10, 27), "paris"): time(7),
        (date(2026, 10, 27), "newyork"): time(12),
        (date(2026, 11, 3), "paris"): time(7),
        (date(2026, 11, 3), "newyork"): time(13),
    }


def test_a_holiday_leaves_the_watch_with_the_last_centre_out_of_hours(example: Routing) -> None:
    schedule = Schedule(example)
    christmas = datetime(2026, 12, 25, 10, tzinfo=UTC)  # 11:00 in Paris, closed
    watch = schedule.watch(christmas)
    assert watch.site is not None and watch.site.name == "tokyo" and not watch.open


def test_the_dst_rule_for_missing_and_repeated_times() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 02:30 does not exist on 29 March: it is the jump, 03:00 summer time
    assert is_gap(datetime(2026, 3, 29, 2, 30), paris)
    assert local_to_utc(datetime(2026, 3, 29, 2, 30), paris) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    # 02:30 on 25 October occurs twice: the first one (summer time)
    assert local_to_utc(datetime(2026, 10, 25, 2, 30), paris) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )
    new_york = ZoneInfo("America/New_York")
    assert local_to_utc(datetime(2026, 3, 8, 2, 15), new_york) == datetime(
        2026, 3, 8, 7, tzinfo=UTC
    )


@given(st.sampled_from(ZONES), st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31)))
def test_wall_clock_to_instant_never_runs_backwards(zone_name: str, naive: datetime) -> None:
    zone = ZoneInfo(zone_name)
    later = naive + timedelta(minutes=1)
    assert local_to_utc(naive, zone) <= local_to_utc(later, zone)
    if not is_gap(naive, zone):
        assert to_local(local_to_utc(naive, zone), zone) == naive


def test_rosters_hand_over_at_the_local_time_summer_and_winter(example: Routing) -> None:
    paris = example.rosters["paris-oncall"]
    shifts = roster_timeline(paris, *YEAR)
    turns = [
        to_local(after.start, paris.zone)
        for before, after in itertools.pairwise(shifts)
        if before.why == after.why == "layer weekly"
    ]
    # the weekly turn changes on Mondays at 09:00 Paris time, in winter and in summer
    assert len(turns) >= 40
    assert {(t.weekday(), t.time()) for t in turns} == {(0, time(9))}
    for before, after in itertools.pairwise(shifts):
        assert before.end == after.start
    # the override wins over every layer
    assert on_call(paris, datetime(2026, 12, 26, 12, tzinfo=UTC)) == "bruno"
    assert on_call(paris, datetime(2026, 12, 26, 12, tzinfo=UTC) + timedelta(days=3)) in {
        "alice",
        "bruno",
    }


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.integers(0, 1439),
    st.sampled_from(
        [timedelta(hours=8), timedelta(hours=12), timedelta(days=1), timedelta(days=7)]
    ),
    st.sampled_from(["local", "utc"]),
)
def test_turns_never_overlap_and_keep_their_local_time(
    zone_name: str, minute: int, turn: timedelta, anchor: str
) -> None:
    zone = ZoneInfo(zone_name)
    start = datetime(2026, 1, 1) + timedelta(minutes=minute)
    layer = Layer("l", ("a", "b", "c"), turn, start, anchor)  # type: ignore[arg-type]
    roster = Roster("r", zone, (layer,))
    previous = None
    for index in range(0, 365 * 86400 // int(turn.total_seconds())):
        moment = turn_start(layer, zone, index)
        if previous is not None:
            assert moment >= previous  # a turn may shrink in a DST gap, never run back
        previous = moment
        if anchor == "local" and not is_gap(start + index * turn, zone):
            assert to_local(moment, zone) == start + index * turn
        if anchor == "utc":
            assert moment == start.replace(tzinfo=UTC) + index * turn
        after = moment + timedelta(seconds=1)
        if turn_start(layer, zone, index + 1) > after:
            assert on_call(roster, after) == "abc"[index % 3]


def test_overrides_beat_layers_and_nobody_is_none() -> None:
    zone = ZoneInfo("Asia/Tokyo")
    night = WeeklyHours(tuple((Window(18 * 60, 9 * 60),) for _ in range(7)))
    low = Layer("low", ("a",), timedelta(days=7), datetime(2026, 1, 5))
    high = Layer("high", ("b",), timedelta(days=1), datetime(2026, 1, 5), restrict=night)
    noon = datetime(2026, 6, 1, 3, tzinfo=UTC)  # 12:00 in Tokyo
    evening = datetime(2026, 6, 1, 12, tzinfo=UTC)  # 21:00
    roster = Roster("r", zone, (low, high))
    assert on_call(roster, noon) == "a"
    assert on_call(roster, evening) == "b"
    roster = Roster("r", zone, (low, high), (Override("c", noon, evening),))
    assert on_call(roster, noon) == "c"
    assert on_call(roster, evening) == "b"  # the override's end is exclusive
    assert on_call(Roster("r", zone, (high,)), noon) is None


def test_turns_and_windows_in_the_gap_and_the_fold() -> None:
    paris = ZoneInfo("Europe/Paris")
    layer = Layer("nightly", ("a", "b"), timedelta(days=1), datetime(2026, 1, 1, 2, 30))
    index = turn_index(layer, paris, datetime(2026, 3, 28, 12, tzinfo=UTC))
    # 29 March: 02:30 does not exist; that turn starts when the clocks jump (01:00 UTC)
    assert turn_start(layer, paris, index + 1) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    index = turn_index(layer, paris, datetime(2026, 10, 24, 12, tzinfo=UTC))
    starts = [turn_start(layer, paris, index + n) for n in range(3)]
    # 25 October: 02:30 happens twice; the turn starts at the first (00:30 UTC) and
    # lasts 25 hours, to 02:30 winter time on the 26th
    assert starts == [
        datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    # a window wholly inside the gap is empty that day; the next day it is back
    early = hours({6: [Window(2 * 60, 2 * 60 + 30)]})
    spring = weekly_intervals(
        early, paris, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)
    )
    assert spring == []
    autumn = weekly_intervals(
        early, paris, datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)
    )
    assert autumn == [
        (datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    ]


@given(st.integers(0, 1439), st.integers(1, 1440))
@case(0, 1440)
@case(22 * 60, 120)
def test_a_window_reads_back_from_its_text(start: int, length: int) -> None:
    from receiver.sun.model import parse_window

    end = (start + length) % 1440
    window = Window(start, end)
    text = f"{start // 60:02d}:{start % 60:02d}-" + (
        "24:00" if start + length == 1440 else f"{end // 60:02d}:{end % 60:02d}"
    )
    if start == end and length != 1440:
        return
    if length == 1440 and start != 0:
        return  # a whole day from another hour than midnight is written as two windows
    assert parse_window(text) == window
    assert parse_window(str(window)) == window
    assert window.length == length
