"""One retry policy: bounded, jittered, reproducible."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhome.backoff import Backoff


def test_without_jitter_it_doubles_to_the_cap():
    backoff = Backoff(1.0, 2.0, 10.0, "none")
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next() == 1


def test_attempt_twenty_at_a_minute_waits_at_most_the_cap():
    backoff = Backoff(60.0, 2.0, 3600.0, "full", rng=random.Random(1))
    delays = [backoff.next() for _ in range(20)]
    assert max(delays) <= 3600.0


def test_iteration_gives_the_configured_number_of_delays():
    assert len(list(Backoff(0.1, attempts=5))) == 5


@given(
    initial=st.floats(0.001, 100),
    factor=st.floats(1, 10),
    extra=st.floats(0, 1000),
    jitter=st.sampled_from(["none", "full", "decorrelated"]),
    seed=st.integers(0, 2**32),
    count=st.integers(1, 200),
)
def test_every_delay_is_finite_and_within_bounds(initial, factor, extra, jitter, seed, count):
    cap = initial + extra
    backoff = Backoff(initial, factor, cap, jitter, rng=random.Random(seed))
    for _ in range(count):
        delay = backoff.next()
        assert math.isfinite(delay) and 0 <= delay <= cap + 1e-9


def test_a_thousand_devices_do_not_redial_in_step():
    """Devices that lost the line at the same moment spread their retries."""
    for jitter, most in (("none", 1000), ("full", 30), ("decorrelated", 30)):
        rng = random.Random(7)
        third = [
            sum(Backoff(60, 2, 3600, jitter, rng=rng).next() for _ in range(3)) for _ in range(1000)
        ]
        # with jitter no one-second slot holds more than 3% of the fleet; without, all
        slots: dict[int, int] = {}
        for t in third:
            slots[int(t)] = slots.get(int(t), 0) + 1
        assert max(slots.values()) <= most, jitter
        assert jitter != "none" or len(slots) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": float("nan")},
        {"cap": float("inf")},
        {"initial": -1},
        {"factor": 0.5},
        {"initial": 10, "cap": 1},
    ],
)
def test_nonsense_is_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_same_seed_same_delays():
    a = Backoff(1, 2, 60, rng=random.Random(3))
    b = Backoff(1, 2, 60, rng=random.Random(3))
    assert [a.next() for _ in range(10)] == [b.next() for _ in range(10)]
