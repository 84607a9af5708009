"""The two ends of a call-home call, sans-IO: bytes and times in, events and bytes out.

    client = ClientSession(static_private=..., server_public=..., call_counter=...,
                           epoch=..., config=TransferConfig(line_rate=2400))
    client.queue(seq, encoded_message); client.finish()
    client.start(now)
    write(client.data_to_send())
    ... events = client.receive_data(bytes_from_the_line, now)
    ... events = client.handle_timer(now) at client.next_deadline()

The centre's side never acknowledges a message by itself: it reports
`MessageReceived`, and sends STORED only when the caller says `message_stored()` after
its transaction committed. A message the caller already holds is acknowledged again as
DUPLICATE (`message_stored(seq, duplicate=True)`).

What an end does with a frame, in order: the CRC sorts out line noise (dropped,
counted); an HS frame drives the handshake; a DATA or ACK frame must authenticate
(failures are counted apart from CRC failures: they are an attack signal or a replay
from another call) and must not be a replay within this call; then its ACK fields
update the sender and its segments, once in order, reach the application.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import (
    HandshakeFailed,
    MessageError,
    PeerMisbehaved,
    ProtocolError,
    Refused,
    SessionTimeout,
)
from .framing import FrameDecoder, encode_frame
from .messages import (
    CURRENT_DICTIONARY,
    MAX_MESSAGE,
    EncodedMessage,
    Kind,
    decode_body,
    decode_content,
    load_dictionary,
    message_digest,
)
from .noise import IKHandshake, TransportKeys
from .records import (
    ACK,
    ACK_NONCE_BASE,
    DATA,
    HS1,
    HS2,
    NOTICE,
    NOTICE_TEXT,
    NOTICE_UNDECRYPTABLE,
    AckInfo,
    Answer,
    MessageData,
    MessageHead,
    Reader,
    RefusalReason,
    RejectReason,
    ReplayWindow,
    Sealer,
    SegmentType,
    decode_flags_and_ack,
    decode_segments,
    encode_answer,
    encode_data,
    encode_flags_and_ack,
    encode_head,
    expand,
    head_size,
    uleb,
)
from .transfer import FRAME_OVERHEAD, ReceiveWindow, SendWindow, TransferConfig

PROTOCOL_VERSION = 1
PROLOGUE = b"callhome/1"
DIGEST_THRESHOLD = 1024
"""Messages longer than this carry an end-to-end digest and can resume after a drop."""
MAX_NOTICES = 8
"""NOTICE frames a centre sends in one call (one per undecryptable HS1, at most)."""


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeRequested:
    """Centre: a device wants to talk. Call `accept()` or `refuse()`."""

    device_key: bytes
    call_counter: int
    epoch: int
    dictionary_id: int
    version: int


@dataclass(frozen=True)
class HandshakeDecryptionFailed:
    """Centre: a first handshake message did not decrypt (the device has the wrong
    centre key, or this is a forgery). A NOTICE went back; the session keeps waiting
    for a genuine one until the handshake deadline."""

    error: str


@dataclass(frozen=True)
class HandshakeRefused:
    """Centre: the session refused the device by itself (a protocol version it does not
    speak); the refusal went out in HS2. Record it; nothing more happens in this call."""

    device_key: bytes
    reason: RefusalReason
    version: int


@dataclass(frozen=True)
class HandshakeComplete:
    """Client: the centre accepted; its clock (ms since 1970) and what it already holds."""

    server_clock_ms: int
    resume: dict[int, int]
    round_trip: float


@dataclass(frozen=True)
class MessageStarted:
    seq: int
    kind: Kind
    total: int
    offset: int


@dataclass(frozen=True)
class MessageProgress:
    """Centre: more of a long message, in order: persist it so a dropped call resumes."""

    seq: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class MessageReceived:
    """Centre: a whole message. Store it durably, then call `message_stored(seq)`."""

    seq: int
    kind: Kind
    content: bytes
    """The message's CBOR, decompressed and checked to be a map."""
    body_size: int
    """Bytes it took on the wire (compressed) and digest-verified when long."""


@dataclass(frozen=True)
class MessageFailed:
    """Centre: a message was refused by the protocol itself (bad digest, undecodable)."""

    seq: int
    reason: RejectReason


@dataclass(frozen=True)
class MessageAcknowledged:
    """Client: the centre holds this message durably (or already did)."""

    seq: int
    duplicate: bool


@dataclass(frozen=True)
class MessageRejected:
    """Client: the centre will not take this message (permanent reasons only)."""

    seq: int
    reason: RejectReason


@dataclass(frozen=True)
class PeerFinished:
    """The other end has nothing more to send."""


@dataclass(frozen=True)
class Closed:
    """The exchange is complete: everything sent was answered. Hang up."""


@dataclass(frozen=True)
class Failed:
    error: ProtocolError


Event = (
    HandshakeRequested
    | HandshakeDecryptionFailed
    | HandshakeRefused
    | HandshakeComplete
    | MessageStarted
    | MessageProgress
    | MessageReceived
    | MessageFailed
    | MessageAcknowledged
    | MessageRejected
    | PeerFinished
    | Closed
    | Failed
)


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    AWAITING_DECISION = "awaiting decision"
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass
class SessionStats:
    bytes_out: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    frames_in: int = 0
    retransmissions: int = 0
    auth_failures: int = 0
    replays: int = 0
    handshake_round_trip: float | None = None


# -- the machinery both ends share -------------------------------------------------------


@dataclass
class _Outgoing:
    seq: int
    message: EncodedMessage
    plain: EncodedMessage | None = None
    """The same content uncompressed, for a centre without our dictionary."""
    offset: int = 0
    headed: bool = False
    done_sending: bool = False
    answered: bool = False


class _Session:
    def __init__(self, config: TransferConfig) -> None:
        self.config = config
        self.phase = Phase.HANDSHAKE
        self.stats = SessionStats()
        self.decoder = FrameDecoder()
        self._out = bytearray()
        self._events: list[Event] = []
        self._send: SendWindow = SendWindow(config)
        self._receive: ReceiveWindow[tuple[bytes, bool]] = ReceiveWindow()
        self._replay = ReplayWindow()
        self._sealer: Sealer | None = None
        self._opener: Sealer | None = None
        self._ack_counter = 0
        self._last_ack_in = -1
        self._ack_due: float | None = None
        self._answers: deque[bytes] = deque()
        self._fin_wanted = False
        self._fin_sent = False
        self.peer_finished = False
        self._last_heard = 0.0
        self._close_at: float | None = None

    # -- public surface ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self.phase in (Phase.CLOSED, Phase.FAILED):
            return []
        self.stats.bytes_in += len(data)
        try:
            for body in self.decoder.feed(data):
                self.stats.frames_in += 1
                self._frame(body, now)
                if self.phase is Phase.FAILED:
                    break
            self._pump(now)
        except ProtocolError as error:
            self._fail(error)
        return self._take_events()

    def handle_timer(self, now: float) -> list[Event]:
        if self.phase in (Phase.CLOSED, Phase.FAILED):
            return []
        try:
            self._timer(now)
            self._pump(now)
        except ProtocolError as error:
            self._fail(error)
        return self._take_events()

    def next_deadline(self) -> float | None:
        if self.phase in (Phase.CLOSED, Phase.FAILED):
            return None
        deadlines = [self._idle_deadline(), self._ack_due, self._close_at, *self._extra_deadlines()]
        if self.phase is Phase.ESTABLISHED:
            deadlines.append(self._send.next_deadline())
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    @property
    def line_errors(self) -> int:
        return self.decoder.stats.line_errors

    def abort(self, reason: str) -> None:
        """End the session now, from this side (e.g. the store failed)."""
        self._fail(ProtocolError(reason))
        self._events.clear()

    # -- to be provided by each end ------------------------------------------------------

    def _handshake_frame(self, kind: int, body: bytes, now: float) -> None:
        raise NotImplementedError

    def _segments(self, segments: list[object], now: float) -> None:
        raise NotImplementedError

    def _fill(self, budget: int) -> list[bytes]:
        raise NotImplementedError

    def _extra_deadlines(self) -> list[float | None]:
        return []

    def _timer_extra(self, now: float) -> None:
        pass

    def _check_done(self, now: float) -> None:
        pass

    # -- frames in -----------------------------------------------------------------------

    def _frame(self, body: bytes, now: float) -> None:
        kind = body[0]
        if kind in (HS1, HS2, NOTICE):
            self._handshake_frame(kind, body, now)
            return
        if self.phase is not Phase.ESTABLISHED or self._opener is None or len(body) < 2 + 16:
            self.stats.auth_failures += kind in (DATA, ACK)
            return
        if kind == DATA:
            self._data_frame(body, now)
        elif kind == ACK:
            self._ack_frame(body, now)
        # unknown frame types from a newer peer are ignored

    def _data_frame(self, body: bytes, now: float) -> None:
        assert self._opener is not None
        seq = expand(body[1], self._replay.highest + 1)
        # authenticate first: a frame that does not is answered with nothing at all
        # (issue 10: a forged frame with a seen number used to get an ACK)
        plaintext = self._opener.open(seq, body[:2], body[2:])
        if plaintext is None:
            self.stats.auth_failures += 1
            return
        if self._replay.seen(seq):
            self.stats.replays += 1
            self._ack_now(now)  # a genuine resend: our ACK may have been lost
            return
        if not self._receive.in_window(seq):
            return  # ahead of our window: not taken, not marked; it will come again
        self._replay.mark(seq)
        self._heard(now)
        reader = Reader(plaintext)
        ack, fin = decode_flags_and_ack(reader, self._send.next_seq)
        if ack is not None:
            self._apply_ack(ack, now)
        new, ready = self._receive.accept(seq, (plaintext[reader.pos :], fin))
        if not new:
            return
        if self._receive.has_gap:
            self._ack_now(now)  # tell the sender at once what is missing
        elif self._ack_due is None:
            # a moment's delay lets the ACK ride on the answer the application is about
            # to send (for the last frame, STORED): one frame back instead of two
            self._ack_due = now + self.config.ack_delay
        for segment_bytes, finished in ready:
            self._segments(list(decode_segments(Reader(segment_bytes))), now)
            if finished and not self.peer_finished:
                self.peer_finished = True
                self._events.append(PeerFinished())
        self._check_done(now)

    def _ack_frame(self, body: bytes, now: float) -> None:
        assert self._opener is not None
        number = expand(body[1], self._last_ack_in + 1)
        plaintext = self._opener.open(ACK_NONCE_BASE + number, body[:2], body[2:])
        if plaintext is None:
            self.stats.auth_failures += 1
            return
        if number <= self._last_ack_in:
            self.stats.replays += 1  # authentic, but old: changes nothing
            return
        self._last_ack_in = number
        self._heard(now)
        reader = Reader(plaintext)
        ack, _ = decode_flags_and_ack(reader, self._send.next_seq)
        if ack is None or reader.left():
            raise PeerMisbehaved("malformed ACK frame")
        self._apply_ack(ack, now)
        self._check_done(now)

    def _apply_ack(self, ack: AckInfo, now: float) -> None:
        if ack.cumulative > self._send.next_seq:
            raise PeerMisbehaved("acknowledges frames never sent")
        self._send.on_ack(ack, now)

    def _heard(self, now: float) -> None:
        self._last_heard = now

    def _ack_now(self, now: float) -> None:
        self._ack_due = now

    # -- frames out ----------------------------------------------------------------------

    def _write(self, wire: bytes) -> None:
        self._out += wire
        self.stats.bytes_out += len(wire)
        self.stats.frames_out += 1

    def _pump(self, now: float) -> None:
        if self.phase is not Phase.ESTABLISHED or self._sealer is None:
            return
        send = self._send
        for frame in send.due(now):
            self._write(frame.wire)
            send.resent(frame, now)
            self.stats.retransmissions += 1
        while True:
            budget = send.sizer.size
            if send.frames and not send.room_for(budget + FRAME_OVERHEAD):
                break
            pieces = self._fill(budget)
            fin = self._fin_wanted and not self._fin_sent and not self._has_more()
            if not pieces and not fin:
                break
            self._send_data(pieces, fin, now)
            if fin:
                self._after_fin(now)
        if self._ack_due is not None and now >= self._ack_due:
            self._send_ack(now)

    def _after_fin(self, now: float) -> None:
        pass

    def _has_more(self) -> bool:
        return bool(self._answers)

    def _send_data(self, pieces: list[bytes], fin: bool, now: float) -> None:
        assert self._sealer is not None
        send = self._send
        seq = send.next_seq
        send.next_seq += 1
        header = bytes([DATA, seq & 0xFF])
        ack = self._receive.ack_info() if self._replay.highest >= 0 else None
        plaintext = encode_flags_and_ack(ack, fin) + b"".join(pieces)
        wire = encode_frame(header + self._sealer.seal(seq, header, plaintext))
        send.sent(seq, wire, fin, now)
        self._write(wire)
        self._ack_due = None
        if fin:
            self._fin_sent = True

    def _send_ack(self, now: float) -> None:
        assert self._sealer is not None
        number = self._ack_counter
        self._ack_counter += 1
        header = bytes([ACK, number & 0xFF])
        plaintext = encode_flags_and_ack(self._receive.ack_info(), False)
        self._write(
            encode_frame(header + self._sealer.seal(ACK_NONCE_BASE + number, header, plaintext))
        )
        self._ack_due = None

    def _install_keys(self, keys: TransportKeys) -> None:
        self._sealer = Sealer(keys.send)
        self._opener = Sealer(keys.receive)

    # -- time ----------------------------------------------------------------------------

    def _idle_deadline(self) -> float | None:
        return self._last_heard + self.config.idle_timeout

    def _timer(self, now: float) -> None:
        idle = self._idle_deadline()
        if idle is not None and now >= idle:
            raise SessionTimeout(f"nothing from the other end for {self.config.idle_timeout:g} s")
        if self._close_at is not None and now >= self._close_at:
            self._close()
            return
        self._timer_extra(now)

    def _close(self) -> None:
        if self.phase not in (Phase.CLOSED, Phase.FAILED):
            self.phase = Phase.CLOSED
            self._events.append(Closed())

    def _fail(self, error: ProtocolError) -> None:
        if self.phase not in (Phase.CLOSED, Phase.FAILED):
            self.phase = Phase.FAILED
            self._events.append(Failed(error))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events


# -- the client --------------------------------------------------------------------------


class ClientSession(_Session):
    def __init__(
        self,
        *,
        static_private: bytes,
        server_public: bytes,
        call_counter: int,
        epoch: int,
        config: TransferConfig | None = None,
        dictionary_id: int = CURRENT_DICTIONARY,
        ephemeral_private: bytes | None = None,
    ) -> None:
        super().__init__(config or TransferConfig())
        if not 0 <= epoch < 1 << 32:
            raise ValueError("epoch must fit 32 bits")
        self._handshake = IKHandshake(
            initiator=True,
            static_private=static_private,
            remote_static=server_public,
            prologue=PROLOGUE,
            ephemeral_private=ephemeral_private,
        )
        self.call_counter = call_counter
        self.epoch = epoch
        self.dictionary_id = dictionary_id
        self._hs1 = b""
        self._hs1_sent_at = 0.0
        self._retry_at: float | None = None
        self._attempts = 0
        self._messages: dict[int, _Outgoing] = {}
        self._order: list[int] = []
        self.dictionary_accepted = False
        self.refusal: RefusalReason | None = None
        self._notice: str | None = None
        self._notice_deadline: float | None = None

    def queue(self, seq: int, message: EncodedMessage, plain: EncodedMessage | None = None) -> None:
        """Send `message` (number `seq`) in this call; `plain` is its uncompressed form,
        sent instead if the centre does not have the dictionary."""
        if self._fin_wanted:
            raise ValueError("finish() was called: no more messages in this call")
        if seq in self._messages:
            raise ValueError(f"message {seq} is already queued")
        if len(message.body) > MAX_MESSAGE:
            raise MessageError("message too large")
        self._messages[seq] = _Outgoing(seq, message, plain)
        self._order.append(seq)

    def finish(self) -> None:
        """No more messages: the last frame will say so."""
        self._fin_wanted = True

    def start(self, now: float) -> None:
        payload = (
            bytes([PROTOCOL_VERSION, 0, self.dictionary_id])
            + self.epoch.to_bytes(4, "big")
            + uleb(self.call_counter)
        )
        self._hs1 = encode_frame(bytes([HS1]) + self._handshake.write_message_1(payload))
        self._last_heard = now
        self._send_hs1(now)

    def undelivered(self) -> list[int]:
        """Messages the centre has not acknowledged (they stay in the spool)."""
        return [seq for seq in self._order if not self._messages[seq].answered]

    def _send_hs1(self, now: float) -> None:
        self._write(self._hs1)
        self._attempts += 1
        self._hs1_sent_at = now
        flight = self._answer_flight()
        backoff = min(
            self.config.handshake_retry * 1.5 ** (self._attempts - 1),
            self.config.handshake_retry_max,
        )
        self._retry_at = now + backoff + flight

    def _answer_flight(self) -> float:
        """The HS1 and HS2 must cross the line before an answer can come."""
        return (len(self._hs1) + 80) * 10 / self.config.line_rate

    def _idle_deadline(self) -> float | None:
        # while shaking hands, the attempt limit decides (and says something clearer)
        return None if self.phase is Phase.HANDSHAKE else super()._idle_deadline()

    def _extra_deadlines(self) -> list[float | None]:
        if self.phase is not Phase.HANDSHAKE:
            return []
        return [self._retry_at, self._notice_deadline]

    def _timer_extra(self, now: float) -> None:
        if (
            self.phase is Phase.HANDSHAKE
            and self._notice is not None
            and self._notice_deadline is not None
            and now >= self._notice_deadline
        ):
            raise HandshakeFailed(self._notice)
        if self.phase is Phase.HANDSHAKE and self._retry_at is not None and now >= self._retry_at:
            if self._attempts >= self.config.handshake_attempts:
                raise HandshakeFailed("no answer from the centre to the handshake")
            self._send_hs1(now)  # the identical bytes: the centre answers from its cache

    def _handshake_frame(self, kind: int, body: bytes, now: float) -> None:
        if kind == NOTICE:
            if self.phase is Phase.HANDSHAKE and len(body) == 2 and self._notice is None:
                # unauthenticated: anyone on the line can send one. Believe it only if
                # no genuine answer follows within the time an answer takes to arrive
                self._notice = NOTICE_TEXT.get(body[1], f"notice {body[1]}")
                self._notice_deadline = now + self._answer_flight() + self.config.notice_grace
            return
        if kind != HS2 or self.phase is not Phase.HANDSHAKE:
            return  # a repeated HS2 (our HS1 was resent), or nonsense: ignore
        try:
            payload = self._handshake.read_message_2(body[1:])
        except HandshakeFailed:
            self.stats.auth_failures += 1
            return  # not from our centre: keep waiting for the real answer
        self._heard(now)
        self.stats.handshake_round_trip = now - self._hs1_sent_at
        reader = Reader(payload)
        flags = reader.byte()
        if flags & 0x01:
            reason = reader.byte()
            self.refusal = RefusalReason.of(reason)
            text = self.refusal.text if self.refusal else f"reason {reason}"
            self._fail(Refused(text))
            return
        self.dictionary_accepted = bool(flags & 0x02)
        clock = reader.uleb()
        resume: dict[int, int] = {}
        for _ in range(reader.uleb(16)):
            seq = reader.uleb()
            resume[seq] = reader.uleb()
        self._install_keys(self._handshake.keys())
        self.phase = Phase.ESTABLISHED
        if not self.dictionary_accepted:
            for waiting in self._messages.values():
                if waiting.message.compressed and waiting.plain is not None:
                    waiting.message = waiting.plain
        for seq, stored in resume.items():
            resumed = self._messages.get(seq)
            if (
                resumed is not None
                and len(resumed.message.body) > DIGEST_THRESHOLD
                and 0 < stored < len(resumed.message.body)
            ):
                resumed.offset = stored
        self._events.append(HandshakeComplete(clock, resume, now - self._hs1_sent_at))

    def _fill(self, budget: int) -> list[bytes]:
        pieces: list[bytes] = []
        room = budget
        for seq in self._order:
            outgoing = self._messages[seq]
            if outgoing.done_sending or outgoing.answered:
                continue
            body = outgoing.message.body
            if not outgoing.headed:
                digest = message_digest(body) if len(body) > DIGEST_THRESHOLD else None
                fixed = head_size(seq, len(body), outgoing.offset, digest is not None, 0) + 3
                if room < fixed + 1 and pieces:
                    break
                chunk = body[outgoing.offset : outgoing.offset + max(1, room - fixed)]
                pieces.append(
                    encode_head(
                        MessageHead(
                            seq,
                            outgoing.message.kind,
                            outgoing.message.compressed,
                            len(body),
                            outgoing.offset,
                            digest,
                            chunk,
                        )
                    )
                )
                outgoing.headed = True
            else:
                if room < 8:
                    break
                chunk = body[outgoing.offset : outgoing.offset + room - 4]
                pieces.append(encode_data(chunk))
            outgoing.offset += len(chunk)
            room -= len(pieces[-1])
            if outgoing.offset >= len(body):
                outgoing.done_sending = True
            else:
                break  # the frame is full
            if room < 8:
                break
        return pieces

    def _has_more(self) -> bool:
        return any(not m.done_sending and not m.answered for m in self._messages.values())

    def _segments(self, segments: list[object], now: float) -> None:
        for segment in segments:
            if not isinstance(segment, Answer):
                raise PeerMisbehaved("the centre sent message data")
            outgoing = self._messages.get(segment.seq)
            if outgoing is None:
                raise PeerMisbehaved(f"answer for message {segment.seq}, never sent")
            if outgoing.answered:
                continue
            if segment.type is SegmentType.REJECTED:
                assert segment.reason is not None
                if not segment.reason.permanent:
                    outgoing.offset = 0  # send it again, from the start
                    outgoing.headed = False
                    outgoing.done_sending = False
                    continue
                outgoing.answered = True
                self._events.append(MessageRejected(segment.seq, segment.reason))
            else:
                outgoing.answered = True
                outgoing.done_sending = True
                self._events.append(
                    MessageAcknowledged(segment.seq, segment.type is SegmentType.DUPLICATE)
                )

    def _check_done(self, now: float) -> None:
        if (
            self.phase is Phase.ESTABLISHED
            and self._fin_sent
            and self.peer_finished
            and all(m.answered for m in self._messages.values())
        ):
            self._close()


# -- the centre --------------------------------------------------------------------------


@dataclass
class _Incoming:
    head: MessageHead
    position: int
    """Where in the message the next chunk starts."""
    skip: bool = False
    """Not kept: rejected, a duplicate, or answered meanwhile."""
    prefix: bytes = b""
    data: bytearray = field(default_factory=bytearray)


class ServerSession(_Session):
    def __init__(
        self,
        *,
        static_private: bytes,
        config: TransferConfig | None = None,
        ephemeral_private: bytes | None = None,
    ) -> None:
        super().__init__(config or TransferConfig())
        self._static = static_private
        self._ephemeral = ephemeral_private  # fixed only for reproducible examples
        self._handshake: IKHandshake | None = None
        self._hs1 = b""
        self._hs2 = b""
        self.device_key: bytes | None = None
        self.request: HandshakeRequested | None = None
        self._dictionary_id = 0
        self._resume: dict[int, bytes] = {}
        self._current: _Incoming | None = None
        self._announced: dict[int, bool] = {}
        """Messages the client started in this call -> answered yet."""
        self._received: set[int] = set()
        self._notices = 0

    def start(self, now: float) -> None:
        self._last_heard = now

    # -- the handshake -------------------------------------------------------------------

    def _handshake_frame(self, kind: int, body: bytes, now: float) -> None:
        if kind != HS1:
            return
        if self._hs1:
            if body == self._hs1 and self._hs2:
                self._write(self._hs2)  # our answer was lost on the line: again
            return
        handshake = IKHandshake(
            initiator=False,
            static_private=self._static,
            prologue=PROLOGUE,
            ephemeral_private=self._ephemeral,
        )
        try:
            payload = handshake.read_message_1(body[1:])
        except HandshakeFailed as error:
            # a device with the wrong centre key, or a forgery: say so (a hint, nothing
            # more), and keep waiting; one forged frame must not end a genuine call
            self.stats.auth_failures += 1
            if self._notices < MAX_NOTICES:
                self._notices += 1
                self._write(encode_frame(bytes([NOTICE, NOTICE_UNDECRYPTABLE])))
            self._events.append(HandshakeDecryptionFailed(str(error)))
            return
        reader = Reader(payload)
        assert handshake.remote_static is not None
        try:
            version = reader.byte()
            if version != PROTOCOL_VERSION:
                # the rest of a later version's payload may differ: read no further.
                # The refusal's layout (flags, reason) is the same in every version.
                self._handshake, self._hs1 = handshake, body
                self.device_key = handshake.remote_static
                self._heard(now)
                self.phase = Phase.AWAITING_DECISION
                self.refuse(now, RefusalReason.UNSUPPORTED_VERSION)
                self._events.append(
                    HandshakeRefused(
                        handshake.remote_static, RefusalReason.UNSUPPORTED_VERSION, version
                    )
                )
                return
            _caps, dictionary_id = reader.byte(), reader.byte()
            epoch = int.from_bytes(reader.take(4), "big")
            counter = reader.uleb()
        except PeerMisbehaved:
            raise HandshakeFailed("malformed handshake payload") from None
        self._handshake = handshake
        self._hs1 = body
        self.device_key = handshake.remote_static
        self._heard(now)
        self.phase = Phase.AWAITING_DECISION
        self.request = HandshakeRequested(
            handshake.remote_static, counter, epoch, dictionary_id, version
        )
        self._dictionary_id = dictionary_id
        self._events.append(self.request)

    def accept(
        self, now: float, *, clock_ms: int, resume: Mapping[int, bytes] | None = None
    ) -> None:
        """Let the device in; `resume` maps message numbers to what is already stored."""
        if self.phase is not Phase.AWAITING_DECISION or self._handshake is None:
            raise ValueError("nothing to accept")
        self._resume = dict(resume or {})
        dictionary_ok = load_dictionary(self._dictionary_id) is not None
        payload = bytes([0x02 if dictionary_ok else 0x00]) + uleb(clock_ms)
        entries = [(seq, len(data)) for seq, data in self._resume.items() if data][:16]
        payload += uleb(len(entries))
        for seq, stored in entries:
            payload += uleb(seq) + uleb(stored)
        self._hs2 = encode_frame(bytes([HS2]) + self._handshake.write_message_2(payload))
        self._install_keys(self._handshake.keys())
        self.phase = Phase.ESTABLISHED
        self._write(self._hs2)

    def refuse(self, now: float, reason: RefusalReason) -> None:
        """Tell the device why it may not talk (authenticated: only it can read this)."""
        if self.phase is not Phase.AWAITING_DECISION or self._handshake is None:
            raise ValueError("nothing to refuse")
        payload = bytes([0x01, reason])
        self._hs2 = encode_frame(bytes([HS2]) + self._handshake.write_message_2(payload))
        self._write(self._hs2)
        self.phase = Phase.CLOSED  # the caller knows why: no event

    # -- messages in ---------------------------------------------------------------------

    def _segments(self, segments: list[object], now: float) -> None:
        for segment in segments:
            if isinstance(segment, MessageHead):
                self._head(segment)
            elif isinstance(segment, MessageData):
                self._more(segment.chunk)
            else:
                raise PeerMisbehaved("the client sent an answer segment")

    def _head(self, head: MessageHead) -> None:
        if self._current is not None and not self._current.skip:
            raise PeerMisbehaved("a new message before the last one ended")
        self._current = _Incoming(head, head.offset, skip=True)
        if head.seq in self._received:
            self._answer_again(head.seq)  # resent after our answer was lost
        elif head.total > MAX_MESSAGE:
            self._announced.setdefault(head.seq, False)
            self._reject(head.seq, RejectReason.TOO_LARGE)
        elif head.offset and (
            head.digest is None or len(self._resume.get(head.seq, b"")) != head.offset
        ):
            self._announced.setdefault(head.seq, False)
            self._reject(head.seq, RejectReason.RESTART)
        else:
            self._announced.setdefault(head.seq, False)
            self._current = _Incoming(
                head, head.offset, prefix=self._resume.get(head.seq, b"")[: head.offset]
            )
            self._events.append(MessageStarted(head.seq, head.kind, head.total, head.offset))
        self._more(head.chunk)

    def _more(self, chunk: bytes) -> None:
        current = self._current
        if current is None:
            raise PeerMisbehaved("message data without a message")
        head = current.head
        if current.position + len(chunk) > head.total:
            raise PeerMisbehaved("message longer than announced")
        if not current.skip:
            current.data += chunk
            if head.digest is not None and chunk:
                self._events.append(MessageProgress(head.seq, current.position, bytes(chunk)))
        current.position += len(chunk)
        if current.position >= head.total:
            self._current = None
            if not current.skip:
                self._complete(current)

    def _complete(self, incoming: _Incoming) -> None:
        head = incoming.head
        body = incoming.prefix + bytes(incoming.data)
        if head.digest is not None and message_digest(body) != head.digest:
            self._events.append(MessageFailed(head.seq, RejectReason.RESTART))
            self._reject(head.seq, RejectReason.RESTART)
            self._resume.pop(head.seq, None)
            return
        try:
            content = decode_body(body, head.compressed, load_dictionary(self._dictionary_id))
            decode_content(content)
        except MessageError:
            self._events.append(MessageFailed(head.seq, RejectReason.UNDECODABLE))
            self._reject(head.seq, RejectReason.UNDECODABLE)
            return
        self._received.add(head.seq)
        self._events.append(MessageReceived(head.seq, head.kind, content, len(body)))

    # -- answers out ---------------------------------------------------------------------

    def message_stored(self, seq: int, now: float, *, duplicate: bool = False) -> None:
        """The caller has committed message `seq` (or already had it): acknowledge it.

        The answer goes out now (see `data_to_send()`), with the ACK of the frames that
        carried the message."""
        if self.phase is not Phase.ESTABLISHED:
            return
        self._received.add(seq)
        self._announced[seq] = True
        if self._current is not None and self._current.head.seq == seq:
            self._current.skip = True  # a duplicate: the rest of it is not needed
        kind = SegmentType.DUPLICATE if duplicate else SegmentType.STORED
        self._answers.append(encode_answer(Answer(kind, seq)))
        self._answer_now(now)

    def _answer_now(self, now: float) -> None:
        try:
            self._check_done(now)
            self._pump(now)
        except ProtocolError as error:
            self._fail(error)

    def _reject(self, seq: int, reason: RejectReason) -> None:
        if reason.permanent:
            self._announced[seq] = True
        self._answers.append(encode_answer(Answer(SegmentType.REJECTED, seq, reason)))

    def _answer_again(self, seq: int) -> None:
        self._answers.append(encode_answer(Answer(SegmentType.DUPLICATE, seq)))

    def _fill(self, budget: int) -> list[bytes]:
        pieces: list[bytes] = []
        room = budget
        while self._answers and len(self._answers[0]) <= room:
            piece = self._answers.popleft()
            pieces.append(piece)
            room -= len(piece)
        if self.peer_finished and all(self._announced.values()) and not self._answers:
            self._fin_wanted = True
        return pieces

    def _check_done(self, now: float) -> None:
        if self.peer_finished and all(self._announced.values()) and not self._answers:
            self._fin_wanted = True

    def _after_fin(self, now: float) -> None:
        # stay a moment: if our last frame is lost, the client's resend gets it again
        self._close_at = now + self.config.close_linger

    @property
    def complete(self) -> bool:
        """Everything the device sent is answered and our FIN is out: the exchange is
        done even if the device hangs up before we report Closed."""
        return (
            self.peer_finished
            and self._fin_sent
            and not self._answers
            and all(self._announced.values())
        )
