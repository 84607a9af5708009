"""How a DTE reaches a virtual modem: pty, raw TCP, RFC 2217 or in-process.

Each exposure carries bytes between one modem and whoever opened its port, and maps
"a DTE is attached" onto DTR (a pty has no modem-control lines, so opening it raises
DTR and closing it drops DTR, as HUPCL does on a real port; RFC 2217 carries DTR, DCD
and RI explicitly, as a terminal server does).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from pathlib import Path
from typing import Any, Protocol

import structlog
from serial import rfc2217

from .. import inproc
from .interpreter import VirtualModem

log = structlog.get_logger("callhome.sim")

PTY_PROBE_INTERVAL = 0.05
"""How often (real seconds) a pty nobody has open is checked for a new opener."""

MAX_PENDING_TO_DTE = 1 << 20

EXPOSURE_KINDS = ("pty", "tcp", "rfc2217", "inproc")


class ExposureHost(Protocol):
    """What an exposure needs from whoever runs the network (`NetworkRunner`).

    Exposures depend on this protocol, not on the runner, so that `runner.py` imports
    `exposure.py` and never the other way round.
    """

    def dte_input(self, exposure: Exposure, data: bytes) -> None: ...

    def set_dtr(self, modem: VirtualModem, level: bool) -> None: ...


class Exposure:
    kind = "?"

    def __init__(self, host: ExposureHost, modem: VirtualModem) -> None:
        self.runner = host
        self.modem = modem
        self.held = bytearray()
        self.attached = False
        self.present = False

    @property
    def url(self) -> str:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def send_to_dte(self, data: bytes) -> None:
        raise NotImplementedError

    def set_reading(self, reading: bool) -> None:
        """Flow control towards the DTE: stop taking its bytes while the modem is full."""

    def lines_changed(self) -> None:
        """DCD / RI / CTS may have changed."""

    def _attached(self) -> None:
        self.attached = True
        log.info("port.attached", modem=self.modem.name, kind=self.kind)
        self.runner.set_dtr(self.modem, True)

    def _detached(self) -> None:
        if not self.attached:
            return
        self.attached = False
        self.held.clear()
        log.info("port.detached", modem=self.modem.name, kind=self.kind)
        self.runner.set_dtr(self.modem, False)

    def describe(self) -> dict[str, Any]:
        return {"modem": self.modem.name, "kind": self.kind, "url": self.url}


class PtyExposure(Exposure):
    kind = "pty"

    def __init__(self, host: ExposureHost, modem: VirtualModem, path: str | None) -> None:
        super().__init__(host, modem)
        self.link = Path(path) if path else None
        self.tty_name = ""
        self._master = -1
        self._probe: asyncio.TimerHandle | None = None
        self._reading = False
        self._want_reading = True
        self._pending = bytearray()
        self._writing = False
        self._in_read = False

    @property
    def url(self) -> str:
        return str(self.link) if self.link else self.tty_name

    async def start(self) -> None:
        self._reset_flow()
        master, slave = os.openpty()
        tty.setraw(slave)
        self.tty_name = os.ttyname(slave)
        os.close(slave)  # until a DTE opens it, reads on the master fail with EIO
        os.set_blocking(master, False)
        self._master = master
        if self.link is not None:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            if self.link.is_symlink():
                self.link.unlink()
            elif self.link.exists():
                os.close(master)
                raise FileExistsError(f"{self.link} exists and is not a symlink")
            self.link.symlink_to(self.tty_name)
        self.present = True
        self._schedule_probe()

    async def close(self) -> None:
        self.present = False
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        loop = asyncio.get_running_loop()
        if self._master >= 0:
            if self._reading:
                loop.remove_reader(self._master)
                self._reading = False
            if self._writing:
                loop.remove_writer(self._master)
                self._writing = False
            os.close(self._master)
            self._master = -1
        if self.link is not None and self.link.is_symlink():
            with contextlib.suppress(OSError):
                self.link.unlink()
        self._detached()
        self._reset_flow()

    def _reset_flow(self) -> None:
        # A port that vanished while its modem held the DTE back must read again
        # when it comes back (issue 8): the new DTE owes the modem nothing.
        self._want_reading = True
        self._pending.clear()
        self.held.clear()

    def _schedule_probe(self) -> None:
        loop = asyncio.get_running_loop()
        self._probe = loop.call_later(PTY_PROBE_INTERVAL, self._probe_for_dte)

    def _probe_for_dte(self) -> None:
        self._probe = None
        if self._master < 0:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            data = b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                self._schedule_probe()
                return
            raise
        self._attached()
        self._update_reader()
        if data:
            self.runner.dte_input(self, data)

    def _update_reader(self) -> None:
        loop = asyncio.get_running_loop()
        want = self.attached and self._want_reading and self._master >= 0
        if want and not self._reading:
            loop.add_reader(self._master, self._readable)
            self._reading = True
        elif not want and self._reading:
            loop.remove_reader(self._master)
            self._reading = False

    def _readable(self) -> bool:
        """Reads what the modem has room for; False when the DTE had nothing to give."""
        room = self.modem.dte_room()
        if room <= 0:
            self.set_reading(False)  # CTS low: the kernel holds the rest
            return True
        try:
            data = os.read(self._master, min(room, 4096))
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._gone()
            return True
        self.runner.dte_input(self, data)
        return True

    def _gone(self) -> None:
        self._pending.clear()
        self._detached()
        self._update_reader()
        if self._writing:
            asyncio.get_running_loop().remove_writer(self._master)
            self._writing = False
        self._schedule_probe()

    def set_reading(self, reading: bool) -> None:
        self._want_reading = reading
        if reading and not self._reading and not self._in_read and self.attached:
            # CTS rose: what the DTE holds flows in now, as from a UART, and the loop
            # watches the port only if it had nothing to give. A sending DTE keeps the
            # modem's buffer full, so CTS rises a tick's worth at a time: watching and
            # unwatching the port for each of those was two epoll changes and a turn of
            # the loop per line per tick.
            self._in_read = True
            try:
                if self._master >= 0 and self._readable() and not self._want_reading:
                    return  # full again (or gone): nothing to watch
            finally:
                self._in_read = False
        self._update_reader()

    def send_to_dte(self, data: bytes) -> None:
        if not self.attached or self._master < 0:
            return  # nobody listening: the bytes are lost, as on a real port
        if self._pending:
            self._pending += data[: MAX_PENDING_TO_DTE - len(self._pending)]
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self._gone()
            return
        if written < len(data):
            self._pending += data[written:]
            asyncio.get_running_loop().add_writer(self._master, self._drain)
            self._writing = True

    def _drain(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            self._gone()
            return
        del self._pending[:written]
        if not self._pending:
            asyncio.get_running_loop().remove_writer(self._master)
            self._writing = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tty": self.tty_name}


class _StreamProtocol(asyncio.Protocol):
    """One DTE connection to a TCP or RFC 2217 exposure."""

    def __init__(self, exposure: _ServerExposure) -> None:
        self.exposure = exposure
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.exposure.connection is not None:
            transport.close()  # one DTE at a time, as on a real port
            return
        self.transport = transport
        self.exposure.connection_made(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.exposure.data_received(data)
        except Exception:
            # A bug or a hostile client must cost this connection, not the network.
            log.exception("port.input_failed", modem=self.exposure.modem.name)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None and self.exposure.connection is self:
            self.exposure.connection_lost()


class _ServerExposure(Exposure):
    def __init__(self, host: ExposureHost, modem: VirtualModem, port: int) -> None:
        super().__init__(host, modem)
        self.port = port
        self.host = "127.0.0.1"
        self._server: asyncio.base_events.Server | None = None
        self.connection: _StreamProtocol | None = None

    async def start(self) -> None:
        self.held.clear()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _StreamProtocol(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.present = True

    async def close(self) -> None:
        self.present = False
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.abort()
        self.connection = None
        self._detached()

    def connection_made(self, connection: _StreamProtocol) -> None:
        self.connection = connection
        self._attached()

    def connection_lost(self) -> None:
        self.connection = None
        self._detached()

    def data_received(self, data: bytes) -> None:
        self.runner.dte_input(self, data)

    def set_reading(self, reading: bool) -> None:
        if self.connection is not None and self.connection.transport is not None:
            transport = self.connection.transport
            if reading:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _write(self, data: bytes) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.write(data)


class TcpExposure(_ServerExposure):
    """A raw TCP port (`socket://`), as tcpser and similar emulators offer."""

    kind = "tcp"

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def send_to_dte(self, data: bytes) -> None:
        self._write(data)


class _SerialFacade:
    """What pyserial's RFC 2217 `PortManager` needs to see of a serial port."""

    def __init__(self, exposure: Rfc2217Exposure) -> None:
        self._exposure = exposure
        self.baudrate = 115200
        self.bytesize = 8
        self.parity = "N"
        self.stopbits = 1
        self.xonxoff = False
        self.rtscts = True
        self.break_condition = False
        self.rts = True
        self._dtr = True

    @property
    def dtr(self) -> bool:
        return self._dtr

    @dtr.setter
    def dtr(self, level: bool) -> None:
        self._dtr = bool(level)
        exposure = self._exposure
        exposure.runner.set_dtr(exposure.modem, self._dtr)

    @property
    def cts(self) -> bool:
        return self._exposure.modem.cts

    @property
    def dsr(self) -> bool:
        return self._exposure.modem.dsr

    @property
    def ri(self) -> bool:
        return self._exposure.modem.ri

    @property
    def cd(self) -> bool:
        return self._exposure.modem.dcd

    def reset_input_buffer(self) -> None:
        self._exposure.held.clear()

    def reset_output_buffer(self) -> None:
        pass  # nothing is queued towards the client beyond the socket itself


class _ManagerConnection:
    def __init__(self, exposure: Rfc2217Exposure) -> None:
        self._exposure = exposure

    def write(self, data: bytes) -> None:
        self._exposure._write(data)


class Rfc2217Exposure(_ServerExposure):
    """A terminal-server port: Telnet with RFC 2217 (carries DTR, DCD, RI, CTS)."""

    kind = "rfc2217"

    def __init__(self, host: ExposureHost, modem: VirtualModem, port: int) -> None:
        super().__init__(host, modem, port)
        self._manager: rfc2217.PortManager | None = None
        self._facade: _SerialFacade | None = None

    @property
    def url(self) -> str:
        return f"rfc2217://{self.host}:{self.port}"

    def connection_made(self, connection: _StreamProtocol) -> None:
        self.connection = connection
        self._facade = _SerialFacade(self)
        self._manager = rfc2217.PortManager(self._facade, _ManagerConnection(self))
        self._attached()

    def connection_lost(self) -> None:
        self._manager = None
        super().connection_lost()

    def data_received(self, data: bytes) -> None:
        manager = self._manager
        if manager is None:
            return
        if b"\xff" not in data and manager.mode == rfc2217.M_NORMAL and manager.suboption is None:
            payload = data  # the common case: plain data, no Telnet commands in it
        else:
            payload = b"".join(manager.filter(data))
        if payload:
            self.runner.dte_input(self, payload)

    def send_to_dte(self, data: bytes) -> None:
        self._write(data.replace(b"\xff", b"\xff\xff"))

    def lines_changed(self) -> None:
        if self._manager is not None:
            self._manager.check_modem_lines()


class _InprocLines:
    def __init__(self, exposure: InprocExposure) -> None:
        self._exposure = exposure

    def set_dtr(self, level: bool) -> None:
        self._exposure.runner.set_dtr(self._exposure.modem, level)

    @property
    def cd(self) -> bool:
        return self._exposure.modem.dcd

    @property
    def ri(self) -> bool:
        return self._exposure.modem.ri

    @property
    def dsr(self) -> bool:
        return self._exposure.modem.dsr

    @property
    def cts(self) -> bool:
        return self._exposure.modem.cts


class _InprocTransport(asyncio.Transport):
    def __init__(self, exposure: InprocExposure, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._exposure = exposure
        self._protocol = protocol
        self._closing = False
        self._paused = False
        self._backlog = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        payload = bytes(data)
        asyncio.get_running_loop().call_soon(self._exposure.from_dte, self, payload)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._exposure.dte_closed(self)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def lose(self, exc: Exception) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)

    def deliver(self, data: bytes) -> None:
        if self._closing:
            return
        if self._paused:
            self._backlog += data
        else:
            asyncio.get_running_loop().call_soon(self._deliver_now, data)

    def _deliver_now(self, data: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(data)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if self._backlog:
            data, self._backlog = bytes(self._backlog), bytearray()
            self.deliver(data)

    def get_write_buffer_size(self) -> int:
        return 0


class InprocExposure(Exposure):
    """A port inside this process (`inproc://NAME`), for unit tests and benchmarks."""

    kind = "inproc"

    def __init__(self, host: ExposureHost, modem: VirtualModem, name: str) -> None:
        super().__init__(host, modem)
        self.name = name
        self._transport: _InprocTransport | None = None
        self._reading = True
        self._stalled: list[bytes] = []

    @property
    def url(self) -> str:
        return inproc.SCHEME + self.name

    async def start(self) -> None:
        self._reset_flow()
        inproc.register(self.name, self._connect)
        self.present = True

    async def close(self) -> None:
        self.present = False
        inproc.unregister(self.name)
        if self._transport is not None:
            self._transport.lose(ConnectionResetError(errno.EIO, "port went away"))
            self._transport = None
        self._detached()
        self._reset_flow()

    def _reset_flow(self) -> None:
        # See PtyExposure._reset_flow (issue 8).
        self._reading = True
        self._stalled.clear()
        self.held.clear()

    def _connect(self, protocol: asyncio.Protocol) -> tuple[asyncio.Transport, inproc.ModemLines]:
        if self._transport is not None:
            raise PermissionError(f"{self.url} is already open")
        transport = _InprocTransport(self, protocol)
        self._transport = transport
        asyncio.get_running_loop().call_soon(protocol.connection_made, transport)
        self._attached()
        return transport, _InprocLines(self)

    def from_dte(self, transport: _InprocTransport, data: bytes) -> None:
        if transport is not self._transport:
            return
        if not self._reading:
            self._stalled.append(data)
            return
        self.runner.dte_input(self, data)

    def dte_closed(self, transport: _InprocTransport) -> None:
        if transport is self._transport:
            self._transport = None
            self._detached()

    def set_reading(self, reading: bool) -> None:
        self._reading = reading
        while self._reading and self._stalled:
            self.runner.dte_input(self, self._stalled.pop(0))

    def send_to_dte(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.deliver(data)
