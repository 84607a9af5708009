"""The driver against modems that do not read V.250 as we do (issue 8): a scripted fake
that mis-parses extended commands, keeps numeric mode over ATZ, prints nothing for ATI,
swallows the command after a failed dial and answers ATH0 twice."""

from __future__ import annotations

import pytest

from modem_drivers.hayes import (
    HayesModem,
    InitialisationError,
    Outcome,
    SetupOptions,
    State,
    Timings,
    dial_string,
)

from .fake import FakeModem

FAST = Timings().scaled(0.1)
CODES = {b"OK": b"0", b"CONNECT": b"1", b"NO CARRIER": b"3", b"ERROR": b"4", b"BUSY": b"7"}


class Emulator:
    """Just enough of a tcpser-like command parser to reproduce the field traces."""

    def __init__(self, fake: FakeModem, *, verbose: bool = True) -> None:
        self.fake = fake
        self.verbose = verbose
        self.swallow_next = False
        self.off_hook = False
        self.seen: list[bytes] = []
        fake.default = self.reply
        fake.replies.clear()

    def result(self, word: bytes) -> bytes:
        return b"\r\n" + word + b"\r\n" if self.verbose else CODES[word] + b"\r"

    def reply(self, line: bytes) -> bytes:
        line = line.upper()
        self.seen.append(line)
        if self.swallow_next:
            self.swallow_next = False
            return b"\r\nOK\r\n"
        if not line.startswith(b"AT"):
            return self.result(b"ERROR")
        body = line[2:]
        if body.startswith(b"+"):
            # `+` is skipped, then the letters are basic commands: V (numeric!), then a
            # D dials whatever follows; anything else is accepted silently
            if b"V" in body[:2]:
                self.verbose = False
            if b"D" in body:
                self.off_hook = True
                return self.result(b"NO CARRIER")
            return self.result(b"OK")
        if body.startswith(b"V"):
            self.verbose = body[1:2] != b"0"
        if body.startswith(b"H"):
            self.off_hook = False
            return self.result(b"OK") + self.result(b"OK")  # answered twice
        if body.startswith(b"D"):
            self.swallow_next = True
            return self.result(b"BUSY")
        return self.result(b"OK")  # ATZ keeps settings; ATI prints only OK


@pytest.fixture
def fake():
    modem = FakeModem()
    yield modem
    modem.close()


async def test_extended_setting_misparsed_is_refused_and_the_modem_restored(fake):
    emulator = Emulator(fake)
    modem = await HayesModem.open(fake.url, timings=FAST)
    info = await modem.initialize()
    refused = {result.setting.command: result for result in info.settings if not result.accepted}
    assert "'3' (numeric NO CARRIER)" in refused[b"AT+VCID=1"].answer
    # one extended command showed the modem mis-parses them: the rest are not sent (a
    # second one might dial), and they are listed as refused with the reason
    assert not refused[b"AT+DR=1"].sent and b"+DR=1" not in b"".join(emulator.seen)
    assert emulator.verbose and not emulator.off_hook
    assert {result.setting.command for result in info.settings if result.accepted} >= {
        b"ATE0",
        b"ATV1",
        b"ATQ0",
        b"AT&K3",
    }
    assert (await modem.command("AT")).ok and modem.state is State.IDLE
    await modem.close()


async def test_numeric_mode_left_from_an_earlier_run_is_undone(fake):
    emulator = Emulator(fake, verbose=False)  # ATZ will not reset it
    modem = await HayesModem.open(fake.url, timings=FAST)
    await modem.initialize()
    assert emulator.verbose
    response = await modem.command("ATI0")
    assert response.ok and response.info == ()
    await modem.close()


async def test_a_required_setting_refused_stops_set_up_quoting_the_answer(fake):
    fake.replies[b"ATQ0"] = b"\r\nERROR\r\n"
    modem = await HayesModem.open(fake.url, timings=FAST)
    with pytest.raises(InitialisationError, match=r"ATQ0 \(.*\) was answered 'ERROR'"):
        await modem.initialize()
    await modem.close()


async def test_an_optional_setting_answered_error_marks_the_feature_absent(fake):
    fake.replies[b"AT+VCID=1"] = b"\r\nERROR\r\n"
    modem = await HayesModem.open(fake.url, timings=FAST)
    info = await modem.initialize()
    assert [(r.setting.command, r.answer) for r in info.refused] == [(b"AT+VCID=1", "'ERROR'")]
    # ERROR is a clean refusal: the other extended settings are still tried
    assert b"AT+MR=1\r" in fake.written()
    lines = fake.written().split(b"\r")
    assert all(b";" not in line for line in lines)  # one verified setting per line
    await modem.close()


async def test_no_answer_is_reported_as_such(fake):
    fake.replies[b"AT&K3"] = None
    modem = await HayesModem.open(fake.url, timings=FAST)
    info = await modem.initialize()
    (refused,) = info.refused
    assert refused.setting.command == b"AT&K3" and "nothing" in refused.answer
    await modem.close()


async def test_user_init_and_skip(fake):
    init, skip = ["S0=1", "AT&W0"], ["+VCID", "&K"]
    modem = await HayesModem.open(fake.url, timings=FAST, init=init, skip=skip)
    await modem.initialize()
    sent = fake.written().split(b"\r")
    assert b"ATS0=1" in sent and b"ATS0=0" not in sent and b"AT&W0" in sent
    assert b"AT+VCID=1" not in sent and b"AT&K3" not in sent
    await modem.close()


async def test_a_user_setting_refused_stops_set_up(fake):
    fake.replies[b"AT&W0"] = b"\r\nERROR\r\n"
    modem = await HayesModem.open(fake.url, timings=FAST, init=["AT&W0"])
    with pytest.raises(InitialisationError, match="AT&W0"):
        await modem.initialize()
    await modem.close()


@pytest.mark.parametrize(
    ("init", "skip"), [(["ATV0"], []), (["ATQ1"], []), ([], ["E"]), (["AT\x01"], [])]
)
def test_setup_options_refuse_what_breaks_the_driver(init, skip):
    with pytest.raises(ValueError):
        SetupOptions.from_config(init=init, skip=skip)


async def test_minimal_profile_sends_only_what_is_required(fake):
    modem = await HayesModem.open(fake.url, timings=FAST, profile="minimal")
    info = await modem.initialize()
    assert [r.setting.command for r in info.settings] == [b"ATE0", b"ATV1", b"ATQ0"]
    await modem.close()


async def test_a_swallowed_dial_is_resynchronised_and_dialled_again(fake):
    emulator = Emulator(fake)
    modem = await HayesModem.open(fake.url, timings=FAST, profile="minimal")
    await modem.initialize()
    first = await modem.dial("5550101")
    assert first.outcome is Outcome.BUSY
    # after the failed dial: ATH0 (answered twice), then AT -> OK, before anything else
    assert fake.written().endswith(b"ATD5550101\rATH0\rAT\r")
    emulator.swallow_next = True  # as if the hang-up had not consumed it
    second = await modem.dial("5550102")
    assert second.outcome is Outcome.BUSY
    assert fake.written().count(b"ATD5550102\r") == 2
    await modem.close()


async def test_numeric_results_are_understood_with_and_without_echo(fake):
    """After a set-up the driver believes V1; a bare number to a command that may print
    text is taken for text until no final result follows (the time-out), then read as
    the numeric result it was, and verbose mode is restored."""
    modem = await HayesModem.open(fake.url, timings=FAST, profile="minimal")
    await modem.initialize()
    for answer in (b"0\r", b"\r\n0\r\n", b"ATI9\r0\r", b"ATI9\r\r\n0\r\n"):
        fake.replies[b"ATI9"] = answer
        fake.replies[b"ATV1"] = b"\r\nOK\r\n"
        response = await modem.command("ATI9")
        assert response.ok, answer
        assert (await modem.command("AT")).ok
    await modem.close()


def test_dial_strings_accept_addresses_verbatim():
    assert dial_string("127.0.0.1:6400") == "127.0.0.1:6400"
    assert dial_string("T127.0.0.1:26402") == "T127.0.0.1:26402"
    assert dial_string("bank.example.net:23") == "bank.example.net:23"
    assert dial_string(" 555-0100 ") == "5550100"  # formatting goes, nothing else changes
    for bad in (
        "555.0100",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "host:port",
        "1.2.3.4.5:9",
        "host:\u0666\u0664",
        "\u0665\u0665\u0665",
    ):
        with pytest.raises(ValueError):
            dial_string(bad)
