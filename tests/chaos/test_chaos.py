"""The chaos soak (tests/chaos/soak.py): lost, duplicated, corrupted and leftover
partial rows must all be 0. The short run is part of the suite; `-m slow` (or
`make chaos`) runs longer."""

from __future__ import annotations

import pytest

from .soak import chaos


async def test_chaos_short(tmp_path):
    tally = await chaos(tmp_path, seconds=6.0, seed=7, clients=2, kill_every=3.0, fault_every=1.0)
    print(tally.summary())
    assert tally.queued and tally.kills >= 1 and sum(tally.faults.values()) >= 1
    assert sum(tally.calls.values()) >= 2
    assert (tally.lost, tally.duplicated, tally.corrupted) == (0, 0, 0), tally.summary()
    assert tally.acknowledged_missing == 0 and tally.client_errors == 0, tally.summary()
    assert tally.partial_rows == 0, tally.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
async def test_chaos_long(tmp_path, seed):
    tally = await chaos(tmp_path, seconds=300.0, seed=seed, clients=4, kill_every=30.0)
    print(tally.summary())
    assert tally.clean, tally.summary()
