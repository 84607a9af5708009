"""Opening a modem by pyserial URL and reaching its control lines, the same way for all.

- `/dev/ttyS0`, `/dev/ttyUSB0`, a pty: serial_asyncio_fast (fd-based); DTR, DCD and RI
  by ioctl (a pty has none of them);
- `socket://host:port`: an asyncio TCP connection; no control lines;
- `rfc2217://host:port`: pyserial's RFC 2217 client, which reads in a thread of its own
  (it has no fd to watch), bridged to asyncio; DTR by SET_CONTROL, DCD and RI from
  NOTIFY_MODEMSTATE;
- `inproc://name`: `modem_drivers.inproc`; all lines.

Every failure to open is a `PortOpenError`; losing the port later reaches the protocol
as `connection_lost(exc)`.

serial_asyncio_fast 0.16 has two bugs in its write path (home-assistant-libs/
pyserial-asyncio-fast#36, open at the time of writing): once a write had to be buffered,
the writer callback stays registered after the buffer drains and the next callback dies
on `assert data`; and a direct write into a full port spins inside pyserial, whose
non-blocking `write()` retries EAGAIN forever, stalling the event loop. Both show up as
soon as a modem applies flow control. `_SerialTransport` fixes them; drop it when a
release has the fix. It overrides private methods, so setup.cfg pins the releases it was
checked against (>=0.16,<0.17) and tests/hayes/test_port_override.py checks that the
ground it stands on is still there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import threading
from functools import partial
from typing import Any

import serial
import serial_asyncio_fast

from .. import inproc
from .errors import PortOpenError

WRITE_BUFFER_HIGH = 4096
"""Keep the local write buffer shallow: bytes queued here are bytes in flight that a
protocol cannot take back or reorder (retransmissions would queue behind stale data)."""


class SerialPort:
    """An open port: write bytes, read control lines, drop DTR where the port can."""

    kind = "?"

    def __init__(self, url: str, transport: asyncio.Transport) -> None:
        self.url = url
        self.transport = transport
        self.has_dtr = False
        self.has_dcd = False
        self.has_ri = False

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    async def set_dtr(self, level: bool) -> None:
        raise NotImplementedError

    def dcd(self) -> bool | None:
        return None

    def ri(self) -> bool | None:
        return None

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    async def close(self) -> None:
        self.transport.close()

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind,
            "dtr": self.has_dtr,
            "dcd": self.has_dcd,
            "ri": self.has_ri,
        }


class _PyserialPort(SerialPort):
    """A tty or pty through serial_asyncio_fast; control lines by ioctl."""

    kind = "tty"

    def __init__(self, url: str, transport: asyncio.Transport) -> None:
        super().__init__(url, transport)
        self.serial: serial.Serial = transport.serial  # type: ignore[attr-defined]
        self.has_dtr = _works(lambda: setattr(self.serial, "dtr", True))
        self.has_dcd = _works(lambda: self.serial.cd)
        self.has_ri = _works(lambda: self.serial.ri)
        self.kind = "tty" if self.has_dtr else "pty"

    async def set_dtr(self, level: bool) -> None:
        if self.has_dtr:
            self.serial.dtr = level

    def dcd(self) -> bool | None:
        return _read(lambda: self.serial.cd) if self.has_dcd else None

    def ri(self) -> bool | None:
        return _read(lambda: self.serial.ri) if self.has_ri else None


class _TtySerial(serial.Serial):  # type: ignore[misc]  # pyserial has no types
    """pyserial's POSIX port with one descriptor and no `select()`.

    pyserial opens two pipes per port (four descriptors, to abort a blocking read or
    write) and reads and writes through `select()`, which cannot take a descriptor at
    or above 1024: about 204 ports per process. The transport never blocks and never
    aborts (it reads and writes the non-blocking descriptor when the event loop says it
    is ready), so the pipes go and reading is `os.read`. Opening and configuring
    (termios, the exclusive lock, DTR/RTS) stay pyserial's (setup.cfg pins the release;
    tests/hayes/test_port_override.py checks what this relies on)."""

    fd: int | None
    is_open: bool

    def open(self) -> None:
        if self._port is None:
            raise serial.SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise serial.SerialException("Port is already open.")
        try:
            self.fd = os.open(self.portstr, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            self.fd = None
            raise serial.SerialException(
                exc.errno, f"could not open port {self._port}: {exc}"
            ) from exc
        try:
            self._reconfigure_port(force_update=True)
            try:
                if not self._dsrdtr:
                    self._update_dtr_state()
                if not self._rtscts:
                    self._update_rts_state()
            except OSError as exc:  # a pty: no modem-control lines
                if exc.errno not in (errno.EINVAL, errno.ENOTTY):
                    raise
            self._reset_input_buffer()
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        self.is_open = True

    def close(self) -> None:
        if self.is_open:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self.is_open = False

    def read(self, size: int = 1) -> bytes:
        """What is there now, up to `size` bytes (b"" if nothing); never waits."""
        if not self.is_open or self.fd is None:
            raise serial.PortNotOpenError()
        try:
            return os.read(self.fd, size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise serial.SerialException(f"read failed: {exc}") from exc

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Writes what the port takes now; returns how many bytes (0 when full)."""
        if not self.is_open or self.fd is None:
            raise serial.PortNotOpenError()
        try:
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise serial.SerialException(f"write failed: {exc}") from exc


class _SerialTransport(serial_asyncio_fast.SerialTransport):
    """serial_asyncio_fast's transport with its read and write paths fixed (see the
    module doc): `os.read`/`os.write` on the descriptor the event loop watches, and an
    error in a read (the port gone) or in the protocol's callback closes the port once,
    with the error, instead of firing again on every turn of the loop."""

    def _read_ready(self) -> None:
        try:
            data = os.read(self._serial.fileno(), self._max_read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._abort(serial.SerialException(f"read failed: {_reason(exc)}"))
            return
        if not data:
            self._abort(serial.SerialException("the port reported end of file"))
            return
        try:
            self._protocol.data_received(data)
        except Exception as exc:  # a bug above us: it costs this port, once
            self._abort(exc)

    def _write_data(self, data: bytes | bytearray | memoryview) -> None:
        try:
            written = os.write(self._serial.fileno(), data)  # the fd is non-blocking
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._fatal_error(
                serial.SerialException(f"write failed: {exc}"),
                "Fatal write error on serial transport",
            )
            return
        if written == len(data):
            if not self._write_buffer:
                self._remove_writer()
            if self._closing:
                self._close()
            return
        self._write_buffer.append(data[written:])
        self._maybe_pause_protocol()
        self._ensure_writer()

    def _write_ready(self) -> None:
        if not self._write_buffer:
            self._remove_writer()
            return
        super()._write_ready()


class _SocketPort(SerialPort):
    kind = "socket"

    async def set_dtr(self, level: bool) -> None:
        return None


class _InprocPort(SerialPort):
    kind = "inproc"

    def __init__(self, url: str, transport: asyncio.Transport, lines: inproc.ModemLines):
        super().__init__(url, transport)
        self.lines = lines
        self.has_dtr = self.has_dcd = self.has_ri = True

    async def set_dtr(self, level: bool) -> None:
        self.lines.set_dtr(level)

    def dcd(self) -> bool | None:
        return self.lines.cd

    def ri(self) -> bool | None:
        return self.lines.ri


class _Rfc2217Transport(asyncio.Transport):
    """pyserial's RFC 2217 client reads in a thread of its own; bridge it to asyncio."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, port: serial.Serial, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self.serial = port
        self._protocol = protocol
        self._closing = False
        self._lost = False
        self._paused = threading.Event()
        self._paused.set()  # set = reading allowed
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "rfc2217-writer")
        self._pending_writes = 0
        self._reader = threading.Thread(
            target=self._read_loop, daemon=True, name=f"rfc2217-reader {port.port}"
        )
        loop.call_soon(protocol.connection_made, self)
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            while not self._closing:
                self._paused.wait(0.1)
                # read(n) waits for all n bytes or the timeout: take one, then what is
                # already there, or every reply would arrive a timeout late
                data = self.serial.read(1)
                if data and self.serial.in_waiting:
                    data += self.serial.read(self.serial.in_waiting)
                if data:
                    self._loop.call_soon_threadsafe(self._deliver, data)
                if not self.serial.is_open:
                    break
        except Exception as exc:  # the socket died: report it once, on the loop
            if not self._closing:
                self._loop.call_soon_threadsafe(self._connection_lost, exc)
                return
        if not self._closing:
            self._loop.call_soon_threadsafe(
                self._connection_lost, ConnectionResetError("RFC 2217 connection closed")
            )

    def _deliver(self, data: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(data)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._protocol.connection_lost(exc)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        count = len(data)
        self._pending_writes += count
        future = self._writer.submit(self.serial.write, bytes(data))
        future.add_done_callback(lambda f: self._written(f, count))

    def _written(self, future: concurrent.futures.Future[Any], count: int) -> None:
        def done() -> None:
            self._pending_writes -= count
            if future.exception() is not None:
                self._connection_lost(future.exception())  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing to tell
            self._loop.call_soon_threadsafe(done)

    def get_write_buffer_size(self) -> int:
        return self._pending_writes

    def pause_reading(self) -> None:
        self._paused.clear()

    def resume_reading(self) -> None:
        self._paused.set()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing and self._lost:
            return
        self._closing = True
        self._writer.shutdown(wait=False)
        port = self.serial

        def shut() -> None:
            with contextlib.suppress(Exception):
                port.close()

        threading.Thread(target=shut, daemon=True).start()
        if not self._lost:
            self._lost = True
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class _Rfc2217Port(SerialPort):
    kind = "rfc2217"

    def __init__(self, url: str, transport: _Rfc2217Transport) -> None:
        super().__init__(url, transport)
        self.serial = transport.serial
        # a terminal server carries all three; until its first NOTIFY_MODEMSTATE
        # arrives the lines read as unknown (None)
        self.has_dtr = self.has_dcd = self.has_ri = True

    async def set_dtr(self, level: bool) -> None:
        # pyserial waits for the server's acknowledgement: not on the event loop
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, setattr, self.serial, "dtr", level)

    def dcd(self) -> bool | None:
        return _read(lambda: self.serial.cd)

    def ri(self) -> bool | None:
        return _read(lambda: self.serial.ri)


async def open_port(
    url: str, protocol: asyncio.Protocol, *, baudrate: int = 115200, rtscts: bool = True
) -> SerialPort:
    loop = asyncio.get_running_loop()
    try:
        if url.startswith(inproc.SCHEME):
            transport, lines = inproc.connect(url, protocol)
            return _InprocPort(url, transport, lines)
        if url.startswith("rfc2217://"):
            serial_port = await loop.run_in_executor(
                None, lambda: serial.serial_for_url(url, baudrate=baudrate, timeout=0.1)
            )
            return _Rfc2217Port(url, _Rfc2217Transport(loop, serial_port, protocol))
        if url.startswith("socket://"):
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                loop, lambda: protocol, url
            )
            return _SocketPort(url, transport)
        kwargs: dict[str, Any] = {"baudrate": baudrate, "rtscts": rtscts}
        if "://" not in url:
            kwargs["exclusive"] = True
        opener: Any = _TtySerial if "://" not in url else serial.serial_for_url
        serial_port = await loop.run_in_executor(None, partial(opener, url, **kwargs))
        transport = _SerialTransport(loop, protocol, serial_port)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        return _PyserialPort(url, transport)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortOpenError(f"cannot open {url}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _works(probe: Any) -> bool:
    try:
        probe()
    except (OSError, serial.SerialException, ValueError, TypeError):
        return False
    return True


def _read(probe: Any) -> bool | None:
    try:
        return bool(probe())
    except (OSError, serial.SerialException, ValueError, TypeError):
        return None
