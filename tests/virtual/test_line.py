"""The line model (rate, latency, errors, stalls, drops) and the scriptable modem faults."""

from __future__ import annotations

import pytest

from modem_drivers.virtual import LineModel, PhoneNetwork, State
from modem_drivers.virtual.profiles import get_profile

from .harness import Bench


def connected_pair(bench: Bench, **line):
    a = bench.modem("a", "generic", number="100", line=line)
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.connect(a, b, "200")
    return a, b


def pump(bench: Bench, sender, receiver, payload: bytes, seconds: float, step: float = 0.01):
    """Feed `payload` as fast as the modem takes it (CTS), for `seconds`; return received."""
    pending = payload
    received = bytearray()
    elapsed = 0.0
    while elapsed < seconds:
        if pending and sender.accepting():
            taken = sender.receive(pending)
            pending = pending[taken:]
        bench.run(step)
        elapsed += step
        received += receiver.take_output()
    return bytes(received), pending


def pump_both(
    bench: Bench, a, b, to_b: bytes, to_a: bytes, seconds: float, step: float = 0.01
) -> tuple[bytes, bytes]:
    """Full duplex: feed both payloads at once; return (what b received, what a received)."""
    at_b, at_a = bytearray(), bytearray()
    elapsed = 0.0
    while elapsed < seconds:
        if to_b and a.accepting():
            to_b = to_b[a.receive(to_b) :]
        if to_a and b.accepting():
            to_a = to_a[b.receive(to_a) :]
        bench.run(step)
        elapsed += step
        at_b += b.take_output()
        at_a += a.take_output()
    return bytes(at_b), bytes(at_a)


@pytest.mark.parametrize("rate", [300, 2400, 9600, 33600])
def test_throughput_is_ten_bit_times_per_byte(rate):
    bench = Bench()
    a, b = connected_pair(bench, rate=rate, latency=0.0)
    seconds = 10.0
    at_b, at_a = pump_both(bench, a, b, b"\x55" * (rate * 2), b"\xaa" * (rate * 2), seconds)
    expected = rate / 10 * seconds
    for received, byte in ((at_b, 0x55), (at_a, 0xAA)):  # full duplex: each way at full rate
        assert abs(len(received) - expected) <= max(2, 0.01 * expected)
        assert set(received) == {byte}


def test_latency_delays_every_byte():
    bench = Bench()
    a, b = connected_pair(bench, rate=33600, latency=0.3)
    a.receive(b"x")
    bench.run(0.29)
    assert b.take_output() == b""
    bench.run(0.02)
    assert b.take_output() == b"x"


def test_rate_is_the_lowest_of_line_and_modems():
    bench = Bench()
    a, b = connected_pair(bench, rate=14400)
    assert a.rate == b.rate == 14400
    assert next(iter(bench.network.active_calls)).record.rate == 14400


def test_cts_holds_the_dte_while_the_buffer_is_full():
    bench = Bench()
    a, _b = connected_pair(bench, rate=2400)
    taken = a.receive(b"y" * 10_000)
    assert taken == get_profile("generic").tx_buffer_arq  # the modem's transmit buffer
    assert not a.accepting() and not a.cts
    bench.run(0.5)
    assert a.accepting()


def test_without_flow_control_an_overrun_loses_data():
    bench = Bench()
    a = bench.modem("a", "generic", number="100", line={"rate": 2400})
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, "AT&K0")
    bench.connect(a, b, "200")
    assert a.receive(b"z" * 5000) == 5000
    bench.run(30)
    assert len(b.take_output()) == get_profile("generic").tx_buffer_arq


def test_xon_xoff_flow_control_eats_those_bytes():
    bench = Bench()
    a = bench.modem("a", "generic", number="100", line={"rate": 2400})
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.at(a, "AT&K4")
    bench.connect(a, b, "200")
    a.receive(b"ab\x11cd\x13ef")
    bench.run(1)
    assert b.take_output() == b"abcdef"  # why binary protocols need RTS/CTS
    a.receive(b"q" * 4000)  # more than the transmit buffer
    assert a.take_output() == b"\x13"  # XOFF when the buffer filled


def test_bit_errors_at_the_configured_rate_without_v42():
    bench = Bench()
    a, b = connected_pair(bench, rate=33600, latency=0.0, ber=1e-3, v42=False)
    payload = bytes(range(256)) * 100
    received, _ = pump(bench, a, b, payload, 10)
    assert len(received) == len(payload)
    flipped = sum(bin(x ^ y).count("1") for x, y in zip(received, payload, strict=True))
    expected = len(payload) * 8 * 1e-3
    assert 0.7 * expected < flipped < 1.3 * expected


def test_bursts_damage_runs_of_bits():
    bench = Bench()
    a, b = connected_pair(bench, rate=33600, latency=0.0, burst_rate=2.0, burst_bits=64, v42=False)
    payload = b"\x00" * 20_000
    received, _ = pump(bench, a, b, payload, 8)
    damaged = [i for i, byte in enumerate(received) if byte]
    assert damaged
    assert max(damaged) - min(damaged) > 8  # several bursts, each of up to 8 bytes


def test_v42_turns_errors_into_stalls():
    bench = Bench()
    clean, _ = pump(*_pair_and_payload(bench, ber=0.0), seconds=3)
    bench2 = Bench()
    noisy, _ = pump(*_pair_and_payload(bench2, ber=1e-4), seconds=3)
    assert set(noisy) == {0x5A}  # no corrupted byte reaches the DTE
    assert len(clean) == pytest.approx(960 * 3, abs=20)
    assert 0.3 * len(clean) < len(noisy) < len(clean)  # but the retransmissions cost time
    record = next(iter(bench2.network.active_calls)).directions["a"]
    assert record.stall_seconds > 0


def _pair_and_payload(bench: Bench, ber: float):
    a, b = connected_pair(bench, rate=9600, latency=0.0, ber=ber, v42=True)
    return bench, a, b, b"\x5a" * 10_000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrain_stalls_both_directions(seed):
    bench = Bench(PhoneNetwork(seed=seed))
    a, b = connected_pair(bench, rate=9600, latency=0.0, stall_rate=3600 * 2, stall_time=0.5)
    seconds = 5.0
    at_b, at_a = pump_both(bench, a, b, b"r" * 20_000, b"s" * 20_000, seconds)
    call = next(iter(bench.network.active_calls))
    for name, received, byte in (("a", at_b, ord("r")), ("b", at_a, ord("s"))):
        stalled = call.directions[name].stall_seconds
        assert 0.5 <= stalled <= seconds + 0.5
        # 960 byte/s whenever the line is not retraining; a stall that began near the
        # end is counted whole although only part of it fell inside the window.
        lower = 960 * (seconds - stalled) - 20
        assert lower <= len(received) <= lower + 960 * 0.5 + 40
        assert 0 < len(received) < 960 * seconds * 0.8
        assert set(received) == {byte}


@pytest.mark.parametrize(
    "line",
    [{"drop_at": 2.0}, {"drop_after_bytes": 500}, {"drop_rate": 3600 * 10.0}],
)
def test_carrier_drops(line):
    bench = Bench()
    a, b = connected_pair(bench, rate=2400, **line)
    pump(bench, a, b, b"d" * 2000, 5)
    bench.run(2)
    assert not a.in_call and not b.in_call
    record = bench.network.history[-1]
    assert record.outcome in ("line drop", "random drop")
    if "drop_after_bytes" in line:
        assert 500 <= record.bytes_caller_to_callee < 520


def test_line_cut_mid_call_reports_no_carrier_on_both_sides():
    bench = Bench()
    a, b = connected_pair(bench)
    assert bench.network.cut("a")
    bench.run(2)
    assert a.take_output().endswith(b"NO CARRIER\r\n")
    assert b.take_output().endswith(b"NO CARRIER\r\n")
    assert not bench.network.cut("a")


def test_per_call_line_conditions_apply_once():
    bench = Bench()
    a = bench.modem("a", "generic", number="100")
    b = bench.modem("b", "generic", number="200")
    bench.quiet_echo(a, b)
    bench.network.set_next_call("a", rate=1200)
    bench.connect(a, b, "200")
    assert a.rate == 1200
    bench.network.cut("a")
    bench.run(2)
    bench.connect(a, b, "200")
    assert a.rate == 33600


def test_invalid_line_models_are_refused():
    with pytest.raises(ValueError, match="rate"):
        LineModel(rate=100)
    with pytest.raises(ValueError, match="ber"):
        LineModel(ber=0.7)
    with pytest.raises(ValueError, match="latency"):
        LineModel(latency=-1)


# -- modem faults ----------------------------------------------------------------------


def test_unresponsive_modem_says_nothing_until_it_recovers():
    bench = Bench()
    m = bench.modem("m")
    bench.quiet_echo(m)
    m.unresponsive = True
    assert bench.at(m, "AT", settle=5) == b""
    m.unresponsive = False
    assert bench.at(m, "AT") == b"\r\nOK\r\n"


def test_late_reply():
    bench = Bench()
    m = bench.modem("m")
    bench.quiet_echo(m)
    m.reply_delay = 3.0
    assert bench.at(m, "ATI0", settle=2.9) == b""
    bench.run(0.2)
    assert m.take_output() == b"\r\nV250\r\n\r\nOK\r\n"


def test_reset_drops_the_call_and_restores_the_stored_profile():
    bench = Bench()
    a, b = connected_pair(bench)
    a.power_cycle()
    assert a.state is State.COMMAND and a.settings.echo
    bench.run(2)
    assert not b.in_call


def test_garbage_and_nuls_reach_the_dte():
    bench = Bench()
    m = bench.modem("m")
    m.emit_raw(b"\x00\x00\xff\xfe")
    assert m.take_output() == b"\x00\x00\xff\xfe"
