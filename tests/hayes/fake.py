"""A scripted fake DCE on an `inproc://` port, for the timing scenarios of the driver.

It answers command lines from a table (or a function), records every byte the driver
writes and every DTR change with the loop time, and can be told to go silent, to send
anything at any moment, to drop DCD, or to lose the port.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from modem_drivers import inproc

_names = itertools.count()
Reply = bytes | Callable[[bytes], bytes | None] | None


class FakeModem:
    def __init__(self, replies: dict[bytes, Reply] | None = None) -> None:
        self.name = f"fake{next(_names)}"
        self.url = inproc.register(self.name, self._connect)
        self.replies: dict[bytes, Reply] = {b"AT": b"\r\nOK\r\n", **(replies or {})}
        self.default: Reply = b"\r\nOK\r\n"
        self.writes: list[tuple[float, bytes]] = []
        self.dtr_log: list[tuple[float, bool]] = []
        self.dcd = False
        self.ri = False
        self.online = False
        self.silent = False
        self.reply_delay = 0.0
        self.on_dtr_off: Callable[[], None] | None = None
        self._line = bytearray()
        self._protocol: asyncio.Protocol | None = None
        self._transport: _FakeTransport | None = None

    # -- the ModemLines interface --------------------------------------------------------

    def set_dtr(self, level: bool) -> None:
        self.dtr_log.append((asyncio.get_running_loop().time(), level))
        if not level and self.on_dtr_off is not None:
            self.on_dtr_off()

    @property
    def cd(self) -> bool:
        return self.dcd

    @property
    def dsr(self) -> bool:
        return True

    @property
    def cts(self) -> bool:
        return True

    # -- scripting -----------------------------------------------------------------------

    def send(self, data: bytes, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self._protocol is not None and self._transport is not None:
            self._protocol.data_received(data)

    def lose_port(self, exc: Exception | None = None) -> None:
        protocol, self._protocol = self._protocol, None
        self._transport = None
        if protocol is not None:
            protocol.connection_lost(exc or OSError(5, "Input/output error"))

    def go_online(self) -> None:
        self.online = True
        self.dcd = True

    def written(self) -> bytes:
        return b"".join(data for _, data in self.writes)

    def close(self) -> None:
        inproc.unregister(self.name)

    # -- the port side -------------------------------------------------------------------

    def _connect(self, protocol: asyncio.Protocol):
        transport = _FakeTransport(self)
        self._protocol = protocol
        self._transport = transport
        asyncio.get_running_loop().call_soon(protocol.connection_made, transport)
        return transport, self

    def _received(self, data: bytes) -> None:
        self.writes.append((asyncio.get_running_loop().time(), data))
        if self.online or self.silent:
            return
        for byte in data:
            if byte == 0x0D:
                line = bytes(self._line)
                self._line.clear()
                self._answer(line)
            elif byte != 0x0A:
                self._line.append(byte)

    def _answer(self, line: bytes) -> None:
        reply = self.replies.get(line.upper(), self.default)
        if callable(reply):
            reply = reply(line)
        if reply:
            self.send(reply, self.reply_delay)


class _FakeTransport(asyncio.Transport):
    def __init__(self, fake: FakeModem) -> None:
        super().__init__()
        self._fake = fake
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._fake._received(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        fake = self._fake
        if fake._transport is self:
            protocol, fake._protocol, fake._transport = fake._protocol, None, None
            if protocol is not None:
                asyncio.get_running_loop().call_soon(protocol.connection_lost, None)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition the test can observe, never a fixed time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("the condition did not come about in time")
        await asyncio.sleep(0.002)
