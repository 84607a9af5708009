"""The runner's clock: timers on a grid of wake-ups, each at its own network time."""

from __future__ import annotations

import asyncio

import pytest

from modem_drivers.virtual import NetworkTiming, PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner


async def run_timers(granularity: float | None) -> tuple[NetworkRunner, list[tuple[float, float]]]:
    """100 timers, 2 ms of network time apart (a tenth of a line tick): 10 ticks' worth."""
    network = PhoneNetwork(timing=NetworkTiming(line_tick=0.02))
    runner = NetworkRunner(network, time_scale=0.5, granularity=granularity)
    await runner.start()
    seen: list[tuple[float, float]] = []
    done = asyncio.Event()
    start = network.now + 0.1
    times = [start + index * 0.002 for index in range(100)]

    def fire(when: float) -> None:
        seen.append((when, network.now))
        if len(seen) == len(times):
            done.set()

    for when in times:
        runner.at(when, lambda when=when: fire(when))
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await runner.stop()
    return runner, seen


async def test_timers_share_a_wake_up_per_line_tick_and_keep_their_own_times():
    runner, seen = await run_timers(None)
    assert [when for when, _ in seen] == sorted(when for when, _ in seen)
    assert all(now == when for when, now in seen)  # the model's times are untouched
    assert runner.granularity == 0.02
    assert runner.wakeups <= 15  # 10 ticks' worth, not 100 timers


async def test_granularity_zero_wakes_for_every_timer():
    runner, seen = await run_timers(0.0)
    assert all(now == when for when, now in seen)
    assert runner.wakeups > 15  # (a loaded machine runs late and merges some)


def test_negative_granularity_is_refused():
    with pytest.raises(ValueError, match="granularity"):
        NetworkRunner(PhoneNetwork(), granularity=-1.0)
