"""Many tty/pty ports in one process (issue 14): one descriptor per port, no `select()`.

pyserial opened five descriptors per port and read through `select()`, which cannot
take a descriptor at or above 1024; every port above about the 205th failed with
`ValueError: filedescriptor out of range in select()` on each turn of the loop."""

from __future__ import annotations

import asyncio
import os
import pty
import resource

import pytest
import serial

from modem_drivers.hayes import HayesModem
from modem_drivers.hayes import port as port_module
from modem_drivers.hayes.port import open_port
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner

PORTS = 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * PORTS + 256  # the network's masters, our ports, sockets, the store
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_1024_ptys_in_one_process_each_answer_at(tmp_path, many_fds):
    network = PhoneNetwork()
    for index in range(PORTS):
        network.add_modem(f"m{index}", "generic", number=f"{5550000 + index}")
    runner = NetworkRunner(network, time_scale=0.05)
    await runner.start()
    modems: list[HayesModem] = []
    try:
        urls = [(await runner.expose(f"m{i}", "pty")).url for i in range(PORTS)]
        before = open_fds()
        for url in urls:
            modem = HayesModem(url, profile="generic")
            await modem.connect()
            modems.append(modem)
        assert (open_fds() - before) / PORTS == 1.0  # pyserial: 5
        assert max(modem._port.transport.serial.fileno() for modem in modems) >= 1024
        replies = await asyncio.gather(*(modem.command("AT") for modem in modems))
        assert all(reply.ok for reply in replies)
    finally:
        for modem in modems:
            await modem.close()
        await runner.stop()


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: list[Exception | None] = []
        self.calls = 0
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.calls += 1
        raise RuntimeError("a bug in the protocol")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        self.closed.set_result(None)


async def test_an_error_in_the_callback_closes_the_port_once():
    controller, device = pty.openpty()
    try:
        protocol = Recorder()
        opened = await open_port(os.ttyname(device), protocol)
        assert type(opened.transport.serial) is port_module._TtySerial
        await asyncio.sleep(0)  # the reader is registered on the next turn
        for _ in range(5):
            os.write(controller, b"OK\r\n")
            await asyncio.sleep(0.01)
        await asyncio.wait_for(protocol.closed, 5.0)
        assert protocol.calls == 1
        assert len(protocol.lost) == 1 and isinstance(protocol.lost[0], RuntimeError)
    finally:
        os.close(controller)
        os.close(device)


async def test_a_port_whose_far_end_vanishes_is_lost_once():
    controller, device = pty.openpty()
    name = os.ttyname(device)
    os.close(device)

    class Lost(asyncio.Protocol):
        def __init__(self) -> None:
            self.lost: list[Exception | None] = []
            self.closed = asyncio.get_running_loop().create_future()

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.append(exc)
            self.closed.set_result(None)

    protocol = Lost()
    await open_port(name, protocol)
    await asyncio.sleep(0)
    os.close(controller)  # reads on the pty now fail (EIO)
    await asyncio.wait_for(protocol.closed, 5.0)
    await asyncio.sleep(0.05)
    assert len(protocol.lost) == 1 and isinstance(protocol.lost[0], serial.SerialException)
