"""What both ends of a call share: frames in and out, records, ACKs, time, phases.

What an end does with a frame, in order: the CRC sorts out line noise (dropped,
counted); an HS or NOTICE frame drives the handshake (`client.py`, `server.py`); a DATA
or ACK frame must authenticate (failures are counted apart from CRC failures: they are
an attack signal or a replay from another call) and only then is checked against the
replay window; then its ACK fields update the sender and its segments, once and in
order, reach the application.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from .errors import PeerMisbehaved, ProtocolError, SessionTimeout
from .events import CallClosed, CallFailed, Event, PeerFinished, SecurityAlert
from .framing import FrameCheck, FrameDecoder, FrameStats, encode_frame
from .messages import EncodedMessage
from .noise import TransportKeys
from .phases import FINAL, KEYED, Phase, Role, advance
from .records import (
    ACK,
    ACK_NONCE_BASE,
    DATA,
    HANDSHAKE_TYPES,
    SEQ_MODULUS,
    AckInfo,
    Reader,
    ReplayWindow,
    Sealer,
    decode_flags_and_ack,
    decode_segments,
    encode_flags_and_ack,
    expand,
)
from .streamframing import StreamDecoder, encode_stream_frame
from .transfer import FRAME_OVERHEAD, ReceiveWindow, SendWindow, TransferConfig

PROTOCOL_VERSION = 1
PROLOGUE = b"callhome/1"
"""The Noise prologue: the same in every protocol version (the version is in HS1)."""
DIGEST_THRESHOLD = 1024
"""Messages longer than this carry an end-to-end digest and can resume after a drop."""


@dataclass
class SessionStats:
    """What a session counted. `stats()` gives the integer counters as a mapping (for
    the store, with the call); attributes give each one."""

    bytes_out: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    frames_in: int = 0
    retransmissions: int = 0
    auth_failures: int = 0
    """Frames with a good CRC that failed authentication: never line noise."""
    replays: int = 0
    """Authentic frames that came again (a DATA frame already delivered, an old ACK)."""
    handshake_round_trip: float | None = None
    line: FrameStats = field(default_factory=FrameStats)
    """The frame decoder's counters: CRC failures, malformed, oversize (line noise)."""

    @property
    def crc_failures(self) -> int:
        return self.line.crc_failures

    @property
    def malformed(self) -> int:
        return self.line.malformed

    @property
    def oversize(self) -> int:
        return self.line.oversize

    def __call__(self) -> dict[str, int]:
        return {
            "auth_failures": self.auth_failures,
            "replays": self.replays,
            "crc_failures": self.line.crc_failures,
            "malformed": self.line.malformed,
            "oversize": self.line.oversize,
            "noise_bytes": self.line.noise_bytes,
            "retransmissions": self.retransmissions,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


@dataclass
class Outgoing:
    seq: int
    message: EncodedMessage
    plain: EncodedMessage | None = None
    """The same content uncompressed, for a centre without our dictionary."""
    offset: int = 0
    headed: bool = False
    done_sending: bool = False
    answered: bool = False


class Endpoint:
    """The machinery both ends share. `ClientSession` and `ServerSession` add the
    handshake, what goes into frames and what comes out of them."""

    role: Role

    def __init__(self, config: TransferConfig) -> None:
        self.config = config
        self.phase = Phase.HANDSHAKE
        self.decoder: FrameDecoder | StreamDecoder = (
            StreamDecoder() if config.stream else FrameDecoder(v1_types=HANDSHAKE_TYPES)
        )
        self.frame_check = FrameCheck.V1
        """The check of DATA and ACK frames in this call: V2 once both ends agreed
        (HS1 capability bit 0, HS2 flag 0x08). Over TCP it is agreed the same way but
        unused: stream frames carry no check."""
        self.stats = SessionStats(line=self.decoder.stats)
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
        if self.phase in FINAL:
            return []
        self.stats.bytes_in += len(data)
        try:
            self._bytes_arrived(data, now)
            for body in self.decoder.feed(data):
                self.stats.frames_in += 1
                self._frame(body, now)
                if self.phase in FINAL:
                    break
            self._pump(now)
        except ProtocolError as error:
            self._fail(error)
        return self._take_events()

    def handle_timer(self, now: float) -> list[Event]:
        if self.phase in FINAL:
            return []
        try:
            self._timer(now)
            self._pump(now)
        except ProtocolError as error:
            self._fail(error)
        return self._take_events()

    def next_deadline(self) -> float | None:
        if self.phase in FINAL:
            return None
        deadlines = [self._idle_deadline(), self._ack_due, self._close_at, *self._extra_deadlines()]
        if self.phase in KEYED:
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

    def _bytes_arrived(self, data: bytes, now: float) -> None:
        pass

    def _authenticated(self, now: float) -> None:
        """A DATA or ACK frame from the peer authenticated (the centre's proof of life)."""

    # -- phases --------------------------------------------------------------------------

    def _enter(self, target: Phase) -> None:
        self.phase = advance(self.role, self.phase, target)

    def _close(self) -> None:
        if self.phase not in FINAL:
            self._enter(Phase.CLOSED)
            self._events.append(CallClosed())

    def _fail(self, error: ProtocolError) -> None:
        if self.phase not in FINAL:
            self._enter(Phase.FAILED)
            self._events.append(CallFailed(error))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- frames in -----------------------------------------------------------------------

    def _frame(self, body: bytes, now: float) -> None:
        kind = body[0]
        if kind in HANDSHAKE_TYPES:
            self._handshake_frame(kind, body, now)
            return
        if kind not in (DATA, ACK):
            return  # unknown frame types from a newer peer are ignored
        if self.phase not in KEYED or self._opener is None or len(body) < 2 + 16:
            self._auth_failure(kind)
            return
        if kind == DATA:
            self._data_frame(body, now)
        else:
            self._ack_frame(body, now)

    def _auth_failure(self, kind: int) -> None:
        self.stats.auth_failures += 1
        if self.phase in KEYED:
            self._events.append(SecurityAlert("auth_failure", kind, self.stats.auth_failures))

    def _replayed(self, kind: int) -> None:
        self.stats.replays += 1
        self._events.append(SecurityAlert("replay", kind, self.stats.replays))

    def _data_frame(self, body: bytes, now: float) -> None:
        assert self._opener is not None
        seq = expand(body[1], self._replay.highest + 1)
        # authenticate first: a frame that does not is answered with nothing at all
        # (issue 10: a forged frame with a seen number used to get an ACK)
        plaintext = self._opener.open(seq, body[:2], body[2:])
        if plaintext is None:
            self._auth_failure(DATA)
            return
        self._authenticated(now)
        if self._replay.seen(seq):
            self._replayed(DATA)
            self._ack_now(now)  # a genuine resend: our ACK may have been lost
            return
        if not self._receive.in_window(seq):
            return  # ahead of our window: not taken, not marked; it will come again
        self._replay.mark(seq)
        self._heard(now)
        reader = Reader(plaintext)
        ack, fin = decode_flags_and_ack(reader, self._send.next_seq)
        if ack is not None:
            self._apply_riding_ack(ack, now)
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
            segments = decode_segments(Reader(segment_bytes), compact=self.compact_heads)
            self._segments(list(segments), now)
            if finished and not self.peer_finished:
                self.peer_finished = True
                self._events.append(PeerFinished())
        self._check_done(now)

    def _ack_frame(self, body: bytes, now: float) -> None:
        assert self._opener is not None
        number = expand(body[1], self._last_ack_in + 1)
        plaintext = self._opener.open(ACK_NONCE_BASE + number, body[:2], body[2:])
        if plaintext is None:
            self._auth_failure(ACK)
            return
        self._authenticated(now)
        if number <= self._last_ack_in:
            self._replayed(ACK)  # ACKs are never resent: an old one is a replay
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
        """An ACK frame's: sent fresh, never resent, and a line keeps the order, so it
        never acknowledges less than an earlier one."""
        if ack.cumulative > self._send.next_seq:
            raise PeerMisbehaved("acknowledges frames never sent")
        if ack.cumulative < self._send.acknowledged_below:
            # only after an ACK riding on a resent DATA frame was misread (below)
            raise ProtocolError(
                f"the peer is missing frame {ack.cumulative}, taken for acknowledged "
                "from an acknowledgement too old to read"
            )
        self._send.on_ack(ack, now)

    def _apply_riding_ack(self, ack: AckInfo, now: float) -> None:
        """The ACK riding on a DATA frame is as old as the frame's first copy: a resend
        carries it unchanged (the same bytes under the same nonce), and after a few lost
        copies it can lag the peer's state by more than its 8-bit number can tell. It is
        read as the latest number at or below our next frame's; under what is already
        acknowledged it is stale and says nothing new. (Read as the nearest number, one
        over 127 frames old came out above our next frame's, and a noisy call at 33,600
        bit/s ended with "acknowledges frames never sent".) Only one 256 of our frames
        old or more can be misread as fresh (when its reading lands among the frames in
        flight); the peer's next ACK frame then shows it (`_apply_ack`)."""
        cumulative = ack.cumulative
        if cumulative > self._send.next_seq:
            cumulative -= SEQ_MODULUS
        if cumulative < self._send.acknowledged_below:
            return
        if cumulative != ack.cumulative:
            ack = replace(ack, cumulative=cumulative)
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
        if self.phase not in KEYED or self._sealer is None:
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
        wire = self._encode(header + self._sealer.seal(seq, header, plaintext))
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
            self._encode(header + self._sealer.seal(ACK_NONCE_BASE + number, header, plaintext))
        )
        self._ack_due = None

    def _encode(self, body: bytes) -> bytes:
        if self.config.stream:
            return encode_stream_frame(body)
        return encode_frame(body, FrameCheck.V1 if body[0] in HANDSHAKE_TYPES else self.frame_check)

    def _agree_frame_check_v2(self) -> None:
        """Both ends speak frame check v2: DATA and ACK frames from now on, both ways
        (the peer's come only after the handshake frame that made this agreement)."""
        self.frame_check = FrameCheck.V2
        if isinstance(self.decoder, FrameDecoder):
            self.decoder.check = FrameCheck.V2

    @property
    def compact_heads(self) -> bool:
        """A message head may leave out its chunk length when the chunk is the rest of
        the message (flag 0x20): the two ends agreed on it with frame check v2, which it
        pays for (docs/protocol.md §1a)."""
        return self.frame_check is FrameCheck.V2

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
