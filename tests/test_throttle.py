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


async def test_a_port_that_keeps_failing_is_logged_a_few_times_then_counted(tmp_path):
    import asyncio

    from structlog.testing import capture_logs

    from callhome.keys import write_private_key
    from receiver.bank import Bank
    from receiver.store import AsyncStore, SQLiteStore

    store = SQLiteStore(tmp_path / "centre.db", create=True)
    key = write_private_key(tmp_path / "centre.key")
    bank = Bank([str(tmp_path / "no-such-tty")], AsyncStore(store), key, scale=0.002)
    stop = asyncio.Event()
    with capture_logs() as logs:
        serving = asyncio.ensure_future(bank.run(stop))
        window = bank.log_throttle._windows
        for _ in range(500):  # until the throttle has held some back
            await asyncio.sleep(0.01)
            if any(held for _, _, held in window.values()):
                break
        stop.set()
        await serving
    store.close()
    down = [line for line in logs if line["event"] == "port.down"]
    assert len(down) == bank.log_throttle.burst
    assert any(held for _, _, held in window.values())
