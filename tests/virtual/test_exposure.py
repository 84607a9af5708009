"""The virtual modems through real pyserial URLs: pty, socket://, rfc2217://, inproc://."""

from __future__ import annotations

import asyncio
import os
import select
import time

import pytest
import serial

from modem_drivers import inproc
from modem_drivers.virtual import NetworkTiming, PhoneNetwork
from modem_drivers.virtual.exposure import PtyExposure
from modem_drivers.virtual.runner import NetworkRunner

SCALE = 0.02  # one network second is 20 ms


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def read_until(port: serial.Serial, token: bytes, timeout: float = 5.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = port.read(4096)
        seen += chunk
        if token in seen:
            return seen
        if not chunk:
            time.sleep(0.005)
    raise AssertionError(f"{token!r} not seen; got {seen!r}")


def command(port: serial.Serial, text: str, token: bytes = b"OK\r\n") -> bytes:
    port.reset_input_buffer()
    port.write(text.encode() + b"\r")
    return read_until(port, token)


@pytest.fixture
async def runner(tmp_path):
    network = PhoneNetwork()
    network.add_modem("a", "generic", number="100")
    network.add_modem("b", "usr", number="200")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    runner.tmp = tmp_path
    yield runner
    await runner.stop()


async def expose(runner: NetworkRunner, name: str, kind: str) -> str:
    exposure = await runner.expose(name, kind, path=str(runner.tmp / name))
    return exposure.url


def open_port(url: str) -> serial.Serial:
    return serial.serial_for_url(url, timeout=0)


@pytest.mark.parametrize("kind", ["pty", "tcp", "rfc2217"])
async def test_call_between_two_ports_of_each_kind(runner, kind):
    url_a = await expose(runner, "a", kind)
    url_b = await expose(runner, "b", "pty")

    def script() -> None:
        a, b = open_port(url_a), open_port(url_b)
        try:
            assert command(a, "ATE0V1X4").endswith(b"OK\r\n")
            command(b, "ATE0S0=1")
            a.write(b"ATDT200\r")
            read_until(a, b"CONNECT 33600\r\n")
            read_until(b, b"CONNECT 33600/ARQ/V34/LAPM/V42BIS\r\n")
            payload = bytes(range(256)) * 8  # every byte value, 0xff included
            a.write(payload)
            got = b""
            deadline = time.monotonic() + 5
            while len(got) < len(payload) and time.monotonic() < deadline:
                got += b.read(4096)
                time.sleep(0.005)
            assert got == payload
            time.sleep(1.2 * 50 * SCALE)
            a.write(b"+++")
            read_until(a, b"OK\r\n")
            command(a, "ATH0")
            read_until(b, b"NO CARRIER\r\n")
        finally:
            a.close()
            b.close()

    await in_thread(script)
    record = runner.network.history[-1]
    assert record.outcome == "hung up by a" and record.bytes_caller_to_callee >= 2048


async def test_pty_open_and_close_act_as_dtr(runner):
    url_a = await expose(runner, "a", "pty")
    url_b = await expose(runner, "b", "pty")
    network = runner.network
    assert os.path.islink(url_a)

    def script() -> None:
        a, b = open_port(url_a), open_port(url_b)
        command(a, "ATE0&D2")
        command(b, "ATE0S0=1")
        a.write(b"ATD200\r")
        read_until(a, b"CONNECT")
        read_until(b, b"CONNECT")
        a.close()  # the DTE goes away mid-call: DTR drops, &D2 hangs up
        read_until(b, b"NO CARRIER")
        b.close()

    await in_thread(script)
    await asyncio.sleep(0.2)
    assert not network.modem("a").dtr
    assert network.history[-1].outcome == "hung up by a"


async def test_pty_has_no_modem_control_lines(runner):
    url = await expose(runner, "a", "pty")

    def script() -> None:
        port = open_port(url)
        try:
            with pytest.raises(OSError):
                port.dtr = False
            with pytest.raises(OSError):
                _ = port.cd
        finally:
            port.close()

    await in_thread(script)


async def test_rfc2217_carries_dtr_dcd_and_ri(runner):
    url_a = await expose(runner, "a", "pty")
    url_b = await expose(runner, "b", "rfc2217")
    network = runner.network
    network.timing = NetworkTiming(ring_on=20.0)  # 0.4 s of real time to see RI high

    def script() -> None:
        a = open_port(url_a)
        b = serial.serial_for_url(url_b, timeout=0)
        try:
            command(a, "ATE0")
            command(b, "ATE0&C1&D2")
            assert not b.cd
            a.write(b"ATD200\r")
            read_until(b, b"RING")
            time.sleep(0.05)
            assert b.ri
            b.write(b"ATA\r")
            read_until(b, b"CONNECT")
            time.sleep(0.1)
            assert b.cd and not b.ri
            b.dtr = False  # the terminal server drops DTR: &D2 hangs up
            read_until(a, b"NO CARRIER")
            time.sleep(0.1)
            assert not b.cd
            b.dtr = True
            assert command(b, "AT").endswith(b"OK\r\n")
        finally:
            a.close()
            b.close()

    await in_thread(script)
    assert network.history[-1].outcome == "hung up by b"


async def test_tcp_port_takes_one_client_at_a_time(runner):
    url = await expose(runner, "a", "tcp")

    def script() -> None:
        first = open_port(url)
        second = open_port(url)
        try:
            command(first, "AT")
            with pytest.raises(serial.SerialException):  # the port closes on the second client
                for _ in range(50):
                    second.write(b"AT\r")
                    time.sleep(0.01)
                    second.read(10)
        finally:
            first.close()
            second.close()

    await in_thread(script)


async def test_pty_flow_control_loses_nothing_at_a_slow_rate(runner):
    runner.network.set_line("a", rate=9600)
    url_a = await expose(runner, "a", "pty")
    url_b = await expose(runner, "b", "pty")

    def script() -> None:
        a, b = open_port(url_a), open_port(url_b)
        try:
            command(a, "ATE0&K3")
            command(b, "ATE0S0=1")
            a.write(b"ATD200\r")
            read_until(a, b"CONNECT")
            read_until(b, b"CONNECT")
            payload = os.urandom(12_000)  # far more than the modem's buffer
            a.write(payload)
            got = b""
            deadline = time.monotonic() + 20
            while len(got) < len(payload) and time.monotonic() < deadline:
                got += b.read(8192)
                time.sleep(0.01)
            assert got == payload
        finally:
            a.close()
            b.close()

    await in_thread(script)


async def test_pty_is_read_the_moment_cts_rises(runner):
    """What the DTE holds flows in when CTS rises, as from a UART, before the loop turns:
    a DTE that keeps the modem's buffer full is not watched and unwatched each tick."""
    url = await expose(runner, "a", "pty")
    exposure = runner.exposures["a"]
    port = open_port(url)
    try:
        while not exposure.attached:  # the probe notices the opener
            await asyncio.sleep(0.01)
        exposure.set_reading(False)  # CTS low
        port.write(b"AT\r")
        readable = await in_thread(select.select, [exposure._master], [], [], 5)
        assert readable[0], "the pty never passed the bytes on"
        before = runner.bytes_from_dte
        exposure.set_reading(True)  # CTS rises
        assert runner.bytes_from_dte == before + 3  # read at once, not on a later turn
        assert (await in_thread(read_until, port, b"OK")).endswith(b"OK\r\n")
    finally:
        port.close()


@pytest.mark.parametrize("kind", ["pty", "tcp", "rfc2217", "inproc"])
async def test_port_vanishes_and_comes_back(runner, kind):
    url = await expose(runner, "a", kind)
    if kind == "inproc":
        await _inproc_vanish(runner, url)
        return

    def first_life() -> serial.Serial:
        port = open_port(url)
        command(port, "AT")
        return port

    port = await in_thread(first_life)
    await runner.vanish("a")

    def broken() -> None:
        with pytest.raises((serial.SerialException, OSError)):
            for _ in range(100):
                port.write(b"AT\r")
                port.read(100)
                time.sleep(0.01)
        port.close()
        with pytest.raises((serial.SerialException, OSError)):
            open_port(url).close()

    await in_thread(broken)
    await runner.reappear("a")
    url = runner.exposures["a"].url

    def second_life() -> None:
        again = open_port(url)
        try:
            assert command(again, "AT").endswith(b"OK\r\n")
        finally:
            again.close()

    await in_thread(second_life)


class _Collector(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost: Exception | bool | None = False

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


async def _inproc_vanish(runner: NetworkRunner, url: str) -> None:
    protocol = _Collector()
    transport, lines = inproc.connect(url, protocol)
    transport.write(b"AT\r")
    for _ in range(100):
        await asyncio.sleep(0.01)
        if b"OK" in protocol.data:
            break
    assert b"OK" in protocol.data
    await runner.vanish("a")
    await asyncio.sleep(0.01)
    assert isinstance(protocol.lost, OSError)
    with pytest.raises(FileNotFoundError):
        inproc.connect(url, _Collector())
    await runner.reappear("a")
    again = _Collector()
    transport, lines = inproc.connect(url, again)
    transport.write(b"ATE0\r")
    await asyncio.sleep(0.05)
    assert again.data.endswith(b"OK\r\n")
    assert lines.dsr and not lines.cd
    transport.close()


async def test_inproc_control_lines(runner):
    url_a = await expose(runner, "a", "inproc")
    url_b = await expose(runner, "b", "inproc")
    pa, pb = _Collector(), _Collector()
    ta, la = inproc.connect(url_a, pa)
    tb, lb = inproc.connect(url_b, pb)
    ta.write(b"ATE0&D2\r")
    tb.write(b"ATE0S0=1\r")
    await asyncio.sleep(0.05)
    ta.write(b"ATD200\r")
    for _ in range(300):
        await asyncio.sleep(0.01)
        if b"CONNECT" in pa.data:
            break
    assert la.cd and lb.cd
    la.set_dtr(False)
    for _ in range(300):
        await asyncio.sleep(0.01)
        if b"NO CARRIER" in pb.data:
            break
    assert not lb.cd
    ta.close()
    tb.close()


async def test_scripted_faults_through_the_runner(runner):
    url = await expose(runner, "a", "pty")
    network = runner.network

    def script() -> None:
        port = open_port(url)
        try:
            command(port, "ATE0")
            runner_loop.call_soon_threadsafe(runner.apply_fault, "garbage", "a")
            runner_loop.call_soon_threadsafe(runner.apply_fault, "nuls", "a")
            time.sleep(0.1)
            junk = port.read(100)
            assert len(junk) >= 16 and b"\x00" * 16 in junk
            runner_loop.call_soon_threadsafe(runner.apply_fault, "unresponsive", "a")
            time.sleep(0.05)
            port.write(b"AT\r")
            time.sleep(0.3)
            assert port.read(100) == b""
            runner_loop.call_soon_threadsafe(
                lambda: runner.apply_fault("reply-delay", "a", seconds=5)
            )
            runner_loop.call_soon_threadsafe(
                lambda: setattr(network.modem("a"), "unresponsive", False)
            )
            time.sleep(0.05)
            port.write(b"AT\r")
            time.sleep(2 * SCALE)
            assert port.read(100) == b""
            read_until(port, b"OK")
            runner_loop.call_soon_threadsafe(runner.apply_fault, "reset", "a")
            time.sleep(0.05)
            assert command(port, "AT").startswith(b"AT\r")  # echo is back on after reset
        finally:
            port.close()

    runner_loop = asyncio.get_running_loop()
    await in_thread(script)


# -- issue 8: a port that vanishes while the modem holds back its DTE -------------------


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def _held_back_call(runner: NetworkRunner) -> None:
    """Modem `a` in a call at 300 bit/s with RTS/CTS, so a DTE soon fills its buffer."""
    network = runner.network
    network.set_line("a", rate=300)
    b = network.modem("b")
    b.settings.s[0] = 1  # auto-answer
    b.set_dtr(True)
    runner.poke()


async def _fill_until_held_back(runner: NetworkRunner, write) -> None:
    exposure = runner.exposures["a"]
    modem = runner.network.modem("a")
    write(b"ATE0&K3D200\r")
    await _wait_for(lambda: modem.in_call, timeout=10)
    write(b"x" * 8192)
    # held back: the port holds bytes the modem refused, or (a pty, which reads only
    # what the modem can take) has stopped reading and leaves them in the kernel
    await _wait_for(
        lambda: (
            not modem.cts
            and (
                bool(exposure.held)
                or (isinstance(exposure, PtyExposure) and not exposure._want_reading)
            )
        )
    )


@pytest.mark.parametrize("kind", ["pty", "tcp", "rfc2217", "inproc"])
async def test_port_reads_again_after_vanishing_while_held_back(runner, kind):
    url = await expose(runner, "a", kind)
    _held_back_call(runner)
    loop = asyncio.get_running_loop()
    if kind == "inproc":
        collector = _Collector()
        transport, _lines = inproc.connect(url, collector)
        await _fill_until_held_back(runner, transport.write)
    else:
        port = await in_thread(open_port, url)

        def write(data: bytes) -> None:
            loop.run_in_executor(None, port.write, data)

        await _fill_until_held_back(runner, write)
    await runner.vanish("a")
    if kind != "inproc":
        await in_thread(port.close)
    await _wait_for(lambda: not runner.network.modem("a").in_call, timeout=10)
    await runner.reappear("a")
    url = runner.exposures["a"].url
    if kind == "inproc":
        again = _Collector()
        transport, _lines = inproc.connect(url, again)
        transport.write(b"AT\r")
        await _wait_for(lambda: again.data.endswith(b"OK\r\n"))
        transport.close()
        return

    exposure = runner.exposures["a"]

    def second_life() -> bytes:
        port = open_port(url)
        try:
            # Write only once the port has seen its DTE: a pty's first read must not
            # hide a reader that was never re-armed.
            deadline = time.monotonic() + 5
            while not exposure.attached and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)
            return command(port, "AT")
        finally:
            port.close()

    assert (await in_thread(second_life)).endswith(b"OK\r\n")


async def test_emulators_talk_over_socket_urls(runner):
    """Two `emulator` modems on raw TCP ports, as tcpser is reached (`socket://`)."""
    network = runner.network
    network.add_modem("emu-a", "emulator", number="5550001")
    network.add_modem("emu-b", "emulator", number="127.0.0.1:6400")
    url_a = await expose(runner, "emu-a", "tcp")
    url_b = await expose(runner, "emu-b", "tcp")
    assert url_a.startswith("socket://")

    def script() -> None:
        a, b = open_port(url_a), open_port(url_b)
        try:
            assert command(a, "ATE0").endswith(b"OK\r\n")
            command(b, "ATE0")
            a.write(b"ATDT127.0.0.1:6400\r")
            read_until(a, b"\r\nCONNECT 38400\r\n")  # the link is up; nobody answered yet
            a.write(b"early")
            read_until(b, b"\r\nRING\r\n")
            b.write(b"ATA\r")
            assert read_until(b, b"early").endswith(b"\r\nCONNECT 38400\r\nearly")
            b.write(b"late")
            read_until(a, b"late")
            time.sleep(1.2 * 50 * SCALE)
            a.write(b"+++")
            read_until(a, b"OK\r\n")
            read_until(b, b"+++")  # passed on as data
            a.reset_input_buffer()
            a.write(b"ATH0\r")
            assert read_until(a, b"CARRIER\r\n\r\nOK\r\n") == b"\r\nNO CARRIER\r\n\r\nOK\r\n"
            read_until(b, b"NO CARRIER")
        finally:
            a.close()
            b.close()

    await in_thread(script)
    assert network.history[-1].outcome == "hung up by emu-a"
