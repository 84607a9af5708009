"""A modem this process set up moments ago is checked with one `AT` (issue 18)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from modem_drivers.hayes import HayesModem, ModemError
from modem_drivers.hayes import modem as modem_module
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner
from tests.hayes.test_virtual_integration import sim_timings

SCALE = 0.05


@pytest.fixture
async def runner():
    modem_module._RECENT_SETUPS.clear()
    network = PhoneNetwork()
    network.add_modem("plant", "usr", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    yield runner
    await runner.stop()
    modem_module._RECENT_SETUPS.clear()


async def _set_up(url: str, **kwargs) -> tuple[HayesModem, object]:
    modem = await HayesModem.open(url, timings=sim_timings(SCALE), name="plant", **kwargs)
    try:
        return modem, await modem.initialize()
    finally:
        with contextlib.suppress(ModemError):
            await modem.close()


async def test_a_second_set_up_moments_later_is_one_at(runner, tmp_path):
    url = (await runner.expose("plant", "pty", path=str(tmp_path / "plant"))).url
    _, first = await _set_up(url)
    assert runner.bytes_from_dte > 60  # ATZ, ATI0, ATI3 and a dozen settings
    before = runner.bytes_from_dte
    _, second = await _set_up(url)
    assert runner.bytes_from_dte - before == len(b"AT\r")
    assert second.profile == first.profile == "usr"
    assert second.settings == first.settings


async def test_a_modem_reset_meanwhile_is_set_up_in_full(runner, tmp_path):
    url = (await runner.expose("plant", "pty", path=str(tmp_path / "plant"))).url
    await _set_up(url)
    runner.apply_fault("reset", "plant")  # factory settings: echo on, auto-answer ...
    before = runner.bytes_from_dte
    _, info = await _set_up(url)
    assert runner.bytes_from_dte - before > 60  # ATZ, ATI, every setting again
    assert info.profile == "usr"
    assert runner.network.modem("plant").settings.echo is False


async def test_other_settings_or_an_old_set_up_mean_a_full_one(runner, tmp_path):
    url = (await runner.expose("plant", "pty", path=str(tmp_path / "plant"))).url
    await _set_up(url)
    before = runner.bytes_from_dte
    await _set_up(url, init=["S7=45"])
    assert runner.bytes_from_dte - before > 60
    recent = modem_module._RECENT_SETUPS[url]
    modem_module._RECENT_SETUPS[url] = dataclasses.replace(recent, at=recent.at - 3600)
    before = runner.bytes_from_dte
    await _set_up(url, init=["S7=45"])
    assert runner.bytes_from_dte - before > 60
