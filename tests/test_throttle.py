"""Log lines that repeat are rate-limited with a count (issue 14)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modem_drivers.logs import Throttle


def test_a_repeating_line_is_let_through_a_few_times_then_counted():
    throttle = Throttle(burst=2, period=60.0)
    shown = [throttle.allow("port.down", float(t)) for t in range(10)]
    assert shown[:2] == [{}, {}] and shown[2:] == [None] * 8
    assert throttle.allow("other", 5.0) == {}  # keys are independent
    assert throttle.allow("port.down", 61.0) == {"suppressed": 8}
    assert throttle.allow("port.down", 62.0) == {}


@given(st.lists(st.floats(0, 1000), max_size=200))
def test_every_line_is_shown_or_counted(times):
    throttle = Throttle(burst=3, period=10.0)
    shown = counted = 0
    for now in sorted(times):
        fields = throttle.allow("k", now)
        if fields is not None:
            shown += 1
            counted += fields.get("suppressed", 0)
    pending = throttle._windows.get("k", (0.0, 0, 0))[2]
    assert shown + counted + pending == len(times)
