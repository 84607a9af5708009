"""The `emulator` profile: a tcpser-like software Hayes emulator, one test per deviation.

Each deviation is a profile flag; the tests also check that the real-modem profiles keep
their behaviour. Byte scripts in virtual time; command scripts are also fed split at
every position, which must not change a single output byte.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from modem_drivers.virtual import PROFILES, PhoneNetwork, State, VirtualModem
from modem_drivers.virtual.commandline import address_or_number
from modem_drivers.virtual.profiles import EMULATOR
from modem_drivers.virtual.states import TRANSITIONS, Event, ModemStateError, next_state

from .harness import Bench

OK = b"\r\nOK\r\n"
NO_CARRIER = b"\r\nNO CARRIER\r\n"


@pytest.fixture
def bench() -> Bench:
    return Bench()


def emulator(bench: Bench, name: str = "emu", number: str | None = "111", **flags) -> VirtualModem:
    profile = dataclasses.replace(EMULATOR, **flags) if flags else "emulator"
    modem = bench.modem(name, profile, number=number)  # type: ignore[arg-type]
    bench.quiet_echo(modem)
    return modem


def run_script(
    profile, script: bytes, splits: tuple[int, ...] = (), settle: float = 1.0, prelude: bytes = b""
):
    """A fresh emulator fed `script` in pieces cut at `splits`; its output and state."""
    bench = Bench()
    modem = bench.modem("m", profile, number="111")
    bench.network.add_modem("far", "generic", number="222").set_dtr(True)
    if prelude:
        modem.receive(prelude)
        bench.run(settle)
    bounds = (0, *splits, len(script))
    for start, end in itertools.pairwise(bounds):
        modem.receive(script[start:end])
        bench.run(0.001)
    bench.run(settle)
    return modem.take_output(), modem.state, dataclasses.astuple(modem.settings)


def assert_split_anywhere(
    profile, script: bytes, settle: float = 1.0, prelude: bytes = b""
) -> bytes:
    whole = run_script(profile, script, settle=settle, prelude=prelude)
    for cut in range(1, len(script)):
        assert run_script(profile, script, (cut,), settle, prelude) == whole, cut
    return whole[0]


# -- extended commands, as tcpser's parser reads them -----------------------------------


def test_vcid_is_v0_c_i_and_a_dial_of_equals_one(bench):
    emu = emulator(bench)
    out = bench.at(emu, "AT+VCID=1", settle=1)
    assert out == b"\r\n3\r\n"  # V0 first, then the dial of "=1" fails: numeric NO CARRIER
    assert not emu.settings.verbose
    assert emu.state is State.STRANDED  # ... and it stays off hook
    assert bench.network.history[-1].number == "=1"


def test_dr_is_a_dial_of_r_equals_one(bench):
    emu = emulator(bench)
    assert bench.at(emu, "AT+DR=1", settle=1) == NO_CARRIER
    assert bench.network.history[-1].number == "R=1"


def test_er_turns_echo_off(bench):
    emu = emulator(bench)
    emu.settings.echo = True
    assert bench.at(emu, "AT+ER=1") == b"AT+ER=1\r" + OK  # echoed while E was still 1
    assert not emu.settings.echo


def test_gcap_answers_the_line(bench):
    emu = emulator(bench, number="222")
    caller = bench.modem("caller", "generic", number="100")
    bench.quiet_echo(caller)
    assert bench.at(emu, "AT+GCAP") == b""  # idle: G, C ignored, A finds nothing to answer
    caller.receive(b"ATD222\r")
    bench.run(2)
    assert emu.take_output() == b"\r\nRING\r\n"
    assert bench.at(emu, "AT+GCAP", settle=0.5) == b"\r\nCONNECT 38400\r\n"
    bench.run(1)
    assert caller.in_call and emu.in_call


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("AT+MR=2", OK),  # M0, R, =2
        ("AT+GMI", OK),  # G, M0, I
        ("AT+FCLASS=0", b"\r\nERROR\r\n"),  # F, C, L0: L takes 1-3 only
        ("AT&F&D2&W&V", OK),  # &-commands tcpser does not know: accepted, ignored
        ("AT%C0\\N3-K1:E", OK),  # vendor prefixes swallow one command each
        ("ATS7=30S7?", b"\r\n030" + OK),
        ("ATE2", b"\r\nERROR\r\n"),
        ("AT&K3&C1X4Q0", OK),
    ],
)
def test_tcpser_parse_table(bench, command, expected):
    emu = emulator(bench)
    assert bench.at(emu, command) == expected


@pytest.mark.parametrize("command", [b"AT+VCID=1\r", b"AT+DR=1\r", b"AT+ER=1\rAT\r", b"AT+GCAP\r"])
def test_extended_commands_split_anywhere(command):
    assert_split_anywhere("emulator", b"ATE1\r" + command)


def test_real_modems_still_know_extended_commands(bench):
    for name, profile in PROFILES.items():
        if profile.command_syntax != "v250":
            continue
        modem = bench.modem(f"m-{name}", name)
        bench.quiet_echo(modem)
        out = bench.at(modem, "AT+VCID=1")
        assert out.endswith(OK) and modem.settings.vcid == 1 and modem.settings.verbose


# -- identity and reset ---------------------------------------------------------------


def test_ati_prints_only_ok_and_atz_keeps_settings(bench):
    emu = emulator(bench)
    assert bench.at(emu, "ATI0") == OK
    assert bench.at(emu, "ATI3") == OK
    assert bench.at(emu, "ATI") == OK
    assert bench.at(emu, "ATV0") == b"\r\n0\r\n"  # tcpser frames numeric codes like texts
    assert bench.at(emu, "ATZ") == b"\r\n0\r\n"  # numeric mode survives ATZ
    assert not emu.settings.verbose
    assert bench.at(emu, "ATV1") == OK


def test_identity_and_reset_flags_alone(bench):
    plain = PROFILES["generic"]
    quiet_i = bench.modem("q", dataclasses.replace(plain, identity_text=False))
    sticky_z = bench.modem("z", dataclasses.replace(plain, z_resets=False))
    bench.quiet_echo(quiet_i, sticky_z)
    assert bench.at(quiet_i, "ATI3") == OK
    bench.at(sticky_z, "ATV0")
    assert bench.at(sticky_z, "ATZ") == b"0\r"  # V.250 framing, but still numeric
    normal = bench.modem("n", "generic")
    bench.quiet_echo(normal)
    bench.at(normal, "ATV0")
    assert bench.at(normal, "ATZ") == OK and normal.settings.verbose  # reset to V1 first


# -- the caller's side: CONNECT on link-up, BUSY / NO ANSWER as data ------------------


def test_connect_as_soon_as_the_link_is_up(bench):
    emu = emulator(bench)
    callee = bench.modem("callee", "generic", number="222")
    bench.quiet_echo(callee)
    emu.receive(b"ATDT222\r")
    bench.run(0.15)  # NetworkTiming.link_setup
    assert emu.take_output() == b"\r\nCONNECT 38400\r\n"
    assert emu.in_call and emu.dcd and not emu.far_end_answered
    emu.receive(b"early bytes")  # held until somebody answers
    bench.run(1)
    assert callee.take_output() == b"\r\nRING\r\n"
    out = bench.at(callee, "ATA", settle=10)
    assert out == b"\r\nCONNECT 33600\r\nearly bytes"
    assert emu.take_output() == b""  # no second CONNECT
    assert emu.far_end_answered
    callee.receive(b"reply")
    bench.run(1)
    assert emu.take_output() == b"reply"


def test_busy_arrives_as_text_then_no_carrier(bench):
    emu = emulator(bench)
    busy = emulator(bench, "busy", number="222")
    bench.at(busy, "ATH1")  # off hook: busy
    emu.receive(b"ATD222\r")
    bench.run(0.15)  # NO CARRIER at once: an emulator does not wait S10 for a closed link
    assert emu.take_output() == b"\r\nCONNECT 38400\r\nBUSY\n" + NO_CARRIER
    assert bench.network.history[-1].outcome == "busy"


def test_carrier_loss_waits_s10_only_on_real_modems(bench):
    for profile, wait in (("emulator", 0.0), ("generic", 1.4)):
        bench = Bench()
        modem = bench.modem("m", profile, number="111")
        bench.quiet_echo(modem)
        busy = bench.modem("busy", "generic", number="222")
        bench.at(busy, "ATS0=1")
        modem.receive(b"ATD222\r")
        bench.run(20)
        assert modem.in_call and modem.far_end_answered
        modem.take_output()
        bench.network.cut("busy")
        if wait:
            bench.run(wait - 0.05)
            assert modem.take_output() == b"", profile
        bench.run(0.05)
        assert modem.take_output() == NO_CARRIER, profile
        assert not modem.in_call


def test_busy_in_numeric_mode(bench):
    emu = emulator(bench)
    bench.at(emu, "ATV0")
    busy = bench.modem("busy", "generic", number="222")
    bench.at(busy, "ATH1")
    emu.receive(b"ATD222\r")
    bench.run(3)
    assert emu.take_output() == b"\r\n28\r\nBUSY\n\r\n3\r\n"  # tcpser: CONNECT 38400 is 28


@pytest.mark.parametrize("timeout", [40.0, 12.5])
def test_no_answer_after_the_timeout_then_no_carrier(bench, timeout):
    emu = emulator(bench, no_answer_timeout=timeout)
    bench.modem("callee", "generic", number="222")
    emu.receive(b"ATD222\r")
    bench.run(0.15)
    assert emu.take_output() == b"\r\nCONNECT 38400\r\n"
    bench.run(timeout - 0.2)
    assert emu.take_output() == b""
    bench.run(0.2)
    assert emu.take_output() == b"NO ANSWER\n" + NO_CARRIER
    assert bench.network.history[-1].outcome == "no-answer"


def test_nobody_at_the_address_is_no_carrier_at_once(bench):
    emu = emulator(bench)
    assert bench.at(emu, "ATDT10.0.0.9:23", settle=0.15) == NO_CARRIER
    assert emu.state is State.STRANDED


def test_real_modems_report_busy_as_a_result(bench):
    modem = bench.modem("m", "generic", number="111")
    busy = bench.modem("busy", "generic", number="222")
    bench.quiet_echo(modem, busy)
    bench.at(busy, "ATH1")
    assert bench.at(modem, "ATD222", settle=5) == b"\r\nBUSY\r\n"
    assert modem.state is State.COMMAND


# -- the swallowed command after a failed dial ----------------------------------------


def test_the_command_after_a_failed_dial_is_swallowed(bench):
    emu = emulator(bench)
    assert bench.at(emu, "ATD5550102", settle=1) == NO_CARRIER  # nobody has that number
    assert emu.state is State.STRANDED
    assert bench.network.line("emu").off_hook  # a caller to us would hear busy
    assert bench.at(emu, "ATV0") == OK  # not echoed, not run: just OK
    assert emu.settings.verbose and emu.state is State.COMMAND
    assert bench.at(emu, "ATV0") == b"\r\n0\r\n"  # the next one runs


def test_swallow_after_busy_and_after_a_bare_atd(bench):
    emu = emulator(bench)
    busy = bench.modem("busy", "generic", number="222")
    bench.at(busy, "ATH1")
    bench.at(emu, "ATD222", settle=3)
    assert emu.state is State.STRANDED
    assert bench.at(emu, "ATD333") == OK  # the next number is never dialled
    assert len(bench.network.history) == 1
    assert bench.at(emu, "ATD") == b""  # off hook with no number: no result at all
    assert bench.at(emu, "AT") == OK  # swallowed too


def test_swallow_split_anywhere():
    # echo on: the swallowed line is not echoed, the next one is
    out = assert_split_anywhere("emulator", b"ATE0V0\rAT\r", prelude=b"ATE1\rATD9\r")
    assert out == b"ATE1\r" + OK + b"ATD9\r" + NO_CARRIER + OK + b"AT\r" + OK


def test_real_modems_do_not_swallow(bench):
    modem = bench.modem("m", "generic", number="111")
    bench.quiet_echo(modem)
    assert bench.at(modem, "ATD5550102", settle=5) == b"\r\nBUSY\r\n"  # unallocated
    assert bench.at(modem, "ATV0") == b"0\r"


# -- +++ ------------------------------------------------------------------------------


def test_escape_is_unanswered_in_command_mode(bench):
    emu = emulator(bench)
    assert bench.send(emu, b"+++", settle=3) == b""
    assert bench.at(emu, "AT") == OK


def test_escape_reaches_the_far_end_as_data(bench):
    emu = emulator(bench)
    far = emulator(bench, "far", number="222")
    bench.at(far, "ATS0=1")
    emu.receive(b"ATD222\r")
    bench.run(10)
    assert emu.in_call and far.in_call
    emu.take_output(), far.take_output()
    bench.run(1.5)  # guard time before
    emu.receive(b"+++")
    bench.run(1.5)  # and after
    assert emu.take_output() == OK
    assert far.take_output() == b"+++"


# -- the callee's side: ATH while ringing, ATH0 twice, RING every 4 s --------------------


def test_ath_while_ringing_rejects_the_call(bench):
    caller = bench.modem("caller", "generic", number="100")
    emu = emulator(bench, number="222")
    bench.quiet_echo(caller)
    caller.receive(b"ATD222\r")
    bench.run(1.5)
    assert emu.take_output() == b"\r\nRING\r\n"
    assert bench.at(emu, "ATH") == OK + OK
    bench.run(0.1)
    assert caller.take_output() == NO_CARRIER
    assert bench.network.history[-1].outcome == "rejected"
    bench.run(10)
    assert emu.take_output() == b""  # no more rings


def test_real_modems_ignore_ath_while_ringing(bench):
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="222")
    bench.quiet_echo(caller, callee)
    caller.receive(b"ATD222\r")
    bench.run(1.5)
    assert bench.at(callee, "ATH") == OK
    bench.run(6)
    assert b"RING" in callee.take_output()  # still ringing


def test_ath0_is_answered_twice(bench):
    emu = emulator(bench)
    far = bench.modem("far", "generic", number="222")
    bench.at(far, "ATS0=1")
    assert bench.at(emu, "ATH0") == OK + OK  # idle
    emu.receive(b"ATD222\r")
    bench.run(15)
    assert emu.far_end_answered
    emu.take_output()
    bench.run(1.5)
    emu.receive(b"+++")
    bench.run(1.5)
    assert emu.take_output() == OK
    assert bench.at(emu, "ATH0") == NO_CARRIER + OK  # a call was up
    generic = bench.modem("g", "generic")
    bench.quiet_echo(generic)
    assert bench.at(generic, "ATH0") == OK


@pytest.mark.parametrize("interval", [4.0, 1.5])
def test_ring_cadence(bench, interval):
    caller = bench.modem("caller", "generic", number="100")
    emulator(bench, number="222", ring_interval=interval)
    rings: list[float] = []
    callee = bench.network.modem("emu")
    original = callee.incoming_ring

    def ring() -> None:
        rings.append(bench.network.now)
        original()

    callee.incoming_ring = ring  # type: ignore[method-assign]
    caller.receive(b"ATD222\r")
    bench.run(30)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(rings)}
    assert gaps == {interval}


# -- host:port ------------------------------------------------------------------------


def test_dial_host_and_port(bench):
    emu = emulator(bench)
    target = emulator(bench, "target", number="127.0.0.1:6400")
    bench.at(target, "ATS0=1")
    assert bench.at(emu, "ATDT127.0.0.1:6400", settle=0.15) == b"\r\nCONNECT 38400\r\n"
    bench.run(5)
    assert target.in_call
    call = next(iter(bench.network.active_calls))
    assert call.number == "127.0.0.1:6400" and call.callee is not None
    assert call.callee.name == "target"


@pytest.mark.parametrize("number", ["127.0.0.1:6400", "bbs.example.org:23", "host:1"])
def test_network_accepts_addresses_as_numbers(number):
    PhoneNetwork().add_modem("m", "emulator", number=number)


@pytest.mark.parametrize("number", ["127.0.0.1", "a b:23", ":23", "host:123456", "555-0102"])
def test_network_refuses_what_is_neither(number):
    with pytest.raises(ValueError, match="invalid number"):
        PhoneNetwork().add_modem("m", "generic", number=number)


def test_real_modems_refuse_addresses_unless_flagged(bench):
    bench.modem("target", "generic", number="10.1.2.3:23")
    plain = bench.modem("plain", "generic")
    wifi = bench.modem("wifi", dataclasses.replace(PROFILES["generic"], dials_addresses=True))
    bench.quiet_echo(plain, wifi)
    assert bench.at(plain, "ATDT10.1.2.3:23") == b"\r\nERROR\r\n"
    bench.at(wifi, "ATDT10.1.2.3:23", settle=5)
    assert bench.network.line("target").call is not None


# -- the state table ------------------------------------------------------------------


def test_every_state_can_be_left_and_reached():
    targets = set(TRANSITIONS.values())
    sources = {state for state, _ in TRANSITIONS}
    assert targets == sources == set(State)


def test_a_transition_outside_the_table_is_a_bug():
    with pytest.raises(ModemStateError):
        next_state(State.COMMAND, Event.RESUMED)
    assert next_state(State.STRANDED, Event.ON_HOOK) is State.COMMAND


def test_bare_atd_after_ath1_strands_too(bench):
    """Found by test_fuzz: ATH1 (off hook) then a bare ATD."""
    emu = emulator(bench)
    assert bench.at(emu, "ATH1") == OK
    assert bench.at(emu, "ATD") == b""
    assert emu.state is State.STRANDED
    assert bench.at(emu, "ATV0") == OK and emu.settings.verbose


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            b"ATI0\rATI3\rATV0\rATZ\rAT\r",
            b"ATI0\r" + OK + b"ATI3\r" + OK + b"ATV0\r\r\n0\r\nATZ\r\r\n0\r\nAT\r\r\n0\r\n",
        ),
        (b"ATH0\r", b"ATH0\r" + OK + OK),
        (b"ATS7=30S7?\r", b"ATS7=30S7?\r\r\n030" + OK),
        (b"+++AT\r", b"+++AT\r" + OK),
        (b"AT+ER=1\rAT\r", b"AT+ER=1\r" + OK + OK),  # echo off after +ER=1
    ],
)
def test_command_scripts_split_anywhere(script, expected):
    assert assert_split_anywhere("emulator", b"ATE1\r" + script) == b"ATE1\r" + OK + expected


@pytest.mark.parametrize(
    ("dialled", "number"),
    [
        ("5550102", "5550102"),
        ("555-0102", "5550102"),
        ("(555) 0102", "5550102"),
        ("127.0.0.1:6400", "127.0.0.1:6400"),
        ("bbs.example.org:23", "bbs.example.org:23"),
        ("=1", "=1"),
        ("R=1", "R=1"),
    ],
)
def test_what_the_emulator_dials(dialled, number):
    assert address_or_number(dialled) == number
