"""The second path: the call-home protocol over TCP, beside the modem.

`TcpCall` gives a TCP connection the surface of a modem's `DataCall` that `run_session`
and the bank use (read, write, drain, open, ended, record, byte counts, hangup), so a
connection runs the very same `ClientSession` / `ServerSession` as a modem call. Only the
framing (`TransferConfig.stream`: a length in front of each frame, no COBS) and the
timers (`tcp_transfer_config`) differ. It is an `asyncio.Protocol`, not a stream pair:
the centre holds thousands of these, and a refused peer is dropped with no task made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from modem_drivers.hayes import CallEnded, ConnectRecord

if TYPE_CHECKING:
    from .wire.session import ClientSession, Event, ServerSession
    from .wire.transfer import TransferConfig

    Session = ClientSession | ServerSession

READ_LIMIT = 256 * 1024
"""Bytes buffered from the peer before we stop reading its socket (TCP pushes back)."""
MAX_STREAM_BODY = 2048
"""`callhome.wire.framing.MAX_BODY`, the longest frame body (not imported: an idle agent
imports this module and needs none of the protocol); a test keeps them equal."""
TCP_RATE = 100_000_000
"""The nominal "line rate" of a TCP path, bit/s: it only bounds the bytes in flight
(`flight_seconds` of it) and makes line time negligible in the deadlines."""


@functools.lru_cache(maxsize=8)
def tcp_transfer_config(handshake_timeout: float = 5.0) -> TransferConfig:
    """Protocol timers for TCP: no line to wait for, nothing lost or damaged, so the
    handshake has `handshake_timeout` in all (the centre's deadline before a peer has
    proved anything) and retransmission only covers a peer that stalls. The same
    (frozen) object for every call with the same deadline: the centre asks for it a
    thousand times a second."""
    # imported here: the client's config reads addresses from this module, and an idle
    # agent needs none of the protocol (nor the cryptography that the records import)
    from .wire.transfer import TransferConfig

    return TransferConfig(
        line_rate=TCP_RATE,
        stream=True,
        handshake_timeout=handshake_timeout,
        handshake_retry=min(3.0, handshake_timeout),
        # TCP loses nothing: a resent HS1 only helps a centre slow to answer, and a
        # silent one is given up after about 15 s for the next path, not a minute
        handshake_attempts=3,
        initial_rto=1.0,
        min_rto=0.5,
        ack_delay=0.005,
        close_linger=1.0,
    )


def tcp_record(peer: str) -> ConnectRecord:
    """What a TCP call says in place of a modem's CONNECT line."""
    return ConnectRecord(connect_line=f"TCP {peer}".encode(), modulation="TCP")


def format_address(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(text: str, *, listen: bool = False) -> tuple[str, int]:
    """`host:port`, `1.2.3.4:port` or `[2001:db8::1]:port` -> (host, port). Raises
    ValueError with a sentence. `listen`: port 0 (any free port) is allowed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r}: an IPv6 address is written [address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r}: give host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address is written [address]:port")
    lowest = 0 if listen else 1
    if not port_text.isascii() or not port_text.isdigit() or not lowest <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from {lowest} to 65535")
    if not host.isascii() or any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return host, int(port_text)


class TcpCall(asyncio.Protocol):
    """One TCP connection as a call."""

    def __init__(self, *, incoming: bool) -> None:
        self.incoming = incoming
        self.started = time.time()
        self.record = tcp_record("?")
        self.peer: tuple[str, int] | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None
        """What `wait` awaits: woken by bytes, the end of the connection or `wake`."""
        self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._closing: asyncio.Future[None] | None = None
        """What `hangup` awaits: woken when the connection ends."""
        self.on_end: Callable[[], None] | None = None
        """Called once, when the connection ends (the centre's handshake queue: a peer
        gone while its HS1 waits for a turn costs no DH)."""

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self._transport = cast("asyncio.Transport", transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
            self.record = tcp_record(format_address(*self.peer))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # our frames are small and each one is awaited: never hold one back (Nagle)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        if self.ended.is_set():
            return
        self.bytes_in += len(data)
        self._buffer += data
        self._readable.set()
        self.wake()
        if len(self._buffer) > READ_LIMIT and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._end("closed by the peer")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end("reset" if exc is not None else "closed")
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- the DataCall surface ------------------------------------------------------------

    @property
    def open(self) -> bool:
        return not self.ended.is_set()

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.ended.set()
        self._readable.set()
        self.wake()
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()

    def wake(self) -> None:
        """End a `wait` in progress (bytes came, the connection ended, or the caller's
        reason: a stop)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float | None, *, more: bool = False) -> None:
        """Until there are bytes to `take`, the connection has ended, `wake` is called,
        or the loop's clock reaches `deadline` (None: no deadline). One future and
        one timer handle: no task, unlike a `read` raced against a timeout. `more`:
        until more bytes than those already buffered (the rest of a frame)."""
        if (self._buffer and not more) or self.ended.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if deadline is None else loop.call_at(deadline, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self) -> bytes:
        """Every byte received and not yet read (b"" when none), at once."""
        if not self._buffer:
            return b""
        data = bytes(self._buffer)
        self._buffer.clear()
        self._resume_if_drained()
        return data

    def take_frame(self) -> bytes:
        """The bytes up to the end of the first stream frame received (a two-byte length,
        then the body: `callhome.wire.streamframing`), b"" while it is incomplete; what
        follows stays for the next `take`. A length no frame has (0, over
        `MAX_STREAM_BODY`: not our protocol) is handed over at once, with the rest: the
        session's decoder ends such a stream without waiting for more."""
        buffer = self._buffer
        if len(buffer) < 2:
            return b""
        length = int.from_bytes(buffer[:2], "big")
        if not 0 < length <= MAX_STREAM_BODY:
            return self.take()
        end = 2 + length
        if len(buffer) < end:
            return b""
        data = bytes(buffer[:end])
        del buffer[:end]
        self._resume_if_drained()
        return data

    @property
    def writable(self) -> bool:
        """False while the transport's buffer is over its high-water mark (`drain`)."""
        return self._writable.is_set()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes`; b"" once the connection has ended and everything was read."""
        while not self._buffer and not self.ended.is_set():
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        self._resume_if_drained()
        return data

    def _resume_if_drained(self) -> None:
        """Read the socket again once what `data_received` paused for is half read."""
        if self._paused and len(self._buffer) < READ_LIMIT // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of what `read` returns next (what followed a header
        the listener consumed)."""
        if data:
            self._buffer[:0] = data
            self._readable.set()

    def write(self, data: bytes) -> None:
        transport = self._transport
        if self.ended.is_set() or transport is None or transport.is_closing():
            raise CallEnded(f"the connection has ended ({self.end_reason or 'closed'})")
        self.bytes_out += len(data)
        transport.write(data)

    async def drain(self) -> None:
        await self._writable.wait()

    def early_result(self) -> None:
        """A modem may report BUSY as text after CONNECT; a TCP connection cannot."""
        return None

    async def hangup(self, linger: float = 1.0) -> None:
        """Close: what we wrote is still delivered (TCP sends it before the FIN); waits
        up to `linger` seconds for the peer's side to close too."""
        transport = self._transport
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
        if not self.ended.is_set():
            # one future and one timer handle (`_end` wakes it), not `wait_for`'s task:
            # the centre hangs up a thousand calls a second
            loop = asyncio.get_running_loop()
            waiter = self._closing = loop.create_future()
            timer = loop.call_later(linger, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._closing = None
            if not self.ended.is_set():
                transport.abort()
        self._end("hung up")

    async def finish(self, patience: float | None = None) -> None:
        await self.hangup(patience if patience is not None else 1.0)

    def abort(self) -> None:
        """Drop the connection at once (a reset): for peers we owe nothing."""
        if self._transport is not None:
            self._transport.abort()
        self._end("aborted")


async def connect_tcp(host: str, port: int, timeout: float) -> TcpCall:
    """Resolve `host` now (a name may move between calls) and connect, trying each
    address it resolves to (IPv6 and IPv4) within `timeout` seconds in all. Raises
    OSError (or TimeoutError) with the reason."""
    loop = asyncio.get_running_loop()
    _transport, call = await asyncio.wait_for(
        loop.create_connection(
            lambda: TcpCall(incoming=False),
            host,
            port,
            # a dual-stack name: if the first address family hangs, race the other
            happy_eyeballs_delay=0.25,
            interleave=1,
        ),
        timeout,
    )
    return call


CLOCK_SLACK = 0.001
"""A deadline this close is handled now, as at its own time: uvloop's clock counts
whole milliseconds and runs a timer due within half of one at once, so waiting for the
clock to reach the deadline itself woke the loop about 70 times per deadline."""


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def run_tcp_session(
    call: TcpCall,
    session: Session,
    handle: Callable[[Event], Awaitable[None]],
    *,
    stop: asyncio.Event | None = None,
    gate: Callable[[], Awaitable[bool]] | None = None,
    watch_stop: bool = True,
) -> str:
    """`callhome.link.run_session` for a TCP connection, with the same outcomes:
    "closed", "failed", "carrier lost" (the connection ended first) or "stopped"
    (`stop` was set, even while waiting for the peer). The modem's loop races a read
    task against the session's next deadline for every record; here the connection
    wakes one future (`TcpCall.wait`) and everything received since is handed to the
    session at once: no task, no `asyncio.wait` per record, on the path that the
    centre runs a thousand times a second.

    `gate` (the centre's): while the session still waits for a readable HS1, each whole
    frame received is handed over alone, once `await gate()` says it is this
    connection's turn (False: it was dropped meanwhile, or the connection ended). So
    the Diffie-Hellman an HS1 costs is done when the centre's handshake queue decides,
    one per turn at most, and never for a peer that has already gone.

    `watch_stop` False: the caller wakes the call (`TcpCall.wake`) when `stop` is set,
    for all its calls at once (the centre's listener): no task per call to watch it."""
    from .wire.phases import Phase  # here, as in tcp_transfer_config: an idle agent needs none

    loop = asyncio.get_running_loop()
    stopper: asyncio.Task[bool] | None = None
    if stop is not None and watch_stop:
        stopper = loop.create_task(stop.wait())
        stopper.add_done_callback(lambda _: call.wake())
    try:
        await _flush(call, session)
        while True:
            if session.phase is Phase.CLOSED:
                return "closed"
            if session.phase is Phase.FAILED:
                return "failed"
            if stop is not None and stop.is_set():
                return "stopped"
            partial = False
            if gate is not None and session.phase is Phase.HANDSHAKE:
                data = call.take_frame()
                partial = not data
                if data:
                    if not await gate():
                        return "carrier lost"
                    if stop is not None and stop.is_set():
                        return "stopped"
            else:
                data = call.take()
            now = loop.time()
            if data:
                events = session.receive_data(data, now)
            elif call.ended.is_set():
                return "carrier lost"
            else:
                deadline = session.next_deadline()
                if deadline is None or deadline > now + CLOCK_SLACK:
                    await call.wait(deadline, more=partial)
                    continue
                events = session.handle_timer(max(now, deadline))
            for event in events:
                await handle(event)
            if not await _flush(call, session):
                return "carrier lost"
    finally:
        if stopper is not None and not stopper.done():
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper


async def _flush(call: TcpCall, session: Session) -> bool:
    data = session.data_to_send()
    if not data:
        return call.open
    try:
        call.write(data)
    except CallEnded:
        return False
    if not call.writable:
        await call.drain()
    return True
