"""Wall-clock times to instants, with one rule for the times DST makes odd.

A local time that does not exist (the spring-forward gap: 02:30 in Paris on the last
Sunday of March) means the instant the clocks jump (03:00 new time); a local time that
occurs twice (the fall-back fold: 02:30 on the last Sunday of October) means its first
occurrence. Both rules keep the mapping monotonic: a later wall-clock time is never an
earlier instant, so hand-overs computed from wall-clock times never run backwards and
the turn that ends at a time is the turn the next one starts at (no gap, no overlap).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def to_local(at: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time of instant `at` in `zone`."""
    return at.astimezone(zone).replace(tzinfo=None)


def is_gap(naive: datetime, zone: ZoneInfo) -> bool:
    """True when `naive` does not exist in `zone` (skipped by a spring-forward)."""
    instant = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return to_local(instant, zone) != naive


def local_to_utc(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant (aware, UTC) of wall-clock time `naive` in `zone`, by the rule above."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if to_local(first, zone) == naive:
        return first  # exists; fold=0 is the first occurrence when it occurs twice
    # In the gap: fold=1 reads it with the offset after the jump, fold=0 with the one
    # before; the jump lies between the two instants. Find it to the second.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    low, high = min(low, high), max(low, high)
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high
