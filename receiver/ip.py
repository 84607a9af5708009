"""The TCP listener: the call-home protocol over IP, beside the modem bank.

Each connection runs the same `ServerSession`, through the same code, as a modem call
(`PortWorker._serve_call`); only the framing (length-prefixed, `callhome.tcp`) and the
timers differ. What a modem line gives for free — one caller per port, a caller who
pays for the call — a TCP port does not, so before a peer has authenticated it meets,
in order:

* a cap on connections in all (`max_connections`), authenticated ones included;
* a cap on connections still in their handshake, in all (`max_handshakes`) and per
  source (`max_handshakes_per_source`); at the cap in all, the slots are shared fairly
  between sources: a newcomer takes the oldest handshake of the source holding the
  most, if that one holds at least two more than the newcomer's (see `Admission`);
* a token bucket per source (`rate` new connections a second, `burst` at once);
* a handshake deadline (`handshake_timeout`, from accept to the caller's first
  authenticated record).

Once in, a peer's HS1 (the message that costs the centre a Diffie-Hellman, and a forger
nothing) waits in the handshake queue (`handshakequeue.HandshakeQueue`): served round
robin by source, a few per turn of the event loop, so that a flood's HS1s neither starve
the calls already authenticated nor make a device's HS1 wait behind their backlog.

A source is an IPv4 address, or an IPv6 /64 (one subscriber's allocation). A refused
connection is reset at once: it gets no byte from us, and costs no task, no store write
and no log line of its own. Refusals are counted by reason and logged as a summary at
most every `summary_interval`; the counters are also written to `ip-status.json` beside
the store, which `callhome-receiver ip` prints. A peer that gets past the limits but
sends no valid handshake gets at most a NOTICE per HS1 (shorter than the HS1: no
amplification) and is not recorded as a call: only a peer that completes a Noise
handshake with a device key (accepted or refused) is.

`Admission` holds the limits and is sans-IO (times are arguments), tested in virtual
time; `IpListener` is the asyncio shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from callhome.tcp import (
    TcpCall,
    format_address,
    parse_endpoint,
    run_tcp_session,
    tcp_record,
    tcp_transfer_config,
)
from callhome.wire.session import (
    Event,
    HandshakeDecryptionFailed,
    HandshakeRefused,
    HandshakeRequested,
    ServerSession,
)
from callhome.wire.transfer import TransferConfig
from modem_drivers.hayes import DataCall

from .bank import Bank, CallState, PortWorker
from .handshakequeue import HandshakeQueue, Holdings
from .proxyheader import ProxyHeader, ProxyHeaderError
from .proxyheader import parse as parse_proxy_header

log = structlog.get_logger("callhome.receiver.ip")

PATH = "ip"
"""The path recorded with every call that came over TCP (the bank's are "modem")."""
STATUS_FILE = "ip-status.json"
UNDECRYPTABLE = 2
"""Handshake messages that do not decrypt after which a TCP connection is closed (a
device with the wrong centre key sends one, and resends it only after its NOTICE grace,
so it has its NOTICE by then)."""
BACKLOG = 4096
"""The kernel's queue of connections not yet accepted (capped by net.core.somaxconn)."""
ACCEPT_BATCH = 512
"""Connections taken per wake-up: a flood is drained quickly, other work still runs."""
_RESET = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close() sends a reset, and nothing else, to a refused peer."""


@dataclass(frozen=True)
class IpLimits:
    handshake_timeout: float = 5.0
    max_connections: int = 1024
    max_handshakes: int = 256
    max_handshakes_per_source: int = 8
    rate: float = 5.0
    """New connections a second per source, on average."""
    burst: int = 20
    """New connections a source may open at once."""
    sources: int = 100_000
    """Sources whose buckets are remembered (memory bound; the least recently seen
    are forgotten first)."""
    summary_interval: float = 10.0
    evict_after: float = 1.0
    """With `max_handshakes` reached, a connection that has been in its handshake this
    long is dropped to make room for a new one (a device's handshake takes a round
    trip or two; a peer that sits on a slot is holding it)."""
    handshake_queue: int = 128
    """HS1s waiting for their Diffie-Hellman, at most (`HandshakeQueue`): beyond it the
    oldest of the source holding the most is dropped, its connection reset."""
    handshakes_per_turn: int = 4
    """HS1s processed per turn of the event loop: between two turns, authenticated
    calls get the loop whatever the queue holds."""


REASONS = (
    "connections",
    "handshakes",
    "source handshakes",
    "rate",
    "deadline",
    "undecryptable",
    "handshake",
    "proxy header",
    "evicted",
    "queue",
)
"""Why a connection was refused or ended unauthenticated: the connection cap, the
handshake cap, the per-source handshake cap, the per-source rate, the handshake
deadline, an HS1 we could not decrypt (a device with the wrong centre key, or a
forgery), another failed handshake (not our protocol, a peer that hung up), a trusted
proxy's connection without a valid PROXY header in time, a handshake dropped to make
room for a newer one, an HS1 dropped from the full handshake queue."""


@functools.lru_cache(maxsize=4096)
def source_of(address: str) -> str:
    """The key limits count by: the IPv4 address, or the /64 of an IPv6 one (cached:
    a flood comes from few addresses, and parsing one costs more than refusing it)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    open: dict[int, None] = field(default_factory=dict)
    """The source's handshakes in progress (their tickets), oldest first."""

    @property
    def handshakes(self) -> int:
        return len(self.open)


@dataclass
class Admission:
    """The listener's limits, sans-IO: `admit` when a peer connects (None: let it in,
    as `ticket`; otherwise the reason), `authenticated` when it proved it holds a device
    key (or was refused by the protocol), `closed` when its connection ends.

    At `max_handshakes`, a newcomer is not simply refused: the handshakes are shared
    fairly between sources. If some source holds at least two more handshakes than the
    newcomer's, the oldest handshake of the source holding the most is dropped for it
    (max-min fairness: a device, which makes one call at a time, gets in as long as any
    source holds two; a source holding one is never pushed out by this rule, so a flood
    cannot push out a device's handshake by adding addresses). Otherwise the oldest
    handshake of all is dropped if it is `evict_after` old and its source holds more
    than the newcomer's (or is the newcomer's): a device slow to finish its handshake
    under load is not pushed out by a flooder that holds one itself; otherwise
    "handshakes".
    A handshake is eligible from the moment it is admitted (before the shell has a task
    for it); the tickets dropped are queued in `dropped` for the shell to close."""

    limits: IpLimits = field(default_factory=IpLimits)
    connections: int = 0
    handshakes: int = 0
    admitted: int = 0
    authenticated_count: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    ticket: int = -1
    """The last admitted connection's ticket."""
    dropped: list[int] = field(default_factory=list)
    """Tickets of handshakes dropped to make room, for the shell to close (it clears it)."""
    _sources: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)
    _open: dict[int, tuple[str, float]] = field(default_factory=dict)
    """Every handshake in progress: ticket -> (source, admitted at), oldest first."""
    _holdings: Holdings = field(default_factory=Holdings)
    _tickets: int = 0

    def admit(self, source: str, now: float) -> str | None:
        limits = self.limits
        bucket = self._bucket(source, now)
        reason: str | None = None
        if self.connections >= limits.max_connections:
            reason = "connections"
        elif bucket.handshakes >= limits.max_handshakes_per_source:
            reason = "source handshakes"
        elif bucket.tokens < 1.0:
            reason = "rate"
        elif self.handshakes >= limits.max_handshakes and not self._make_room(source, bucket, now):
            reason = "handshakes"
        if reason is not None:
            self.refused[reason] += 1
            return reason
        bucket.tokens -= 1.0
        self._tickets += 1
        self.ticket = ticket = self._tickets
        self._open[ticket] = (source, now)
        self._holdings.move(source, bucket.handshakes, +1)
        bucket.open[ticket] = None
        self.connections += 1
        self.handshakes += 1
        self.admitted += 1
        return None

    def authenticated(self, source: str, ticket: int | None = None) -> None:
        """The handshake is over: its slot is free for another (`ticket`: which one;
        without it, the source's oldest)."""
        self.authenticated_count += 1
        self._release(source, ticket)

    def closed(
        self,
        source: str,
        *,
        handshaking: bool,
        reason: str | None = None,
        ticket: int | None = None,
    ) -> None:
        """A connection ended; `handshaking`: before `authenticated` (then `reason`,
        "deadline" or "handshake", is counted)."""
        self.connections -= 1
        if handshaking:
            self._release(source, ticket)
            if reason is not None:
                self.refused[reason] += 1

    def dequeued(self, source: str, ticket: int) -> None:
        """The handshake's HS1 was dropped from the full handshake queue (the shell
        resets its connection): its slot is free, and it is counted."""
        self._release(source, ticket)
        self.refused["queue"] += 1

    def holding(self, source: str) -> int:
        """The handshakes `source` has in progress."""
        bucket = self._sources.get(source)
        return 0 if bucket is None else bucket.handshakes

    def _make_room(self, source: str, bucket: _Bucket, now: float) -> bool:
        if self._holdings.most >= bucket.handshakes + 2:
            greediest = self._holdings.greediest()
            victim = next(iter(self._sources[greediest].open))
        elif self._open:
            victim, (owner, started) = next(iter(self._open.items()))
            if now - started < self.limits.evict_after:
                return False
            if owner != source and self._sources[owner].handshakes <= bucket.handshakes:
                return False  # not a fairer share: a slow device's one handshake stays
        else:
            return False
        source, _started = self._open[victim]
        self._release(source, victim)
        self.refused["evicted"] += 1
        self.dropped.append(victim)
        return True

    def _release(self, source: str, ticket: int | None) -> None:
        bucket = self._sources.get(source)
        if bucket is None or not bucket.open:
            return
        if ticket is None:
            ticket = next(iter(bucket.open))
        elif ticket not in bucket.open:
            return  # already dropped to make room
        self._holdings.move(source, bucket.handshakes, -1)
        del bucket.open[ticket]
        self._open.pop(ticket, None)
        self.handshakes -= 1

    def _bucket(self, source: str, now: float) -> _Bucket:
        limits = self.limits
        bucket = self._sources.get(source)
        if bucket is None:
            bucket = _Bucket(float(limits.burst), now)
            self._sources[source] = bucket
            self._forget(now)
        else:
            self._sources.move_to_end(source)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(limits.burst), bucket.tokens + elapsed * limits.rate)
            bucket.stamp = now
        return bucket

    def _forget(self, now: float) -> None:
        """Beyond `sources`, drop the least recently seen with no handshake open (a
        forgotten source starts with a full bucket: the bound costs a little rate
        precision for a flood from very many addresses, never memory)."""
        while len(self._sources) > self.limits.sources:
            for key, bucket in self._sources.items():
                if not bucket.open:
                    del self._sources[key]
                    break
            else:
                return

    @property
    def sources_tracked(self) -> int:
        return len(self._sources)

    def status(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "handshakes": self.handshakes,
            "admitted": self.admitted,
            "authenticated": self.authenticated_count,
            "refused": dict(self.refused),
            "sources_tracked": self.sources_tracked,
        }


@dataclass
class _Slot:
    """An admitted connection still in its handshake, as the shell knows it."""

    ticket: int
    handler: IpCall | None = None
    """Once its task serves it."""
    dropped: bool = False

    def drop(self) -> None:
        """Made room for another: close it now if it is being served, otherwise its
        task resets it when it runs."""
        self.dropped = True
        if self.handler is not None:
            self.handler.handshaking = False
            self.handler.call.abort()


class IpCall(PortWorker):
    """One TCP connection at the centre: the bank's call handling, with TCP timers, no
    hang-up wait, and a call record only once the peer completes a handshake."""

    path = PATH

    def __init__(
        self, listener: IpListener, call: TcpCall, source: str, peer: str, ticket: int
    ) -> None:
        # no PortWorker.__init__: its callback queue and its logger are a modem port's,
        # and a connection pays for every object it makes (a flood makes hundreds a
        # second); these are the attributes the bank's call handling reads
        self.bank = listener.bank
        self.url = peer
        self.name = PATH
        self.state = "ready"
        self.in_call = True
        self._held = None
        self.listener = listener
        self.call = call
        self.source = source
        self.peer = peer
        self.ticket = ticket
        self.handshaking = True
        self._log = self._bind_log()

    def _bind_log(self) -> Any:
        return log.bind(port=PATH, peer=self.peer)

    async def _start_record(self, state: CallState) -> None:
        """Nothing yet: a stranger's connection costs no store write."""

    async def _record_now(self, state: CallState) -> None:
        if state.call_id is None:
            state.call_id = await self.bank.store.start_call(
                PATH, state.caller, self.call.started, path=PATH
            )

    def _transfer_config(self, call: DataCall | TcpCall) -> TransferConfig:
        # real time even when the bank's modems run on a scaled virtual network: TCP
        # does not scale
        return tcp_transfer_config(self.listener.limits.handshake_timeout)

    async def _let_caller_hang_up(self, call: DataCall | TcpCall) -> None:
        """Nothing to wait for: TCP delivers what we wrote before our FIN."""

    async def _run_session(
        self,
        call: DataCall | TcpCall,
        session: ServerSession,
        handle: Callable[[Event], Awaitable[None]],
    ) -> str:
        assert call is self.call
        # the listener wakes its calls on a hard stop (`IpListener.run`)
        return await run_tcp_session(
            self.call, session, handle, stop=self.bank.hard_stop, gate=self._turn, watch_stop=False
        )

    def _turn(self) -> Awaitable[bool]:
        return self.listener.turn(self)

    async def _event(self, session: ServerSession, event: Event, state: CallState) -> None:
        if isinstance(event, HandshakeRequested | HandshakeRefused):
            await self._record_now(state)
        await super()._event(session, event, state)
        if isinstance(event, HandshakeDecryptionFailed) and state.undecryptable >= UNDECRYPTABLE:
            # on a modem line the next HS1 may be the genuine one after noise; TCP has no
            # noise: more HS1s we cannot read are someone making us do DH for nothing.
            # The NOTICE already written still goes out before the connection closes.
            session.abort("handshake messages that do not decrypt")
        if self.handshaking and (state.confirmed or (state.outcome or "").startswith("refused")):
            # proved it holds a device key (or was refused by the protocol, which tells
            # it why and closes): no longer a handshake the limits count
            self.listener.done_handshaking(self)
            self.listener.admission.authenticated(self.source, self.ticket)

    async def _record(self, call: DataCall | TcpCall, state: CallState) -> None:
        if state.call_id is None:
            # never got as far as a device key: counted, not recorded or logged as a call
            self._log.debug("ip.unauthenticated", outcome=state.outcome, error=state.error)
            return
        await super()._record(call, state)


class IpListener:
    """Listens on `addresses` (host:port), serving each admitted connection."""

    def __init__(
        self,
        bank: Bank,
        addresses: list[str],
        limits: IpLimits | None = None,
        *,
        status_path: Path | None = None,
        proxies: list[str] | None = None,
    ) -> None:
        """`proxies`: addresses or networks of TCP proxies whose connections begin with
        a PROXY header (`proxyheader.py`): the limits apply to the address it names."""
        self.bank = bank
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in proxies or []]
        self.addresses = [parse_endpoint(a, listen=True) for a in addresses]
        self.limits = limits or IpLimits()
        self.admission = Admission(self.limits)
        self.status_path = status_path
        self.in_call = 0
        self.bound: list[tuple[str, int]] = []
        """The addresses actually listened on (port 0 in the config: the one chosen)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: list[socket.socket] = []
        self._slots: dict[int, _Slot] = {}
        """Connections in their handshake, by `Admission` ticket, from their admission
        on (before their task runs: they can be dropped to make room at once)."""
        self.handshake_queue: HandshakeQueue[int] = HandshakeQueue(
            self.limits.handshake_queue, self.limits.handshakes_per_turn
        )
        self._queued: dict[int, tuple[asyncio.Future[bool], IpCall]] = {}
        """Connections whose HS1 waits in `handshake_queue`, by ticket."""
        self._pumping = False
        self._calls: set[TcpCall] = set()
        """The connections being served, to wake when the bank's hard stop comes."""
        self.accept_errors = 0
        self._reported: dict[str, int] = dict(self.admission.refused)
        self.started = time.time()

    async def start(self) -> None:
        """Bind every address (before the bank starts: an address in use is a
        configuration error to report at once). Raises OSError naming the address."""
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.addresses:
                try:
                    infos = await loop.getaddrinfo(
                        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                    )
                    for family, kind, proto, _name, address in dict.fromkeys(infos):
                        self._listen(socket.socket(family, kind, proto), address)
                except OSError as exc:
                    raise OSError(
                        exc.errno,
                        f"cannot listen on {format_address(host, port)}: {exc.strerror or exc}",
                    ) from None
        except OSError:
            self._close_sockets()
            raise
        log.info(
            "ip.listening",
            addresses=[format_address(*a) for a in self.bound],
            **asdict(self.limits),
        )

    def _listen(self, sock: socket.socket, address: Any) -> None:
        self._sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        name = sock.getsockname()
        self.bound.append((str(name[0]), int(name[1])))
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()

    async def run(self) -> None:
        bank = self.bank
        if not self._sockets:
            await self.start()
        self._summary()  # the status file exists from the start
        try:
            while not bank.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bank.stopping.wait(), self.limits.summary_interval)
                self._summary()
        finally:
            self._close_sockets()
            if self._tasks:  # the bank sets hard_stop when they may not finish
                waker = asyncio.ensure_future(self._wake_on_hard_stop())
                await asyncio.wait(set(self._tasks))
                waker.cancel()
            self._summary()
            log.info("ip.stopped")

    async def _wake_on_hard_stop(self) -> None:
        """One task for every call (`run_tcp_session`'s `watch_stop`): at the hard stop,
        each call waiting for its peer looks at the stop and ends."""
        await self.bank.hard_stop.wait()
        for call in list(self._calls):
            call.wake()

    def _accept(self, listening: socket.socket) -> None:
        """Take the waiting connections; judge each on its source address before any
        transport, task or buffer exists for it: a refused one costs an accept and a
        reset, so a flood is turned away at the rate the kernel can hand it over."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # out of file descriptors or buffers: stop accepting for a moment
                # rather than spin; the kernel's queue holds (or drops) the rest
                self.accept_errors += 1
                log.error("ip.accept_failed", error=str(exc))
                loop.remove_reader(listening.fileno())
                loop.call_later(0.1, loop.add_reader, listening.fileno(), self._accept, listening)
                return
            if self.proxies and self._from_proxy(str(peer[0])):
                if self.bank.stopping.is_set():
                    self._reset(sock)
                    continue
                task = asyncio.ensure_future(self._take_proxied(sock, format_address(*peer[:2])))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                continue
            # the kernel's IPv4 address is already the source: no parsing per attempt
            source = peer[0] if listening.family == socket.AF_INET else source_of(peer[0])
            if self.bank.stopping.is_set() or self.admission.admit(source, now) is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                sock.close()
                continue
            slot = self._admitted()
            self.in_call += 1
            task = asyncio.ensure_future(self._take(sock, source, format_address(*peer[:2]), slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _admitted(self) -> _Slot:
        """The connection just admitted gets its slot; the handshakes `admit` dropped to
        make room for it are closed (those whose task has not run yet, when it does)."""
        admission = self.admission
        slot = self._slots[admission.ticket] = _Slot(admission.ticket)
        if admission.dropped:
            for ticket in admission.dropped:
                dropped = self._slots.pop(ticket, None)
                if dropped is not None:
                    dropped.drop()
            admission.dropped.clear()
        return slot

    async def turn(self, handler: IpCall) -> bool:
        """Wait for the turn of `handler`'s HS1 in the handshake queue: True, process it
        now; False, its connection ended meanwhile, or it was dropped from the full
        queue (then its connection is reset, its slot freed and counted: "queue")."""
        call = handler.call
        if not call.open:
            return False
        loop = asyncio.get_running_loop()
        queue = self.handshake_queue
        ticket = handler.ticket
        now, dropped = queue.admit(handler.source, ticket)
        if not self._pumping and queue.pending:
            self._pumping = True
            loop.call_soon(self._pump)
        if now:
            return True
        waiter: asyncio.Future[bool] = loop.create_future()
        self._queued[ticket] = (waiter, handler)
        # a peer that hangs up while queued (a flooder resets right after its HS1)
        # leaves the queue at once: it costs no DH and holds no place
        call.on_end = functools.partial(self._left_queue, ticket)
        for victim in dropped:
            self._drop_queued(victim)
        try:
            return await waiter
        finally:
            if self._queued.pop(ticket, None) is not None:  # cancelled (a hard stop)
                self.handshake_queue.cancel(ticket)
            if call.on_end is not None:
                call.on_end = None

    def _pump(self) -> None:
        """One turn of the handshake queue: its HS1s go ahead, at most
        `handshakes_per_turn` with those let through at once since (`admit`); their
        tasks run in the loop's next iteration, with everything else that is ready
        then, and this again after them while a turn is due. So a loop iteration
        runs at most twice `handshakes_per_turn` HS1s, whatever is queued."""
        for ticket in self.handshake_queue.turn():
            waiter, handler = self._queued.pop(ticket)
            handler.call.on_end = None
            if not waiter.done():
                waiter.set_result(True)
        if self.handshake_queue.pending:
            asyncio.get_running_loop().call_soon(self._pump)
        else:
            self._pumping = False

    def _left_queue(self, ticket: int) -> None:
        if self.handshake_queue.cancel(ticket):
            waiter, _handler = self._queued.pop(ticket)
            if not waiter.done():
                waiter.set_result(False)

    def _drop_queued(self, ticket: int) -> None:
        waiter, handler = self._queued.pop(ticket)
        handler.handshaking = False
        self._slots.pop(ticket, None)
        self.admission.dequeued(handler.source, ticket)
        handler.call.on_end = None
        handler.call.abort()
        if not waiter.done():
            waiter.set_result(False)

    def done_handshaking(self, handler: IpCall) -> None:
        handler.handshaking = False
        self._slots.pop(handler.ticket, None)

    def _from_proxy(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.proxies)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.close()

    async def _take_proxied(self, sock: socket.socket, proxy: str) -> None:
        """A connection from a trusted proxy: read its PROXY header (within the
        handshake deadline), then judge the client it names as if it had connected."""
        loop = asyncio.get_running_loop()
        try:
            _transport, call = await loop.connect_accepted_socket(
                lambda: TcpCall(incoming=True), sock
            )
        except OSError:
            sock.close()
            return
        received = b""
        header: ProxyHeader | None = None
        try:
            async with asyncio.timeout(self.limits.handshake_timeout):
                while header is None:
                    data = await call.read()
                    if not data:
                        raise ProxyHeaderError("the proxy closed the connection")
                    received += data
                    header = parse_proxy_header(received)
        except (ProxyHeaderError, TimeoutError) as exc:
            self.admission.refused["proxy header"] += 1
            log.debug("ip.proxy_header_refused", proxy=proxy, error=str(exc) or "deadline")
            call.abort()
            return
        call.unread(received[header.length :])
        client = header.source
        peer = format_address(*client) if client else proxy
        source = source_of(client[0] if client else proxy.rsplit(":", 1)[0].strip("[]"))
        if self.bank.stopping.is_set() or self.admission.admit(source, loop.time()) is not None:
            call.abort()
            return
        slot = self._admitted()
        self.in_call += 1
        call.record = tcp_record(f"{peer} via {proxy}")
        await self._serve(IpCall(self, call, source, peer, slot.ticket), slot)

    async def _take(self, sock: socket.socket, source: str, peer: str, slot: _Slot) -> None:
        if slot.dropped:  # made room for another before it got this far: its slot is gone
            self._reset(sock)
            self.in_call -= 1
            self.admission.closed(source, handshaking=False)
            return
        loop = asyncio.get_running_loop()
        try:
            _transport, call = await loop.connect_accepted_socket(
                lambda: TcpCall(incoming=True), sock
            )
        except OSError:
            sock.close()
            self._slots.pop(slot.ticket, None)
            self.in_call -= 1
            self.admission.closed(
                source, handshaking=not slot.dropped, reason="handshake", ticket=slot.ticket
            )
            return
        await self._serve(IpCall(self, call, source, peer, slot.ticket), slot)

    async def _serve(self, handler: IpCall, slot: _Slot) -> None:
        call = handler.call
        slot.handler = handler
        if slot.dropped:
            handler.handshaking = False
            call.abort()
        loop = asyncio.get_running_loop()
        deadline_hit = False

        def deadline() -> None:
            nonlocal deadline_hit
            if handler.handshaking:
                deadline_hit = True
                call.abort()

        timer = loop.call_later(self.limits.handshake_timeout, deadline)
        state = CallState(PATH, handler.peer)
        self._calls.add(call)
        try:
            await handler._serve_call(call, state)
        except OSError as exc:
            state.outcome = state.outcome or "dropped"
            state.error = state.error or str(exc)
        finally:
            timer.cancel()
            self._calls.discard(call)
            with contextlib.suppress(OSError):
                await call.hangup(linger=1.0)
            if deadline_hit:
                state.outcome = "failed"
                state.error = (
                    "no authenticated record within the handshake deadline "
                    f"({self.limits.handshake_timeout:g} s)"
                )
            try:
                await handler._record(call, state)
            finally:
                self._slots.pop(handler.ticket, None)
                self.in_call -= 1
                reason = (
                    "deadline"
                    if deadline_hit
                    else "undecryptable"
                    if state.undecryptable
                    else "handshake"
                )
                self.admission.closed(
                    handler.source,
                    handshaking=handler.handshaking,
                    reason=reason,
                    ticket=handler.ticket,
                )

    def status(self) -> dict[str, Any]:
        return {
            "listening": [format_address(*a) for a in self.bound],
            "since": self.started,
            "written": time.time(),
            "limits": asdict(self.limits),
            "accept_errors": self.accept_errors,
            **self.admission.status(),
            "queued": len(self.handshake_queue),
        }

    def _summary(self) -> None:
        refused = self.admission.refused
        new = {k: v - self._reported.get(k, 0) for k, v in refused.items()}
        if any(new.values()):
            log.warning(
                "ip.refused",
                **{k.replace(" ", "_"): v for k, v in new.items() if v},
                total=sum(refused.values()),
            )
            self._reported = dict(refused)
        if self.status_path is not None:
            write_status(self.status_path, self.status())


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file); a failure is logged, not fatal."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(status, indent=2))
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("ip.status_not_written", path=str(path), error=str(exc))


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
