"""Calls across the virtual network: outcomes, caller ID, hunt groups, escape, DTR."""

from __future__ import annotations

import pytest

from modem_drivers.virtual import PROFILES, PhoneNetwork, State

from .harness import Bench

OK = b"\r\nOK\r\n"

# Real modems; the `emulator` profile deviates on purpose and has its own tests
# (test_emulator.py).
MODEMS = [name for name, p in PROFILES.items() if p.command_syntax == "v250"]


def strip_echo(out: bytes, command: bytes) -> bytes:
    return out[len(command) :] if out.startswith(command) else out


@pytest.fixture
def bench() -> Bench:
    return Bench()


def dial(bench: Bench, modem, number: str, wait: float) -> bytes:
    command = f"ATD{number}\r".encode()
    out = bench.send(modem, command, settle=wait)
    return strip_echo(out, command)


def test_dial_and_auto_answer_connects_both_ends(bench):
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "usr", number="200")
    bench.quiet_echo(caller, callee)
    bench.at(callee, "ATS0=2")
    out = dial(bench, caller, "T200", wait=8)
    assert callee.settings.s[1] == 2  # S1 counted the rings
    bench.run(20)
    assert callee.settings.s[1] == 0  # ... and clears 8 s after the last one
    out += caller.take_output()
    assert out == b"\r\nCONNECT 33600\r\n"
    callee_out = callee.take_output()
    assert callee_out.count(b"RING") == 2
    assert callee_out.endswith(b"\r\nCONNECT 33600/ARQ/V34/LAPM/V42BIS\r\n")
    assert caller.state is State.ONLINE and callee.state is State.ONLINE
    assert caller.dcd and callee.dcd


def test_host_answer_with_ata_after_caller_id(bench):
    caller = bench.modem("caller", "generic", number="5551234", caller_id=None)
    callee = bench.modem("callee", "generic", number="200")
    bench.quiet_echo(caller, callee)
    bench.at(callee, "AT+VCID=1")
    caller.receive(b"ATDT200\r")
    bench.run(1.0 + 2.0 + 0.7)  # dial, first ring, CID after it
    out = callee.take_output()
    assert out.startswith(b"\r\nRING\r\n")
    assert b"NMBR = 5551234" in out and b"DATE = " in out and b"TIME = " in out
    assert bench.at(callee, "ATA", settle=5) == b"\r\nCONNECT 33600\r\n"
    assert caller.take_output() == b"\r\nCONNECT 33600\r\n"


@pytest.mark.parametrize("profile", MODEMS)
def test_caller_id_format_and_timing_per_profile(profile):
    bench = Bench()
    caller = bench.modem("caller", "generic", number="5551234")
    bench.network.line("caller").caller_id = type(bench.network.line("caller").caller_id)(
        number="5551234", name="BUSY BEE CAFE"
    )
    callee = bench.modem("callee", profile, number="200")
    bench.quiet_echo(caller, callee)
    bench.at(callee, "AT+VCID=1")
    callee.take_output()
    caller.receive(b"ATDT200\r")
    bench.run(1.0 + 6.0 + 1.0)  # until just after the second ring
    out = strip_echo(callee.take_output(), b"")
    sep = b" = " if PROFILES[profile].cid_spaces else b"="
    cid = b"NMBR" + sep + b"5551234"
    assert cid in out and b"NAME" + sep + b"BUSY BEE CAFE" in out
    first_ring = out.index(b"RING")
    if PROFILES[profile].cid_before_first_ring:
        assert out.index(cid) < first_ring
    else:
        second_ring = out.index(b"RING", first_ring + 1)
        assert first_ring < out.index(cid) < second_ring


def test_private_and_unavailable_caller(bench):
    network = bench.network
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="200")
    bench.quiet_echo(caller, callee)
    bench.at(callee, "AT+VCID=1")
    for presentation, shown in (("private", b"NMBR = P"), ("unavailable", b"NMBR = O")):
        line = network.line("caller")
        line.caller_id = type(line.caller_id)(number="100", presentation=presentation)
        callee.take_output()
        caller.receive(b"ATDT200\r")
        bench.run(4)
        assert shown in callee.take_output()
        bench.at(caller, "ATH")
        bench.run(10)


def test_vcid_2_gives_the_raw_packet_in_hex(bench):
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="200")
    bench.quiet_echo(caller, callee)
    bench.at(callee, "AT+VCID=2")
    caller.receive(b"ATDT200\r")
    bench.run(4)
    out = callee.take_output()
    line = next(chunk for chunk in out.split(b"\r\n") if chunk.startswith(b"80"))
    packet = bytes.fromhex(line.decode())
    assert sum(packet) % 256 == 0  # MDMF checksum
    assert b"100" in packet


@pytest.mark.parametrize("profile", MODEMS)
def test_busy_outcome_per_x_level(profile):
    for x_level, expected in ((4, b"BUSY"), (3, b"BUSY"), (2, b"NO CARRIER"), (0, b"NO CARRIER")):
        bench = Bench()
        caller = bench.modem("caller", profile, number="100")
        busy = bench.modem("busy", "generic", number="200")
        bench.quiet_echo(caller, busy)
        bench.at(busy, "ATH1")  # off hook: the line is busy
        bench.at(caller, f"ATX{x_level}")
        out = dial(bench, caller, "200", wait=70)
        assert out.strip().endswith(expected), (profile, x_level, out)


@pytest.mark.parametrize("profile", MODEMS)
def test_no_dialtone_spelling_per_profile(profile):
    bench = Bench()
    caller = bench.modem("caller", profile, number="100")
    bench.quiet_echo(caller)
    bench.network.unplug("caller")
    out = dial(bench, caller, "200", wait=5)
    assert out == b"\r\n" + PROFILES[profile].no_dialtone_text.encode() + b"\r\n"
    bench.run(10)  # past the ETSI redial delay of the profiles that enforce it
    bench.at(caller, "ATX3")  # blind dialling: no dial tone detection
    out = dial(bench, caller, "200", wait=70)
    assert out == b"\r\nNO CARRIER\r\n"


def test_no_answer_after_s7(bench):
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="200")
    bench.quiet_echo(caller, callee)
    bench.at(caller, "ATS7=20")
    caller.receive(b"ATDT200\r")
    bench.run(19)
    assert caller.take_output() == b""
    bench.run(3)
    assert caller.take_output() == b"\r\nNO ANSWER\r\n"
    bench.at(caller, "ATX3")
    assert dial(bench, caller, "200", wait=30) == b"\r\nNO CARRIER\r\n"


def test_ring_limit_of_the_exchange(bench):
    network = PhoneNetwork(timing=type(bench.network.timing)(ring_limit=2))
    bench = Bench(network)
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="200")
    bench.quiet_echo(caller, callee)
    bench.at(caller, "ATS7=255")
    out = dial(bench, caller, "200", wait=20)
    assert out == b"\r\nNO ANSWER\r\n"
    assert callee.take_output().count(b"RING") == 2


def test_unallocated_number_sounds_busy(bench):
    caller = bench.modem("caller", "generic", number="100")
    bench.quiet_echo(caller)
    assert dial(bench, caller, "999", wait=5) == b"\r\nBUSY\r\n"


def test_dial_modifiers(bench):
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="5551234")
    bench.quiet_echo(caller, callee)
    bench.at(callee, "ATS0=1")
    out = dial(bench, caller, "T9W,P(555) 123-4!@", wait=1)
    assert out == b""  # still dialling: the digits are 9 5 5 5 1 2 3 4
    bench.run(30)
    assert caller.take_output() == b"\r\nBUSY\r\n"  # 95551234 is not allocated
    assert bench.at(caller, "ATDT555;", settle=2) == OK
    assert caller.state is State.OFF_HOOK
    assert dial(bench, caller, "1234", wait=30) == b"\r\nCONNECT 33600\r\n"
    assert bench.at(caller, "ATDTX12") == b""  # in a call: typed characters are data


def test_invalid_dial_string_is_an_error(bench):
    caller = bench.modem("caller", "generic", number="100")
    bench.quiet_echo(caller)
    assert bench.at(caller, "ATDTXYZ") == b"\r\nERROR\r\n"
    assert bench.at(caller, "ATD") == b"\r\nERROR\r\n"


def test_any_character_aborts_a_dial_after_the_grace_period(bench):
    caller = bench.modem("caller", "generic", number="100")
    callee = bench.modem("callee", "generic", number="200")
    bench.quiet_echo(caller, callee)
    caller.receive(b"ATDT200\r")
    caller.receive(b"\n")  # within 125 ms of the CR: ignored
    bench.run(2)
    assert b"RING" in callee.take_output()
    assert bench.send(caller, b"\r", settle=1) == b"\r\nNO CARRIER\r\n"
    assert caller.state is State.COMMAND
    callee.take_output()
    bench.run(20)
    assert callee.take_output() == b""  # the callee stopped ringing
    assert bench.network.history[-1].outcome == "abandoned"


def test_ata_with_nobody_calling_times_out(bench):
    modem = bench.modem("m", "generic", number="100")
    bench.quiet_echo(modem)
    bench.at(modem, "ATS7=5")
    assert bench.at(modem, "ATA", settle=6) == b"\r\nNO CARRIER\r\n"


def test_hunt_group_rings_the_first_idle_line_and_busy_when_all_are(bench):
    network = bench.network
    bank = [bench.modem(f"bank{i}", "usr") for i in range(3)]
    network.add_hunt_group("5550100", [m.name for m in bank])
    clients = [bench.modem(f"client{i}", "generic", number=f"55500{i}") for i in range(4)]
    bench.quiet_echo(*bank, *clients)
    for modem in bank:
        bench.at(modem, "ATS0=1")
    for client in clients[:3]:
        client.receive(b"ATDT5550100\r")
        bench.run(0.5)
    bench.run(10)
    assert all(m.in_call for m in bank)
    callers = {
        record.callee
        for record in network.active_calls and [c.record for c in network.active_calls]
    }
    assert callers == {"bank0", "bank1", "bank2"}
    assert dial(bench, clients[3], "5550100", wait=5) == b"\r\nBUSY\r\n"
    bench.at(bank[1], "ATH0")  # not in command mode: typed into the call as data
    bank[1].receive(b"")
    bench.network.cut("bank1")
    bench.run(3)
    assert dial(bench, clients[3], "5550100", wait=10) == b"\r\nCONNECT 33600\r\n"


def test_escape_with_guard_times_then_ato_and_ath(bench):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.connect(a, b, "200")
    bench.run(1.2)
    a.receive(b"+++")
    bench.run(0.9)
    assert a.take_output() == b""  # the post-guard has not passed yet
    bench.run(0.2)
    assert a.take_output() == OK and a.state is State.ONLINE_COMMAND
    assert b.take_output() == b"+++"  # the escape characters do reach the far end
    b.receive(b"held while in command mode")
    bench.run(1)
    assert bench.at(a, "ATO") == b"\r\nCONNECT 33600\r\nheld while in command mode"
    assert a.state is State.ONLINE
    bench.run(1.2)
    a.receive(b"+++")
    bench.run(1.1)
    assert a.take_output() == OK
    assert bench.at(a, "ATH0") == OK
    bench.run(2)
    assert b.take_output().endswith(b"\r\nNO CARRIER\r\n")
    assert not b.in_call and not b.dcd


@pytest.mark.parametrize(
    "script",
    [
        [(0.0, b"data+++")],  # no guard before
        [(1.2, b"+++more")],  # data right after
        [(1.2, b"++"), (1.5, b"+")],  # gap between characters longer than the guard
        [(1.2, b"+++"), (0.5, b"x")],  # data inside the post-guard
    ],
)
def test_plus_plus_plus_without_guards_stays_data(bench, script):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.connect(a, b, "200")
    sent = b""
    for pause, data in script:
        bench.run(pause)
        a.receive(data)
        sent += data
    bench.run(3)
    assert a.state is State.ONLINE and a.take_output() == b""
    assert b.take_output() == sent


def test_escape_disabled_with_s2_above_127(bench):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, "ATS2=128")
    bench.connect(a, b, "200")
    bench.run(1.5)
    a.receive(b"+++")
    bench.run(2)
    assert a.state is State.ONLINE


def test_guard_time_follows_s12(bench):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, "ATS12=10")  # 0.2 s
    bench.connect(a, b, "200")
    bench.run(0.25)
    a.receive(b"+++")
    bench.run(0.25)
    assert a.take_output() == OK


@pytest.mark.parametrize(
    ("mode", "state_after", "result", "far_end_drops"),
    [
        (0, State.ONLINE, b"", False),
        (1, State.ONLINE_COMMAND, OK, False),
        (2, State.COMMAND, b"\r\nNO CARRIER\r\n", True),
        (3, State.COMMAND, b"", True),
    ],
)
def test_dtr_drop_per_and_d(bench, mode, state_after, result, far_end_drops):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, f"AT&D{mode}X4")
    bench.connect(a, b, "200")
    a.set_dtr(False)
    bench.run(0.02)  # shorter than S25 (50 ms): ignored
    a.set_dtr(True)
    bench.run(0.2)
    assert a.state is State.ONLINE
    a.set_dtr(False)
    bench.run(0.2)
    assert a.state is state_after
    assert a.take_output() == result
    bench.run(3)
    assert (not b.in_call) is far_end_drops
    if mode == 3:
        assert a.settings.echo  # &D3 reset to the stored (factory) profile


def test_dtr_off_blocks_dialling_and_auto_answer_with_and_d2(bench):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(b, "ATS0=1")
    b.set_dtr(False)
    bench.run(0.1)
    a.receive(b"ATDT200\r")
    bench.run(20)
    assert not b.in_call
    a.set_dtr(False)
    bench.run(0.1)
    assert bench.at(a, "ATDT200").endswith(b"ERROR\r\n")


def test_far_end_hang_up_reports_no_carrier_after_s10(bench):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.connect(a, b, "200")
    bench.network.cut("b")
    bench.run(1.3)
    assert not a.dcd and a.take_output() == b""  # carrier gone, S10 (1.4 s) not yet over
    bench.run(0.2)
    assert a.take_output() == b"\r\nNO CARRIER\r\n"
    assert a.state is State.COMMAND


def test_progress_reports_per_profile(bench):
    a = bench.modem("a", "conexant", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, "ATW1+MR=1;+ER=1;+DR=1")
    bench.at(b, "AT+MR=1;+ER=1;+DR=1")
    bench.at(b, "ATS0=1")
    out = dial(bench, a, "200", wait=30)
    lines = [line for line in out.split(b"\r\n") if line]
    assert lines == [
        b"CARRIER 33600",
        b"PROTOCOL: LAPM",
        b"COMPRESSION: V.42BIS",
        b"+MCR: V34",
        b"+MRR: 33600,33600",
        b"+ER: LAPM",
        b"+DR: V42B",
        b"CONNECT 115200",
    ]
    assert b.take_output().endswith(
        b"\r\n+MCR: V34\r\n\r\n+MRR: 33600,33600\r\n\r\n+ER: LAPM\r\n\r\n+DR: V42B\r\n"
        b"\r\nCONNECT 33600\r\n"
    )


@pytest.mark.parametrize(
    ("profile", "x_level", "v42", "rate", "expected"),
    [
        ("generic", 4, True, 2400, b"CONNECT 2400"),
        ("generic", 0, True, 2400, b"CONNECT"),
        ("usr", 4, True, 33600, b"CONNECT 33600/ARQ/V34/LAPM/V42BIS"),
        ("usr", 4, False, 2400, b"CONNECT 2400/NONE"),
        ("usr", 1, True, 14400, b"CONNECT 14400/ARQ/V32B/LAPM/V42BIS"),
        ("conexant", 4, True, 9600, b"CONNECT 115200"),
    ],
)
def test_connect_forms(profile, x_level, v42, rate, expected):
    bench = Bench()
    a = bench.modem("a", profile, number="100", line={"rate": rate, "v42": v42})
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, f"ATX{x_level}")
    bench.at(b, "ATS0=1")
    out = dial(bench, a, "200", wait=30)
    out = strip_echo(out, b"ATD200\r")
    assert out == b"\r\n" + expected + b"\r\n"


@pytest.mark.parametrize("profile", MODEMS)
def test_numeric_result_codes_per_profile(profile):
    bench = Bench()
    p = PROFILES[profile]
    a = bench.modem("a", profile, number="100", line={"rate": 14400})
    b = bench.modem("b", "generic", number="200")
    busy = bench.modem("busy", "generic", number="300")
    bench.quiet_echo(a, b, busy)
    bench.at(a, "ATV0")
    bench.at(b, "ATS0=1")
    bench.at(busy, "ATH1")

    def numeric(command: str, wait: float) -> bytes:
        out = bench.at(a, command, settle=wait)
        echo = command.encode() + b"\r"
        return out[len(echo) :] if out.startswith(echo) else out

    assert numeric("AT", 0.1) == b"0\r"
    assert numeric("ATX9", 0.1) == b"4\r"
    assert numeric("ATD300", 5) == b"7\r"
    connect = numeric("ATD200", 30)
    dte_style = p.connect_style == "dte"
    assert connect == f"{p.codes.connect_rates[115200 if dte_style else 14400]}\r".encode()
    assert p.codes.connect_rates[14400] != 1


def test_numeric_tables_differ_between_profiles():
    codes = {name: p.codes.connect_rates[14400] for name, p in PROFILES.items()}
    assert len(set(codes.values())) == 3
    delayed = {p.codes.delayed for p in PROFILES.values()}
    assert len(delayed) == 3


def test_etsi_delayed_then_blacklisted(bench):
    a = bench.modem("a", "conexant", number="100")
    busy = bench.modem("busy", "generic", number="200")
    bench.quiet_echo(a, busy)
    bench.at(busy, "ATH1")

    def attempt(wait: float = 5) -> bytes:
        return strip_echo(bench.at(a, "ATD200", settle=wait), b"ATD200\r").strip()

    assert attempt() == b"BUSY"
    assert attempt(0.1) == b"DELAYED"  # within 5 s of the failure
    bench.run(5)
    assert attempt() == b"BUSY"
    assert attempt(0.1) == b"DELAYED"  # now 60 s
    bench.run(60)
    assert attempt() == b"BUSY"
    bench.run(60)
    assert attempt() == b"BUSY"
    bench.run(60)
    assert attempt(0.1) == b"BLACKLISTED"  # four failures within the hour
    bench.at(a, "ATX3")
    assert attempt(0.1) == b"ERROR"  # this vendor sends ERROR below X4
    bench.run(3600)
    bench.at(busy, "ATH0")
    bench.at(busy, "ATS0=1")
    bench.at(a, "ATX4")
    assert attempt(30).startswith(b"CONNECT")


def test_generic_profile_sends_no_carrier_below_x4_for_blacklisting():
    bench = Bench()
    from modem_drivers.virtual import BlacklistRule

    a = bench.modem("a", "generic", number="100", blacklist=BlacklistRule(delays=(10,)))
    busy = bench.modem("busy", "generic", number="200")
    bench.quiet_echo(a, busy)
    bench.at(busy, "ATH1")
    bench.at(a, "ATD200", settle=5)
    bench.at(a, "ATX3")
    assert bench.at(a, "ATD200") == b"\r\nNO CARRIER\r\n"


def test_z_hangs_up_a_call(bench):
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.connect(a, b, "200")
    bench.run(1.2)
    a.receive(b"+++")
    bench.run(1.2)
    a.take_output()
    assert bench.at(a, "ATZ") == OK
    bench.run(2)
    assert not b.in_call
