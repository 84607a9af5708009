"""Two sessions joined by a frame-level channel that drops, duplicates, reorders and
corrupts whole frames on command, in virtual time.

(The byte-level line model lives in benchmarks/linesim.py; this one is for the property
tests, which need to decide the fate of each frame.)
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.linesim import Centre, Device
from callhome.wire.framing import FrameCheck, cobs_decode, encode_frame, unstuff
from callhome.wire.records import CAP_FRAME_CHECK_V2, HANDSHAKE_TYPES
from callhome.wire.session import (
    CallClosed,
    CallFailed,
    ClientSession,
    Event,
    MessageAcknowledged,
    MessageRejected,
    ServerSession,
)
from callhome.wire.transfer import TransferConfig

Fate = Callable[[bytes], list[tuple[float, bytes]]]
"""A frame -> what arrives: (extra delay, bytes) for each copy (none: dropped)."""


def deliver(frame: bytes) -> list[tuple[float, bytes]]:
    return [(0.0, frame)]


@dataclass
class CallOutcome:
    closed: bool
    failure: Exception | None
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    wire_up: list[bytes] = field(default_factory=list)
    wire_down: list[bytes] = field(default_factory=list)
    client: ClientSession | None = None
    server: ServerSession | None = None


def frame_type(frame: bytes) -> int:
    """The type byte of a wire frame (after undoing the stuffing and COBS)."""
    return cobs_decode(unstuff(frame.strip(b"\x00")))[0]


def check_of(kind: int) -> FrameCheck:
    """The frame check a frame of this type carries between two current sessions (which
    agree on v2): v1 for the handshake and NOTICE frames, v2 for the rest."""
    return FrameCheck.V1 if kind in HANDSHAKE_TYPES else FrameCheck.V2


def frame_body(frame: bytes) -> bytes:
    """The body of a wire frame of a call between current sessions (check removed)."""
    checked = cobs_decode(unstuff(frame.strip(b"\x00")))
    return checked[: -check_of(checked[0]).size]


def reframe(body: bytes) -> bytes:
    """A body as a current session would frame it (a forgery with a valid check)."""
    return encode_frame(body, check_of(body[0]))


def split_frames(data: bytes) -> list[bytes]:
    """Wire bytes -> frames, each with its two delimiters."""
    return [b"\x00" + part + b"\x00" for part in data.split(b"\x00") if part]


def run_call(
    device: Device,
    centre: Centre,
    *,
    up: Fate = deliver,
    down: Fate = deliver,
    latency: float = 0.05,
    config: TransferConfig | None = None,
    limit: float = 900.0,
    start: float = 0.0,
    replay: list[bytes] | None = None,
    client_capabilities: int = CAP_FRAME_CHECK_V2,
    server_capabilities: int = CAP_FRAME_CHECK_V2,
) -> CallOutcome:
    """One call. With `replay`, the given bytes go to the centre instead of a client's.
    A side's capabilities 0 make it behave as an end of before frame check v2."""
    config = config or TransferConfig(line_rate=9600, idle_timeout=60.0)
    device.counter += 1
    client = ClientSession(
        static_private=device.static_private,
        server_public=centre.public,
        call_counter=device.counter,
        epoch=device.epoch,
        config=config,
        capabilities=client_capabilities,
    )
    for seq, message in device.queue.items():
        if not device.acknowledged.get(seq) and seq not in device.rejected:
            client.queue(seq, message)
    client.finish()
    server = ServerSession(
        static_private=centre.static_private, config=config, capabilities=server_capabilities
    )
    outcome = CallOutcome(False, None, client=client, server=server)
    queue: list[tuple[float, int, str, bytes]] = []
    order = itertools.count()
    now = start

    def send(side: str, data: bytes) -> None:
        fate = up if side == "server" else down
        for frame in split_frames(data):
            (outcome.wire_up if side == "server" else outcome.wire_down).append(frame)
            for delay, copy in fate(frame):
                heapq.heappush(queue, (now + latency + delay, next(order), side, copy))

    def after_client(events: list[Event]) -> None:
        for event in events:
            outcome.client_events.append(event)
            if isinstance(event, MessageAcknowledged):
                device.acknowledged[event.seq] = True
            elif isinstance(event, MessageRejected):
                device.rejected[event.seq] = event.reason
            elif isinstance(event, CallClosed):
                outcome.closed = True
            elif isinstance(event, CallFailed):
                outcome.failure = event.error
        if replay is None:
            send("server", client.data_to_send())

    def after_server(events: list[Event]) -> None:
        for event in events:
            outcome.server_events.append(event)
            centre.handle(server, event, now)
        send("client", server.data_to_send())

    server.start(now)
    if replay is None:
        client.start(now)
        after_client([])
    else:
        for index, frame in enumerate(replay):
            heapq.heappush(queue, (now + 0.01 * index, next(order), "server", frame))
    after_server([])
    while now < start + limit and not outcome.closed and outcome.failure is None:
        deadlines = [
            d
            for d in (client.next_deadline() if replay is None else None, server.next_deadline())
            if d is not None
        ]
        if queue:
            deadlines.append(queue[0][0])
        if not deadlines:
            break
        now = max(now, min(deadlines))
        while queue and queue[0][0] <= now:
            _, _, side, data = heapq.heappop(queue)
            if side == "server":
                after_server(server.receive_data(data, now))
            elif replay is None:
                after_client(client.receive_data(data, now))
        if replay is None and (client.next_deadline() or float("inf")) <= now:
            after_client(client.handle_timer(now))
        if (server.next_deadline() or float("inf")) <= now:
            after_server(server.handle_timer(now))
        if replay is not None and server.phase.value in ("closed", "failed"):
            break
    return outcome
