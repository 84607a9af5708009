"""Who, at a given instant: the centre on duty and the person on call. Sans-IO: every
function takes the instant (an aware datetime) and reads no clock.

The watch: a centre is on duty from the moment its business hours begin. When several
centres are open at once, the one that opened last has the watch (the sun moves west:
the incoming centre takes over when it opens); when none is open, the one that closed
last keeps it out of hours (its on-call roster is paged). So at every instant exactly
one centre is on duty, and every hand-over happens at a configured local time: the
opening of the incoming centre, or the closing of a centre that hands the watch back
to one still open. A centre's public holiday removes the windows starting that day.
Wall-clock times go to instants by `localtime.local_to_utc` (DST gap: the jump; fold:
the first occurrence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .localtime import local_to_utc, to_local
from .model import Layer, Roster, Routing, Site, WeeklyHours

LOOKBACK = timedelta(days=21)
"""How far back `on_duty` looks for the last opening (three weeks of holidays)."""
Interval = tuple[datetime, datetime]


def utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def weekly_intervals(
    hours: WeeklyHours,
    zone: ZoneInfo,
    start: datetime,
    end: datetime,
    holidays: Iterable[object] = (),
) -> list[Interval]:
    """The windows of `hours` as merged UTC intervals that overlap [start, end). A
    window belongs to the local date it starts on; a holiday drops that date's windows."""
    skip = set(holidays)
    first = to_local(start, zone).date() - timedelta(days=2)
    last = to_local(end, zone).date() + timedelta(days=1)
    found: list[Interval] = []
    day = first
    while day <= last:
        if day not in skip:
            midnight = datetime(day.year, day.month, day.day)
            for window in hours.windows(day.weekday()):
                begin = local_to_utc(midnight + timedelta(minutes=window.start), zone)
                finish = local_to_utc(
                    midnight + timedelta(minutes=window.start + window.length), zone
                )
                if finish > begin:  # a window wholly inside a DST gap is empty
                    found.append((begin, finish))
        day += timedelta(days=1)
    found.sort()
    merged: list[Interval] = []
    for begin, finish in found:
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((begin, finish))
    return [(b, f) for b, f in merged if f > start and b < end]


def within(
    hours: WeeklyHours, zone: ZoneInfo, at: datetime, holidays: Iterable[object] = ()
) -> bool:
    return any(
        b <= at < f
        for b, f in weekly_intervals(hours, zone, at, at + timedelta(seconds=1), holidays)
    )


# -- rosters ---------------------------------------------------------------------------


def turn_start(layer: Layer, zone: ZoneInfo, index: int) -> datetime:
    """The instant turn `index` of `layer` begins (turn 0 begins at `layer.start`)."""
    if layer.anchor == "utc":
        return layer.start.replace(tzinfo=UTC) + index * layer.turn
    # wall-clock arithmetic: a daily turn starts at the same local time every day,
    # whatever DST did in between
    return local_to_utc(layer.start + index * layer.turn, zone)


def turn_index(layer: Layer, zone: ZoneInfo, at: datetime) -> int:
    """The turn under way at `at`: the last one that has begun."""
    origin = turn_start(layer, zone, 0)
    index = math.floor((at - origin) / layer.turn)
    # DST moves local turns by at most a few hours: a few steps settle it
    while turn_start(layer, zone, index + 1) <= at:
        index += 1
    while turn_start(layer, zone, index) > at:
        index -= 1
    return index


def layer_person(layer: Layer, zone: ZoneInfo, at: datetime) -> str | None:
    if layer.restrict is not None and not within(layer.restrict, zone, at):
        return None
    if not layer.members:
        return None
    return layer.members[turn_index(layer, zone, at) % len(layer.members)]


def on_call_detail(roster: Roster, at: datetime) -> tuple[str | None, str]:
    """(person, why): an override, else the highest layer that applies, else nobody."""
    for override in reversed(roster.overrides):
        if override.start <= at < override.end:
            return override.who, "override"
    for layer in reversed(roster.layers):
        person = layer_person(layer, roster.zone, at)
        if person is not None:
            return person, f"layer {layer.name}"
    return None, "nobody"


def on_call(roster: Roster, at: datetime) -> str | None:
    return on_call_detail(roster, at)[0]


def roster_boundaries(roster: Roster, start: datetime, end: datetime) -> list[datetime]:
    """Every instant in [start, end) where the person on call may change."""
    points = {start}
    for override in roster.overrides:
        points.update((override.start, override.end))
    for layer in roster.layers:
        index = turn_index(layer, roster.zone, start)
        while True:
            index += 1
            moment = turn_start(layer, roster.zone, index)
            if moment >= end:
                break
            points.add(moment)
        if layer.restrict is not None:
            for begin, finish in weekly_intervals(layer.restrict, roster.zone, start, end):
                points.update((begin, finish))
    return sorted(p for p in points if start <= p < end)


@dataclass(frozen=True)
class Shift:
    start: datetime
    end: datetime
    person: str | None
    why: str


def roster_timeline(roster: Roster, start: datetime, end: datetime) -> list[Shift]:
    """Who is on call over [start, end), as consecutive shifts (one per change)."""
    shifts: list[Shift] = []
    points = roster_boundaries(roster, start, end)
    for index, moment in enumerate(points):
        person, why = on_call_detail(roster, moment)
        finish = points[index + 1] if index + 1 < len(points) else end
        if shifts and shifts[-1].person == person and shifts[-1].why == why:
            shifts[-1] = Shift(shifts[-1].start, finish, person, why)
        else:
            shifts.append(Shift(moment, finish, person, why))
    return shifts


# -- centres -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """A stretch of time one centre is on duty; `open`: within its business hours."""

    start: datetime
    end: datetime
    site: Site | None
    open: bool


@dataclass(frozen=True)
class Handover:
    at: datetime
    outgoing: Site | None
    incoming: Site | None


class Schedule:
    """The watch of the routing file's sites."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self.sites = routing.sites

    def intervals(self, site: Site, start: datetime, end: datetime) -> list[Interval]:
        return weekly_intervals(site.hours, site.zone, start, end, site.holidays)

    def is_open(self, site: Site, at: datetime) -> bool:
        return any(b <= at < f for b, f in self.intervals(site, at, at + timedelta(seconds=1)))

    def timeline(self, start: datetime, end: datetime) -> list[Watch]:
        """Who has the watch over [start, end): consecutive stretches, one per change of
        centre or of open/out-of-hours."""
        per_site = [self.intervals(site, start - LOOKBACK, end) for site in self.sites]
        points = {start}
        for intervals in per_site:
            for begin, finish in intervals:
                points.update((begin, finish))
        ordered = sorted(p for p in points if start <= p < end)
        pointers = [0] * len(self.sites)
        watches: list[Watch] = []
        for number, moment in enumerate(ordered):
            best_open: tuple[datetime, int] | None = None
            best_closed: tuple[datetime, int] | None = None
            for index, intervals in enumerate(per_site):
                while pointers[index] < len(intervals) and intervals[pointers[index]][1] <= moment:
                    pointers[index] += 1
                position = pointers[index]
                if position < len(intervals) and intervals[position][0] <= moment:
                    # open now; the later opening wins, and on a tie the site listed first
                    if best_open is None or intervals[position][0] > best_open[0]:
                        best_open = (intervals[position][0], index)
                elif position > 0:
                    closed = intervals[position - 1][1]
                    if best_closed is None or closed > best_closed[0]:
                        best_closed = (closed, index)
            if best_open is not None:
                site: Site | None = self.sites[best_open[1]]
                is_open = True
            else:
                site = self.sites[best_closed[1]] if best_closed is not None else None
                is_open = False
            finish = ordered[number + 1] if number + 1 < len(ordered) else end
            if watches and watches[-1].site == site and watches[-1].open == is_open:
                watches[-1] = Watch(watches[-1].start, finish, site, is_open)
            else:
                watches.append(Watch(moment, finish, site, is_open))
        return watches

    def watch(self, at: datetime) -> Watch:
        """The centre on duty at `at` (None only when no centre opened in three weeks)."""
        return self.timeline(at, at + timedelta(seconds=1))[-1]

    def on_duty(self, at: datetime) -> Site | None:
        return self.watch(at).site

    def handovers(self, start: datetime, end: datetime) -> list[Handover]:
        """Every change of centre in (start, end)."""
        out: list[Handover] = []
        previous: Site | None = None
        for number, watch in enumerate(self.timeline(start, end)):
            if number and watch.site != previous:
                out.append(Handover(watch.start, previous, watch.site))
            previous = watch.site
        return out

    def next_opening(self, at: datetime, horizon: timedelta = LOOKBACK) -> datetime | None:
        """When business hours next begin at any centre (now, if one is open)."""
        for watch in self.timeline(at, at + horizon):
            if watch.open:
                return watch.start
        return None

    def roster_of(self, site: Site | None) -> Roster | None:
        if site is None or site.roster is None:
            return None
        return self.routing.rosters.get(site.roster)
