"""`run_tcp_session`: the loop that carries a session over a TCP connection at the
centre (and in the benchmarks' clients), with `run_session`'s outcomes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from callhome.keys import public_of
from callhome.tcp import TcpCall, connect_tcp, run_tcp_session, tcp_transfer_config
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from callhome.wire.noise import generate_private_key
from callhome.wire.session import (
    ClientSession,
    Event,
    HandshakeRequested,
    MessageAcknowledged,
    MessageReceived,
    ServerSession,
)

CENTRE = generate_private_key()
DEVICE = generate_private_key()


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[TcpCall, TcpCall]]:
    """Both ends of one loopback TCP connection: (centre's, device's)."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[TcpCall] = loop.create_future()

    def make() -> TcpCall:
        call = TcpCall(incoming=True)
        accepted.set_result(call)
        return call

    server = await loop.create_server(make, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        device = await connect_tcp("127.0.0.1", port, 5.0)
        centre = await asyncio.wait_for(accepted, 5.0)
        try:
            yield centre, device
        finally:
            centre.abort()
            device.abort()
    finally:
        server.close()


def client_session(handshake_timeout: float = 5.0, messages: int = 1) -> ClientSession:
    session = ClientSession(
        static_private=DEVICE,
        server_public=public_of(CENTRE),
        call_counter=1,
        epoch=1,
        config=tcp_transfer_config(handshake_timeout),
    )
    dictionary = load_dictionary(CURRENT_DICTIONARY)
    for seq in range(1, messages + 1):
        session.queue(seq, encode_message(Kind.REPORT, {"component": f"psu{seq}"}, dictionary))
    session.finish()
    session.start(asyncio.get_running_loop().time())
    return session


def server_session(handshake_timeout: float = 5.0) -> ServerSession:
    session = ServerSession(static_private=CENTRE, config=tcp_transfer_config(handshake_timeout))
    session.start(asyncio.get_running_loop().time())
    return session


async def test_a_whole_call_runs_to_closed_on_both_ends():
    loop = asyncio.get_running_loop()
    stored: list[int] = []
    acknowledged: list[int] = []
    async with connected() as (centre_call, device_call):
        server = server_session()
        client = client_session(messages=3)

        async def at_centre(event: Event) -> None:
            if isinstance(event, HandshakeRequested):
                server.accept(loop.time(), clock_ms=0)
            elif isinstance(event, MessageReceived):
                stored.append(event.seq)
                server.message_stored(event.seq, loop.time())

        async def at_device(event: Event) -> None:
            if isinstance(event, MessageAcknowledged):
                acknowledged.append(event.seq)

        outcomes = await asyncio.wait_for(
            asyncio.gather(
                run_tcp_session(centre_call, server, at_centre, stop=asyncio.Event()),
                run_tcp_session(device_call, client, at_device),
            ),
            10.0,
        )
    assert outcomes == ["closed", "closed"]
    assert sorted(stored) == sorted(acknowledged) == [1, 2, 3]


async def test_a_silent_peer_makes_the_handshake_fail_on_its_deadline():
    """The session's timers are kept (retries, then its deadline) with no bytes coming."""
    loop = asyncio.get_running_loop()
    async with connected() as (centre_call, device_call):
        client = client_session(handshake_timeout=0.2)
        started = loop.time()
        ended = await asyncio.wait_for(run_tcp_session(device_call, client, _ignore), 10.0)
        assert ended == "failed"
        assert loop.time() - started >= 0.2
        # the HS1 went out, and was resent on the session's timer (3 attempts)
        hs1 = centre_call.take()
        assert len(hs1) > 0 and hs1 == hs1[: len(hs1) // 3] * 3


async def test_the_peer_hanging_up_is_carrier_lost():
    async with connected() as (centre_call, device_call):
        server = server_session(handshake_timeout=60.0)
        running = asyncio.ensure_future(run_tcp_session(centre_call, server, _ignore))
        await asyncio.sleep(0)  # waiting for the peer
        device_call.abort()
        assert await asyncio.wait_for(running, 5.0) == "carrier lost"


async def test_stop_ends_a_session_waiting_for_its_peer_at_once():
    """The hard stop: set while the session waits (its deadline a minute away)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with connected() as (centre_call, _device_call):
        server = server_session(handshake_timeout=60.0)
        running = asyncio.ensure_future(run_tcp_session(centre_call, server, _ignore, stop=stop))
        await asyncio.sleep(0)
        assert not running.done()
        started = loop.time()
        stop.set()
        assert await asyncio.wait_for(running, 5.0) == "stopped"
        assert loop.time() - started < 5.0
        assert centre_call.open  # stopping is the caller's to follow with a hang-up


async def test_stop_set_before_it_starts_returns_stopped():
    stop = asyncio.Event()
    stop.set()
    async with connected() as (centre_call, _device_call):
        server = server_session(handshake_timeout=60.0)
        ended = await asyncio.wait_for(
            run_tcp_session(centre_call, server, _ignore, stop=stop), 5.0
        )
        assert ended == "stopped"


async def _ignore(event: Event) -> None:
    return None


def test_a_session_on_uvloop_waits_once_per_deadline_not_until_the_clock_reaches_it(monkeypatch):
    """uvloop's clock counts whole milliseconds and runs a timer due within half of one
    at once: a loop that waited again while `deadline > now` woke about 70 times per
    deadline (the TCP ACK delay is 5 ms). Counted: the waits of a whole call on uvloop
    against the same call on asyncio's loop."""
    import uvloop

    real_wait = TcpCall.wait
    waits: list[int] = []

    async def counted(self, deadline, *, more=False):
        waits[-1] += 1
        await real_wait(self, deadline, more=more)

    async def plain_connect(host: str, port: int, timeout: float) -> TcpCall:
        # uvloop's create_connection has no happy eyeballs (the client runs on asyncio)
        loop = asyncio.get_running_loop()
        _transport, call = await loop.create_connection(lambda: TcpCall(incoming=False), host, port)
        return call

    monkeypatch.setattr(TcpCall, "wait", counted)
    monkeypatch.setitem(globals(), "connect_tcp", plain_connect)
    for factory in (None, uvloop.new_event_loop):
        waits.append(0)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(test_a_whole_call_runs_to_closed_on_both_ends())
            # and a call whose deadlines pass with nothing coming (HS1 resent, then given up)
            runner.run(test_a_silent_peer_makes_the_handshake_fail_on_its_deadline())
    on_asyncio, on_uvloop = waits
    assert on_uvloop <= on_asyncio + 2, waits  # 8 and 23 before the fix


def test_the_modem_loop_on_uvloop_handles_a_deadline_once_when_its_wait_times_out():
    """`callhome.link.run_session` (the modem path) waits for bytes or the deadline; on
    uvloop the wait can time out a fraction of a millisecond before the deadline by the
    session's clock, and the session, handed that earlier time, did nothing, so the loop
    waited again and again until the clock reached it."""
    import uvloop

    from callhome.link import run_session

    class Silent:
        """A line on which nothing ever comes back."""

        open = True

        def __init__(self) -> None:
            self.written = 0

        async def read(self) -> bytes:
            await asyncio.Event().wait()
            return b""

        def write(self, data: bytes) -> None:
            self.written += 1

        async def drain(self) -> None:
            return None

    class Counting(ClientSession):
        timers = 0

        def handle_timer(self, now: float):  # type: ignore[no-untyped-def]
            Counting.timers += 1
            return super().handle_timer(now)

    async def silent_call() -> str:
        session = Counting(
            static_private=DEVICE,
            server_public=public_of(CENTRE),
            call_counter=1,
            epoch=1,
            config=tcp_transfer_config(0.2),
        )
        session.finish()
        session.start(asyncio.get_running_loop().time())
        return await asyncio.wait_for(run_session(Silent(), session, _ignore), 10.0)

    counts = []
    for factory in (None, uvloop.new_event_loop):
        Counting.timers = 0
        with asyncio.Runner(loop_factory=factory) as runner:
            assert runner.run(silent_call()) == "failed"
        counts.append(Counting.timers)
    assert counts[1] <= counts[0] + 1, counts
