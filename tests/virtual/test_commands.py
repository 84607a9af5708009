"""Byte-script tests of the virtual modem's command interpreter (no I/O, virtual time)."""

from __future__ import annotations

import pytest

from modem_drivers.virtual import PROFILES, State

from .harness import Bench

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"

# Real modems; the `emulator` profile deviates on purpose (test_emulator.py).
MODEMS = {name: p for name, p in PROFILES.items() if p.command_syntax == "v250"}


@pytest.fixture
def bench() -> Bench:
    return Bench()


@pytest.fixture
def modem(bench: Bench):
    return bench.modem("m", "generic")


def test_echo_on_by_default_then_off(bench, modem):
    assert bench.at(modem, "AT") == b"AT\r" + OK
    assert bench.at(modem, "ATE0") == b"ATE0\r" + OK  # echoed while typed, E0 applies at CR
    assert bench.at(modem, "AT") == OK


def test_profile_that_keeps_echo_despite_e0(bench):
    modem = bench.modem("c", "conexant")
    bench.at(modem, "ATE0")
    assert bench.at(modem, "ATI0") == b"ATI0\r\r\n56000\r\n" + OK


def test_several_commands_on_one_line(bench, modem):
    bench.quiet_echo(modem)
    assert bench.at(modem, "ATV1X3S0=2&C1&D2") == OK
    s = modem.settings
    assert (s.x_level, s.s[0], s.dcd_mode, s.dtr_mode) == (3, 2, 1, 2)


def test_execution_stops_at_first_bad_command(bench, modem):
    bench.quiet_echo(modem)
    assert bench.at(modem, "ATX3Y7S0=5") == ERROR
    assert modem.settings.x_level == 3  # ran before the bad command
    assert modem.settings.s[0] == 0  # after it: never ran


@pytest.mark.parametrize(
    "command",
    ["ATE2", "ATX9", "AT&D7", "AT&K2", "ATS99=1", "ATS7=300", "ATS0", "AT+NOPE", "ATI9", "ATQ5"],
)
def test_bad_commands_are_errors(bench, modem, command):
    bench.quiet_echo(modem)
    assert bench.at(modem, command) == ERROR


def test_lowercase_and_spaces(bench, modem):
    bench.quiet_echo(modem)
    assert bench.at(modem, "at x 2 s0 = 3") == OK  # V.250 ignores spaces
    assert bench.at(modem, "At x1") == OK
    assert modem.settings.x_level == 1 and modem.settings.s[0] == 3


def test_command_line_length_limit(bench, modem):
    bench.quiet_echo(modem)
    limit = PROFILES["generic"].max_command_length
    assert bench.at(modem, "AT" + "E0" * (limit // 2)) == OK
    assert bench.at(modem, "AT" + "E0" * (limit // 2) + "E0") == ERROR


def test_a_slash_repeats_the_last_command_line(bench, modem):
    bench.quiet_echo(modem)
    assert bench.at(modem, "ATI3") == b"\r\ncallhome virtual V.250 modem 1.0\r\n" + OK
    assert bench.send(modem, b"A/") == b"\r\ncallhome virtual V.250 modem 1.0\r\n" + OK


def test_backspace_edits_the_line(bench, modem):
    bench.quiet_echo(modem)
    assert bench.send(modem, b"ATX3\x08" + b"2\r") == OK
    assert modem.settings.x_level == 2


def test_garbage_before_at_is_ignored(bench, modem):
    bench.quiet_echo(modem)
    assert bench.send(modem, b"\x00\xff\x13zzqA\x01TX1\r") == b""  # `A` then not `T`
    assert bench.send(modem, b"\x00\xffzzATX1\r") == OK


def test_verbose_and_numeric_framing(bench):
    for name, profile in MODEMS.items():
        modem = bench.modem(f"v-{name}", name)
        bench.quiet_echo(modem)

        def at(command: str, modem=modem, sticky_echo=profile.echo_ignores_e0) -> bytes:
            out = bench.at(modem, command)
            echo = command.encode() + b"\r"
            return out[len(echo) :] if sticky_echo and out.startswith(echo) else out

        assert at("ATV0") == b"0\r"
        assert at("ATX9") == b"4\r"
        assert at("ATS7?") == f"{profile.factory.s_registers[7]:03d}\r\n".encode() + b"0\r"
        assert at("ATV1") == OK


def test_quiet_suppresses_results_but_not_information(bench, modem):
    bench.quiet_echo(modem)
    assert bench.at(modem, "ATQ1") == b""
    assert bench.at(modem, "ATS0?") == b"\r\n000\r\n"
    assert bench.at(modem, "ATQ0") == OK


@pytest.mark.parametrize("register", [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 25])
def test_s_registers_set_and_query(bench, modem, register):
    bench.quiet_echo(modem)
    value = {3: 13, 4: 10, 5: 8}.get(register, 42)  # keep the framing characters sane
    assert bench.at(modem, f"ATS{register}={value}") == OK
    assert bench.at(modem, f"ATS{register}?") == f"\r\n{value:03d}\r\n".encode() + OK


def test_s3_and_s4_change_the_framing(bench, modem):
    bench.quiet_echo(modem)
    bench.at(modem, "ATS4=33")  # '!' as the line feed character
    assert bench.at(modem, "AT") == b"\r!OK\r!"


def test_identity_strings_per_profile(bench):
    for name, profile in MODEMS.items():
        modem = bench.modem(f"i-{name}", name)
        bench.quiet_echo(modem)
        for index, lines in profile.identity.items():
            expected = b"\r\n" + b"\r\n".join(line.encode() for line in lines) + b"\r\n" + OK
            out = bench.at(modem, f"ATI{index}")
            if profile.echo_ignores_e0:
                out = out.split(b"\r", 1)[1]
            assert out == expected, (name, index)
        out = bench.at(modem, "ATI")
        assert profile.identity[0][0].encode() in out


def test_extended_commands(bench, modem):
    bench.quiet_echo(modem)
    assert bench.at(modem, "AT+VCID=1") == OK
    assert bench.at(modem, "AT+VCID?") == b"\r\n+VCID: 1\r\n" + OK
    assert bench.at(modem, "AT+VCID=?") == b"\r\n+VCID: (0-2)\r\n" + OK
    assert bench.at(modem, "AT+MR=2;+ER=1;+DR=1") == OK
    assert (
        modem.settings.report_modulation,
        modem.settings.report_error_control,
        modem.settings.report_compression,
    ) == (2, 1, 1)
    assert bench.at(modem, "AT+ER=2") == ERROR
    assert bench.at(modem, "AT+GCAP") == b"\r\n+GCAP: +MS,+ES,+DS\r\n" + OK
    assert bench.at(modem, "AT+FCLASS=0") == OK


def test_z_restores_stored_profile_and_f_restores_factory(bench, modem):
    bench.quiet_echo(modem)
    bench.at(modem, "ATX2S0=3")
    assert bench.at(modem, "AT&W") == OK
    bench.at(modem, "ATX4S0=0")
    assert bench.at(modem, "ATZ") == OK
    assert modem.settings.x_level == 2 and modem.settings.s[0] == 3
    assert bench.at(modem, "AT&F") == OK  # typed with echo off; &F turns it back on
    assert modem.settings.s[0] == 0 and modem.settings.echo
    assert bench.at(modem, "AT") == b"AT\r" + OK


def test_and_v_shows_settings(bench, modem):
    bench.quiet_echo(modem)
    out = bench.at(modem, "AT&V")
    assert b"&C1 &D2 &K3" in out and out.endswith(OK)


def test_every_character_is_split_anywhere(bench):
    """Feeding a command line one byte at a time gives the same bytes as one write."""
    script = b"ATE1V1X4S7=30&C1\rATI3\rATS7?\r"
    whole = bench.modem("whole")
    expected = bench.send(whole, script)
    for split in range(1, len(script)):
        modem = bench.modem(f"split{split}")
        modem.take_output()
        modem.receive(script[:split])
        modem.receive(script[split:])
        bench.run()
        assert modem.take_output() == expected, split


def test_result_framing_follows_v_in_each_profile(bench):
    for name in MODEMS:
        modem = bench.modem(f"f-{name}", name)
        modem.receive(b"ATE0V0\r")
        bench.run()
        out = modem.take_output()
        assert out.endswith(b"0\r")
        assert modem.state is State.COMMAND
