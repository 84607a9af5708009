"""Scenarios 8-11 of the field notes, where the timing of the driver's writes matters."""

from __future__ import annotations

import asyncio

import pytest

from modem_drivers.hayes import (
    HayesModem,
    ModemBusy,
    ModemNotResponding,
    ModemTimeout,
    Outcome,
    PortGone,
    PortOpenError,
    ResultKind,
    State,
    Timings,
)

from .fake import FakeModem, until

FAST = Timings().scaled(0.1)  # guard 0.1 s, command timeout 0.3 s, ...


@pytest.fixture
def fake():
    modem = FakeModem()
    yield modem
    modem.close()


async def ready(fake: FakeModem, **kwargs) -> HayesModem:
    modem = await HayesModem.open(fake.url, timings=kwargs.pop("timings", FAST), **kwargs)
    await modem.initialize()
    return modem


async def connected(fake: FakeModem, modem: HayesModem):
    fake.replies[b"ATD5551234"] = lambda line: (fake.go_online(), b"\r\nCONNECT 2400\r\n")[1]
    outcome = await modem.dial("5551234")
    assert outcome.connected
    return outcome.call


def times_of(fake: FakeModem, data: bytes) -> list[float]:
    return [t for t, d in fake.writes if d == data]


# 8 -------------------------------------------------------------------------------------


async def test_8_hangup_ladder_dtr_then_guarded_escape_then_ath(fake):
    modem = await ready(fake)
    call = await connected(fake, modem)
    call.write(b"last data before hanging up")
    # This modem ignores DTR and stays online, silent: the ladder must escape with guards.

    def escape_answer() -> None:
        fake.online = False
        fake.send(b"\r\nOK\r\n", FAST.guard)

    loop = asyncio.get_running_loop()
    fake.replies[b"ATH0"] = lambda line: (setattr(fake, "dcd", False), b"\r\nNO CARRIER\r\n")[1]
    watcher = loop.create_task(_when_plus_plus_plus(fake, escape_answer))
    report = await modem.hangup()
    watcher.cancel()

    assert report.method == "escape"
    lows = [t for t, level in fake.dtr_log if not level]
    highs = [t for t, level in fake.dtr_log if level]
    assert lows and highs[-1] - lows[0] >= FAST.dtr_drop  # DTR low long enough (> S25)
    plus = times_of(fake, b"+++")
    assert len(plus) == 1  # exactly `+++`, in one write
    before = [t for t, _ in fake.writes if t < plus[0]]
    after = [t for t, _ in fake.writes if t > plus[0]]
    assert plus[0] - before[-1] >= FAST.guard  # silence before
    assert after[0] - plus[0] >= FAST.guard  # silence after
    assert fake.written().endswith(b"ATH0\rAT\r")
    assert modem.state is State.IDLE and not call.open


async def _when_plus_plus_plus(fake: FakeModem, action) -> None:
    seen = 0
    while True:
        await asyncio.sleep(0.005)
        if b"+++" in fake.written()[seen:]:
            action()
            return


async def test_8_ath_accepts_ok_or_no_carrier(fake):
    for answer in (b"\r\nOK\r\n", b"\r\nNO CARRIER\r\n"):
        modem = await ready(fake)
        call = await connected(fake, modem)
        fake.on_dtr_off = lambda answer=answer: (
            setattr(fake, "online", False),
            setattr(fake, "dcd", False),
            fake.send(answer),
        )
        report = await modem.hangup()
        assert report.method == "dtr" and not call.open
        await modem.close()


async def test_8_ladder_ends_with_atz_then_reopen(fake):
    modem = await ready(fake, timings=Timings().scaled(0.05))
    await connected(fake, modem)
    fake.online = False
    fake.silent = True  # nothing works: DTR, +++, ATH0 and ATZ all go unanswered

    async def revive() -> None:
        while b"ATZ\r" not in fake.written()[-20:]:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        fake.silent = False  # it comes back to life, reset: on hook, DCD low
        fake.dcd = False

    reviver = asyncio.get_running_loop().create_task(revive())
    report = await modem.hangup()
    await reviver
    assert report.method in ("atz", "reopen")
    assert fake.written().count(b"ATZ\r") >= 1
    # a reset modem has its stored settings, not ours: the driver sets it up again
    after_reset = fake.written().rsplit(b"ATZ\r", 1)[1]
    assert b"ATE0\r" in after_reset and b"AT&C1\r" in after_reset
    assert modem.state is State.IDLE and (await modem.command("AT")).ok


async def test_8_plus_plus_plus_inside_data_does_not_escape():
    """The driver never sends `+++` except guarded, so user data carries it as data."""
    fake = FakeModem()
    modem = await ready(fake)
    call = await connected(fake, modem)
    call.write(b"+++")
    await asyncio.sleep(FAST.guard * 2)
    assert modem.state is State.ONLINE_DATA and call.open
    fake.close()


# 9 -------------------------------------------------------------------------------------


async def test_9_late_reply_is_not_credited_to_the_next_command(fake):
    modem = await ready(fake)
    fake.replies[b"AT+GCAP"] = None  # silent past the deadline ...
    fake.replies[b"ATI3"] = b"\r\nFW 1.0\r\n\r\nOK\r\n"
    loop = asyncio.get_running_loop()
    started = loop.time()
    for delay in (0.1, 0.2, 0.3):
        fake.send(b"\r\nRING\r\n", delay * FAST.command_timeout)  # chatter, no extension
    with pytest.raises(ModemTimeout):
        await modem.command("AT+GCAP")
    assert loop.time() - started == pytest.approx(FAST.command_timeout, abs=0.05)
    fake.send(b"\r\nOK\r\n", 0.01)  # ... then its OK turns up as ATI3 is issued
    response = await modem.command("ATI3")
    assert response.ok and response.info == (b"FW 1.0",)
    tail = fake.written()[fake.written().index(b"AT+GCAP\r") :]
    assert tail == b"AT+GCAP\rAT\rATI3\r"  # resynchronised with AT first
    assert modem.consecutive_timeouts == 0


async def test_9_consecutive_timeouts_count_as_liveness(fake):
    modem = await ready(fake)
    fake.silent = True
    for expected in (1, 2):
        # the second one resynchronises first, and finds nobody there
        with pytest.raises((ModemTimeout, ModemNotResponding)):
            await modem.command("ATI0", timeout=0.1)
        assert modem.consecutive_timeouts >= expected


# 10 ------------------------------------------------------------------------------------


async def test_10_no_writes_during_dial_and_a_deliberate_abort(fake):
    modem = await ready(fake)
    fake.replies[b"ATDT5551234"] = None  # the modem is dialling ...
    dial = asyncio.ensure_future(modem.dial("T5551234"))
    await until(lambda: b"ATDT5551234\r" in fake.written())
    before = len(fake.writes)
    with pytest.raises(ModemBusy):
        await modem.command("AT")  # a keep-alive tick must not write
    assert len(fake.writes) == before
    fake.default = b"\r\nNO CARRIER\r\n"
    await modem.abort()
    outcome = await dial
    assert outcome.outcome is Outcome.ABORTED
    dial_at = times_of(fake, b"ATDT5551234\r")[0]
    abort_at = times_of(fake, b"\r")[0]
    assert abort_at - dial_at >= FAST.core.abort_grace  # 125 ms, scaled with the rest
    # then, as after every failed dial, hang up and resynchronise before anything else
    assert [d for _, d in fake.writes[before - 1 :]] == [
        b"ATDT5551234\r",
        b"\r",
        b"ATH0\r",
        b"AT\r",
    ]


async def test_10_cancelling_a_dial_aborts_it(fake):
    modem = await ready(fake)
    fake.replies[b"ATD5551234"] = None
    dial = asyncio.ensure_future(modem.dial("5551234"))
    await until(lambda: b"ATD5551234\r" in fake.written())
    fake.default = b"\r\nNO CARRIER\r\n"
    dial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dial
    assert b"ATD5551234\r\r" in fake.written()
    assert modem.state is State.IDLE


async def test_10_dial_timeout_aborts_and_reports_timeout(fake):
    modem = await ready(fake)
    fake.replies[b"ATD5551234"] = None
    fake.default = b"\r\nNO CARRIER\r\n"
    outcome = await modem.dial("5551234", timeout=0.2)
    assert outcome.outcome is Outcome.TIMEOUT
    assert fake.written().endswith(b"ATD5551234\r\rATH0\rAT\r")


# 11 ------------------------------------------------------------------------------------


async def test_11_garbage_and_nuls(fake):
    modem = await ready(fake)
    fake.replies[b"ATI0"] = b"\x00\x00\r\n\xe9\xffRING\r\n\r\nOK\r\n"
    response = await modem.command("ATI0")
    assert response.ok and response.info == (b"\xe9\xffRING",)


async def test_11_port_loss_fails_the_pending_command_once_then_reopen(fake):
    modem = await ready(fake)
    fake.replies[b"ATI0"] = None
    pending = asyncio.ensure_future(modem.command("ATI0"))
    await until(lambda: b"ATI0\r" in fake.written()[-5:])
    fake.lose_port()
    with pytest.raises(PortGone):
        await pending
    with pytest.raises(PortGone):
        await modem.command("AT")
    assert modem.state is State.CLOSED
    fake.replies[b"ATI0"] = b"\r\nGENERIC\r\n\r\nOK\r\n"
    fake.writes.clear()
    info = await modem.reopen(retry_delays=[0.01, 0.01])
    assert info.profile == "generic"
    assert b"AT+VCID=1\r" in fake.written() and b"ATZ\r" in fake.written()


async def test_11_reopen_backs_off_while_the_port_is_missing(fake):
    modem = await ready(fake)
    fake.close()
    fake.lose_port()
    with pytest.raises(PortOpenError) as info:
        await modem.reopen(retry_delays=[0.01])
    assert "inproc" in str(info.value) or "fake" in str(info.value)


async def test_command_response_carries_result_and_info(fake):
    modem = await ready(fake)
    fake.replies[b"ATS7?"] = b"\r\n050\r\n\r\nOK\r\n"
    response = await modem.command("S7?")
    assert response.result is ResultKind.OK and response.info == (b"050",)


async def test_no_ath_goes_out_once_a_call_rings_in(fake):
    """A RING that arrives while a hang-up waits its turn withholds the ATH: it would
    reject the new call."""
    from modem_drivers.hayes import procedures as proc
    from modem_drivers.hayes.state import CommandKind

    modem = await ready(fake)
    fake.send(b"\r\nRING\r\n")
    await until(lambda: modem.state is State.RINGING)
    before = len(fake.writes)
    answer = await modem._send(proc.Send(b"ATH0", CommandKind.HANGUP, 1.0))
    assert isinstance(answer, proc.Withheld) and len(fake.writes) == before


async def test_waiting_for_quiet_gives_up_on_a_line_that_never_falls_silent(fake):
    modem = await ready(fake)
    loop = asyncio.get_running_loop()
    chatter = loop.create_task(_chatter(fake))
    try:
        started = loop.time()
        await modem._quiet(0.02)  # data every 5 ms: never 20 ms of silence
        assert loop.time() - started < 0.02 * 20 + 0.5
    finally:
        chatter.cancel()


async def _chatter(fake: FakeModem) -> None:
    while True:
        fake.send(b"x")
        await asyncio.sleep(0.005)


async def test_a_cancelled_dial_leaves_the_modem_idle_and_hangs_up_a_late_connect(fake):
    modem = await ready(fake)
    fake.replies[b"ATD5551234"] = None
    dial = asyncio.ensure_future(modem.dial("5551234"))
    await until(lambda: b"ATD5551234\r" in fake.written())
    # the abort character races a CONNECT: the call came up anyway
    fake.default = lambda line: (fake.go_online(), b"\r\nCONNECT 2400\r\n")[1]
    fake.on_dtr_off = lambda: (
        setattr(fake, "online", False),
        setattr(fake, "dcd", False),
        fake.send(b"\r\nNO CARRIER\r\n"),
    )
    dial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dial
    assert modem.state is State.IDLE  # not ABORTING, not a call nobody reads
    fake.default = b"\r\nOK\r\n"
    assert (await modem.command("AT")).ok
