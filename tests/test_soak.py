"""Soak: a device calling a centre over and over on a bad line, in virtual time.

Calls of every kind (clean, noisy, cut mid-transfer, cut at random) carry a stream of
reports; after every call the acknowledgement contract must hold: nothing acknowledged
that is not stored, nothing stored twice, and once the line is good again everything
queued arrives. `-m slow` runs about an hour of simulated line time; the default run is
a short version of the same thing.
"""

from __future__ import annotations

import random

import pytest

from benchmarks.linesim import Centre, Device, LinkSim, enrolled_pair
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from modem_drivers.virtual.line import LineModel

DICTIONARY = load_dictionary(CURRENT_DICTIONARY)


def soak(line_seconds: float, seed: int) -> tuple[int, float]:
    """Returns (calls, simulated seconds on the line)."""
    rng = random.Random(seed)
    device, centre = enrolled_pair(seed=seed)
    seq = 0
    calls = 0
    broken = 0
    spent = 0.0
    while spent < line_seconds:
        for _ in range(rng.randint(0, 3)):
            seq += 1
            device.add(
                seq,
                encode_message(
                    Kind.REPORT,
                    {"component": f"c{seq}", "data": rng.randbytes(rng.randint(10, 3000)).hex()},
                    DICTIONARY,
                ),
            )
        model = LineModel(
            rate=rng.choice([2400, 9600, 14400, 33600]),
            latency=rng.uniform(0.01, 0.3),
            ber=rng.choice([0.0, 0.0, 1e-5, 1e-4]),
            v42=rng.random() < 0.5,
            training_time=0.0,
        )
        cut = rng.choice([None, None, rng.randint(50, 4000)])
        sim = LinkSim(model, seed=rng.randrange(2**31))
        result = sim.call(device, centre, limit=600.0, cut_after_up_bytes=cut)
        calls += 1
        broken += not result.closed
        spent += result.seconds
        _check_contract(device, centre)
    # the line is good again: one clean call delivers everything still queued
    final = LinkSim(LineModel(rate=33600, v42=True, training_time=0.0), seed=seed)
    result = final.call(device, centre)
    assert result.closed, result.failed
    _check_contract(device, centre)
    assert all(device.acknowledged.get(s) for s in device.queue), "undelivered after a clean call"
    assert centre.store_count == len(device.queue)
    assert broken > 0, "the soak never cut or broke a call: it proved nothing about faults"
    return calls, spent


def _check_contract(device: Device, centre: Centre) -> None:
    stored = {seq for (_key, _epoch, seq) in centre.stored}
    acknowledged = {seq for seq, done in device.acknowledged.items() if done}
    assert acknowledged <= stored, f"acknowledged but not stored: {acknowledged - stored}"
    assert all(centre.stored.values()), "an empty message was stored"


def test_soak_short():
    calls, _ = soak(line_seconds=120.0, seed=1)
    assert calls >= 5


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_soak_an_hour_of_line_time(seed):
    calls, spent = soak(line_seconds=3600.0, seed=seed)
    assert spent >= 3600.0
    print(f"soak seed={seed}: {calls} calls, {spent / 60:.0f} min of line time")
