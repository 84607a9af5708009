"""Both ends of a call-home call over the virtual line model, in virtual time.

The sessions are sans-IO and so is the line model (`modem_drivers.virtual.line`), so a
whole call — a 64 KiB upload at 2,400 bit/s is 4.5 minutes of line time — runs in a few
hundred milliseconds, deterministically for a given seed and keys (`seeded_key`; the
calls' ephemeral keys come from the seed). Tests use it for the
transfer matrix and the fault tests; the benchmark uses it for its figures.

`Centre` is a minimal in-memory centre with the real acknowledgement contract: it
stores first, then acknowledges; it keeps partial long messages for resume, and knows
message ids across calls (duplicates are acknowledged as such).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from callhome.wire.messages import EncodedMessage
from callhome.wire.noise import generate_private_key, public_key
from callhome.wire.records import RefusalReason
from callhome.wire.session import (
    CallClosed,
    CallFailed,
    ClientSession,
    Event,
    HandshakeCompleted,
    HandshakeRequested,
    MessageAcknowledged,
    MessagePartReceived,
    MessageReceived,
    MessageRejected,
    MessageStarted,
    ServerSession,
)
from callhome.wire.transfer import TransferConfig
from modem_drivers.virtual.line import LineDirection, LineModel
from modem_drivers.virtual.sim import Scheduler, Timer

MODEM_BUFFER = 2048


def seeded_key(label: str, seed: int) -> bytes:
    """A private key fixed by `label` and `seed`: the ciphertexts, and so the frames'
    lengths and where the line's errors fall in them, repeat from run to run (random
    keys made a benchmark's figures and a seeded test's outcome vary a little)."""
    return hashlib.sha256(f"linesim {label} {seed}".encode()).digest()


@dataclass
class Centre:
    static_private: bytes = field(default_factory=generate_private_key)
    devices: dict[bytes, str] = field(default_factory=dict)
    counters: dict[bytes, int] = field(default_factory=dict)
    stored: dict[tuple[bytes, int, int], bytes] = field(default_factory=dict)
    partial: dict[tuple[bytes, int, int], bytearray] = field(default_factory=dict)
    store_count: int = 0
    refuse_all: RefusalReason | None = None

    @classmethod
    def seeded(cls, seed: int) -> Centre:
        return cls(static_private=seeded_key("centre", seed))

    @property
    def public(self) -> bytes:
        return public_key(self.static_private)

    def enroll(self, device_public: bytes, name: str) -> None:
        self.devices[device_public] = name

    def handle(self, session: ServerSession, event: Event, now: float) -> None:
        request = session.request
        if isinstance(event, HandshakeRequested):
            if self.refuse_all is not None:
                session.refuse(now, self.refuse_all)
            elif event.device_key not in self.devices:
                session.refuse(now, RefusalReason.UNKNOWN_DEVICE)
            elif event.call_counter <= self.counters.get(event.device_key, -1):
                session.refuse(now, RefusalReason.STALE_COUNTER)
            else:
                self.counters[event.device_key] = event.call_counter
                resume = {
                    seq: bytes(data)
                    for (key, epoch, seq), data in self.partial.items()
                    if key == event.device_key and epoch == event.epoch
                }
                session.accept(now, clock_ms=int(now * 1000), resume=resume)
            return
        if request is None:
            return  # failed or timed out before anyone called
        key = (request.device_key, request.epoch)
        if isinstance(event, MessageStarted):
            if (*key, event.seq) in self.stored:
                session.message_stored(event.seq, now, duplicate=True)
            elif event.offset == 0:
                self.partial.pop((*key, event.seq), None)
        elif isinstance(event, MessagePartReceived):
            buffer = self.partial.setdefault((*key, event.seq), bytearray())
            if event.offset == len(buffer):
                buffer += event.data
        elif isinstance(event, MessageReceived):
            ident = (*key, event.seq)
            duplicate = ident in self.stored
            if not duplicate:
                self.stored[ident] = event.content
                self.store_count += 1
            self.partial.pop(ident, None)
            session.message_stored(event.seq, now, duplicate=duplicate)


@dataclass
class Device:
    static_private: bytes = field(default_factory=generate_private_key)
    counter: int = 0
    epoch: int = 0x1234ABCD
    queue: dict[int, EncodedMessage] = field(default_factory=dict)
    acknowledged: dict[int, bool] = field(default_factory=dict)
    rejected: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def seeded(cls, seed: int) -> Device:
        return cls(static_private=seeded_key("device", seed))

    @property
    def public(self) -> bytes:
        return public_key(self.static_private)

    def add(self, seq: int, message: EncodedMessage) -> None:
        self.queue[seq] = message


def enrolled_pair(*messages: EncodedMessage, seed: int = 0) -> tuple[Device, Centre]:
    """A device enrolled at a centre, both with keys fixed by `seed`, holding `messages`
    as seq 1, 2, ..."""
    centre, device = Centre.seeded(seed), Device.seeded(seed)
    centre.enroll(device.public, "device")
    for seq, message in enumerate(messages, start=1):
        device.add(seq, message)
    return device, centre


@dataclass
class CallResult:
    events_client: list[Event]
    events_server: list[Event]
    bytes_up: int
    bytes_down: int
    seconds: float
    """From the first byte of HS1 to the client's CallClosed (or the end of the call)."""
    closed: bool
    failed: Exception | None
    server_failed: Exception | None
    client: ClientSession
    server: ServerSession
    handshake_done_at: float | None = None


class _End:
    """One side: a session, its modem's transmit buffer, and its timer."""

    def __init__(self, sim: LinkSim, name: str) -> None:
        self.sim = sim
        self.name = name
        self.session: ClientSession | ServerSession | None = None
        self.outbox = bytearray()
        self.line: LineDirection | None = None
        self.timer: Timer | None = None
        self.events: list[Event] = []
        self.handler: Callable[[Event, float], None] = lambda event, now: None

    def after(self, events: list[Event]) -> None:
        now = self.sim.scheduler.now
        for event in events:
            self.events.append(event)
            self.handler(event, now)
        if self.sim.stopped:
            return
        session = self.session
        assert session is not None
        self.outbox += session.data_to_send()
        self.push()
        if self.timer is not None:
            self.timer.cancel()
        deadline = session.next_deadline()
        if deadline is not None and not self.sim.stopped:
            self.timer = self.sim.scheduler.call_at(deadline, self.fire)

    def fire(self) -> None:
        assert self.session is not None
        self.after(self.session.handle_timer(self.sim.scheduler.now))

    def push(self) -> None:
        if self.line is None or not self.outbox:
            return
        taken = self.line.send(bytes(self.outbox))
        del self.outbox[:taken]

    def deliver(self, data: bytes) -> None:
        if self.sim.stopped or self.session is None:
            return
        self.after(self.session.receive_data(data, self.sim.scheduler.now))


class LinkSim:
    def __init__(self, model: LineModel, *, seed: int = 1, config: TransferConfig | None = None):
        self.model = model
        self.seed = seed
        self.scheduler = Scheduler()
        self.config = config or TransferConfig(line_rate=model.rate)
        self.stopped = False
        self.bytes_up = 0
        self.bytes_down = 0
        self.tamper_up: Callable[[bytes], bytes] | None = None
        self.tamper_down: Callable[[bytes], bytes] | None = None
        self.recording_up: list[bytes] = []

    def call(
        self,
        device: Device,
        centre: Centre,
        *,
        limit: float = 3600.0,
        cut_after_up_bytes: int | None = None,
    ) -> CallResult:
        rng = random.Random(self.seed)
        ephemerals = (
            seeded_key("client ephemeral", self.seed),
            seeded_key("centre ephemeral", self.seed),
        )
        self.seed += 1
        self.stopped = False
        client_end, server_end = _End(self, "client"), _End(self, "server")
        device.counter += 1
        client = ClientSession(
            static_private=device.static_private,
            server_public=centre.public,
            call_counter=device.counter,
            epoch=device.epoch,
            config=self.config,
            ephemeral_private=ephemerals[0],
        )
        for seq, message in device.queue.items():
            if not device.acknowledged.get(seq) and seq not in device.rejected:
                client.queue(seq, message)
        client.finish()
        server = ServerSession(
            static_private=centre.static_private,
            config=self.config,
            ephemeral_private=ephemerals[1],
        )
        client_end.session, server_end.session = client, server
        server_end.handler = lambda event, now: centre.handle(server, event, now)
        state: dict[str, Any] = {
            "closed": False,
            "failed": None,
            "server_failed": None,
            "handshake": None,
            "end": None,
        }

        def on_client(event: Event, now: float) -> None:
            if isinstance(event, HandshakeCompleted):
                state["handshake"] = now
            elif isinstance(event, MessageAcknowledged):
                device.acknowledged[event.seq] = True
            elif isinstance(event, MessageRejected):
                device.rejected[event.seq] = event.reason
            elif isinstance(event, CallClosed):
                state["closed"] = True
                state["end"] = now
                self.stopped = True
            elif isinstance(event, CallFailed):
                state["failed"] = event.error
                state["end"] = now
                self.stopped = True

        def on_server(event: Event, now: float) -> None:
            centre.handle(server, event, now)
            if isinstance(event, CallFailed):
                state["server_failed"] = event.error

        client_end.handler = on_client
        server_end.handler = on_server

        def up_deliver(data: bytes) -> None:
            self.bytes_up += 0
            if self.tamper_up is not None:
                data = self.tamper_up(data)
            self.recording_up.append(data)
            server_end.deliver(data)

        def down_deliver(data: bytes) -> None:
            if self.tamper_down is not None:
                data = self.tamper_down(data)
            client_end.deliver(data)

        counted = {"up": 0, "down": 0}

        def departed(direction: str, end: _End) -> Callable[[int], None]:
            def hook(count: int) -> None:
                counted[direction] += count
                if (
                    direction == "up"
                    and cut_after_up_bytes is not None
                    and counted["up"] >= cut_after_up_bytes
                ):
                    self.stopped = True
                    state["end"] = self.scheduler.now
                end.push()

            return hook

        rate = self.model.rate
        client_end.line = LineDirection(
            self.scheduler,
            self.model,
            rate,
            rng,
            up_deliver,
            departed("up", client_end),
            buffer_size=MODEM_BUFFER,
        )
        server_end.line = LineDirection(
            self.scheduler,
            self.model,
            rate,
            rng,
            down_deliver,
            departed("down", server_end),
            buffer_size=MODEM_BUFFER,
        )
        start = self.scheduler.now
        server.start(start)
        client.start(start)
        server_end.after([])
        client_end.after([])
        stop_at = start + limit
        while not self.stopped:
            deadline = self.scheduler.next_deadline()
            if deadline is None or deadline > stop_at:
                break
            self.scheduler.run_due(deadline)
        for end in (client_end, server_end):
            if end.timer is not None:
                end.timer.cancel()
            assert end.line is not None
            end.line.close()
        # a call ends by hanging up: nothing in flight survives into the next one
        self.scheduler = Scheduler(self.scheduler.now)
        end_time = state["end"] if state["end"] is not None else self.scheduler.now
        return CallResult(
            client_end.events,
            server_end.events,
            counted["up"],
            counted["down"],
            end_time - start,
            state["closed"],
            state["failed"],
            state["server_failed"],
            client,
            server,
            None if state["handshake"] is None else state["handshake"] - start,
        )
