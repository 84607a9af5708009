"""The bank notices the caller's hang-up promptly (issue 18).

Once the centre's session is complete (everything answered, its FIN out) it lingers in
case its last frame was lost, and the caller hangs up. That hang-up is the expected end
of the call: the NO CARRIER that follows is believed at once (an `AT` probe confirms
it), not after the quiet period and the guarded escape that check a carrier loss in the
middle of a call, and with trusted DCD the first low reading ends the call.
"""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from modem_drivers.hayes.state import CarrierSuspect, CommandKind, ModemCore, State
from tests.bankworld import bank_world
from tests.hayes.test_virtual_integration import _call_on, site  # noqa: F401  (fixture)

CONNECT = b"\r\nCONNECT 2400\r\n"
NO_CARRIER = b"\r\nNO CARRIER\r\n"


def _online_core() -> ModemCore:
    core = ModemCore()
    core.opened()
    core.start_command(b"ATD5551234", CommandKind.DIAL, 0.0, 60.0)
    core.receive(CONNECT, 0.1)
    assert core.state is State.ONLINE_DATA
    return core


def test_a_no_carrier_already_held_is_suspected_from_the_moment_the_end_is_expected():
    core = _online_core()
    assert core.receive(NO_CARRIER, 1.0) == []  # held: it may still be data
    quiet = core.timings.nocarrier_quiet
    assert core.next_deadline() == 1.0 + quiet
    core.expect_call_end(1.2)
    assert core.next_deadline() == 1.2
    assert any(isinstance(e, CarrierSuspect) for e in core.tick(1.2))


def test_a_no_carrier_after_the_end_is_expected_is_suspected_at_once():
    core = _online_core()
    core.expect_call_end(1.0)
    core.receive(NO_CARRIER, 2.0)
    assert core.next_deadline() == 2.0
    assert any(isinstance(e, CarrierSuspect) for e in core.tick(2.0))


def test_without_the_end_expected_a_no_carrier_waits_its_quiet_period():
    core = _online_core()
    core.receive(NO_CARRIER, 1.0)
    assert not any(isinstance(e, CarrierSuspect) for e in core.tick(1.5))


async def test_the_bank_takes_the_callers_hang_up_without_an_escape(tmp_path):
    # on a pty there is no DCD: the call ends by the modem's NO CARRIER, which before
    # issue 18 the bank checked with a guarded `+++` after a second's quiet
    async with bank_world(tmp_path, bank_port="pty") as world:
        bank = world.bank()
        with capture_logs() as logs:
            async with world.serving(bank, stop_within=10):
                report = await world.line_test()
                assert report.result == "ok", report
                calls = await world.settled()
    assert [c.outcome for c in calls] == ["completed"]
    bank_log = [e for e in logs if e.get("port") == "bank0"]
    summary = [e for e in bank_log if e["event"] == "call.summary"]
    assert [e["end"] for e in summary] == ["NO CARRIER"]
    connected = next(i for i, e in enumerate(bank_log) if e["event"] == "call.connected")
    # the driver's transcript of what it wrote (debug level; bytes shown escaped)
    sent = "".join(e["data"] for e in bank_log[connected:] if e["event"] == "modem.tx")
    assert "+++" not in sent  # no escape to check a carrier the caller ended
    assert sent.endswith("\\rAT\\r")  # the probe that confirmed the end
    # nor a hang-up of ours: the call was over before the bank's session returned
    assert not [e for e in bank_log if e["event"] == "call.hangup"]


async def test_one_low_dcd_reading_ends_a_call_whose_end_is_expected(site):  # noqa: F811
    client, call, _ = await _call_on(site, "inproc")
    port = client._port
    real, stale = port.dcd, [False]
    port.dcd = lambda: stale.pop() if stale else real()
    call.expect_end()
    await asyncio.wait_for(call.ended.wait(), client.timings.dcd_poll * 10 + 5)
    assert call.end_reason == "DCD dropped"
