"""The device's end of a call: send HS1, read the centre's answer, send the messages.

    client = ClientSession(static_private=..., server_public=..., call_counter=...,
                           epoch=..., config=TransferConfig(line_rate=2400))
    client.queue(seq, encoded_message); client.finish()
    client.start(now)
    write(client.data_to_send())
    ... events = client.receive_data(bytes_from_the_line, now)
    ... events = client.handle_timer(now) at client.next_deadline()

A message leaves the spool only on `MessageAcknowledged` (or a permanent
`MessageRejected`); everything else is reported by `undelivered()`.

Not every answering modem is a call-home centre. A far end that sends bytes but no
valid frame within `config.peer_wait()` of its first byte, or more than
`config.peer_max_stray` bytes before one (a login banner, an EMSI request, a fax
answer, a person), ends the call with `NotACentre`. A far end that sends nothing at all
is given the whole HS1 retry schedule (66 s): some modems say CONNECT before the far
end has answered.
"""

from __future__ import annotations

from .endpoint import DIGEST_THRESHOLD, PROLOGUE, PROTOCOL_VERSION, Endpoint, Outgoing
from .errors import HandshakeFailed, MessageError, NotACentre, PeerMisbehaved, Refused
from .events import HandshakeCompleted, MessageAcknowledged, MessageRejected
from .messages import CURRENT_DICTIONARY, MAX_MESSAGE, EncodedMessage, message_digest
from .noise import IKHandshake
from .phases import Phase, Role
from .records import (
    CAP_FRAME_CHECK_V2,
    HS1,
    HS2,
    HS2_FRAME_CHECK_V2,
    HS2_RESUME,
    NOTICE,
    NOTICE_TEXT,
    Answer,
    MessageHead,
    Reader,
    RefusalReason,
    SegmentType,
    encode_data,
    encode_head,
    head_size,
    uleb,
)
from .transfer import TransferConfig

STRAY_KEPT = 256
"""Bytes of what the far end sent before any valid frame, kept for the caller to read
(a modem's BUSY or NO CARRIER text, a login prompt)."""


class ClientSession(Endpoint):
    role = Role.CLIENT

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
        capabilities: int = CAP_FRAME_CHECK_V2,
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
        self.capabilities = capabilities
        """HS1 capabilities: CAP_FRAME_CHECK_V2, or 0 to behave as a device of before."""
        self._hs1 = b""
        self._hs1_sent_at = 0.0
        self._first_hs1_at: float | None = None
        self._retry_at: float | None = None
        self._attempts = 0
        self._messages: dict[int, Outgoing] = {}
        self._order: list[int] = []
        self.dictionary_accepted = False
        self.refusal: RefusalReason | None = None
        self._notice: str | None = None
        self._notice_deadline: float | None = None
        self._first_byte_at: float | None = None
        self._damaged_seen = 0
        self._valid_frame = False
        self.stray = b""
        """The first bytes the far end sent before any valid frame (at most 256)."""

    def queue(self, seq: int, message: EncodedMessage, plain: EncodedMessage | None = None) -> None:
        """Send `message` (number `seq`) in this call; `plain` is its uncompressed form,
        sent instead if the centre does not have the dictionary."""
        if self._fin_wanted:
            raise ValueError("finish() was called: no more messages in this call")
        if seq in self._messages:
            raise ValueError(f"message {seq} is already queued")
        if len(message.body) > MAX_MESSAGE:
            raise MessageError("message too large")
        self._messages[seq] = Outgoing(seq, message, plain)
        self._order.append(seq)

    def finish(self) -> None:
        """No more messages: the last frame will say so."""
        self._fin_wanted = True

    def start(self, now: float) -> None:
        payload = (
            bytes([PROTOCOL_VERSION, self.capabilities, self.dictionary_id])
            + self.epoch.to_bytes(4, "big")
            + uleb(self.call_counter)
        )
        self._hs1 = self._encode(bytes([HS1]) + self._handshake.write_message_1(payload))
        self._last_heard = now
        self._send_hs1(now)

    @property
    def handshake_attempts(self) -> int:
        """How many times HS1 has been sent in this call."""
        return self._attempts

    def undelivered(self) -> list[int]:
        """Messages the centre has not acknowledged (they stay in the spool)."""
        return [seq for seq in self._order if not self._messages[seq].answered]

    # -- the handshake -------------------------------------------------------------------

    def _send_hs1(self, now: float) -> None:
        self._write(self._hs1)
        self._attempts += 1
        self._hs1_sent_at = now
        if self._first_hs1_at is None:
            self._first_hs1_at = now
        backoff = min(
            self.config.handshake_retry * 1.5 ** (self._attempts - 1),
            self.config.handshake_retry_max,
        )
        self._retry_at = now + backoff + self._answer_flight()

    def _answer_flight(self) -> float:
        """The HS1 and HS2 must cross the line before an answer can come."""
        return self.config.line_time(len(self._hs1) + 80)

    def _idle_deadline(self) -> float | None:
        # while shaking hands, the attempt limit decides (and says something clearer)
        return None if self.phase is Phase.HANDSHAKE else super()._idle_deadline()

    @property
    def heard_centre(self) -> bool:
        """A frame only a centre sends (its answer, a notice, a record) has arrived: our
        own first message echoed back by a login prompt does not count."""
        return self._valid_frame

    def _peer_deadline(self) -> float | None:
        if self.phase is not Phase.HANDSHAKE or self._valid_frame:
            return None
        if self._first_byte_at is None:
            return None
        return self._first_byte_at + self.config.peer_wait()

    def _extra_deadlines(self) -> list[float | None]:
        if self.phase is not Phase.HANDSHAKE:
            return []
        return [self._retry_at, self._notice_deadline, self._peer_deadline()]

    def _bytes_arrived(self, data: bytes, now: float) -> None:
        if self._valid_frame or self.phase is not Phase.HANDSHAKE or not data:
            return
        if self._first_byte_at is None:
            self._first_byte_at = now
        if len(self.stray) < STRAY_KEPT:
            self.stray += data[: STRAY_KEPT - len(self.stray)]
        # counted before the frames in `data` are looked at: a genuine HS2 (at most
        # 355 bytes on the wire) is far below the limit even after some noise. Frames
        # that were well formed but damaged (a centre's answers on a noisy line, resent
        # for each of our retries) are not the far end's text: they do not count
        stray = self.stats.bytes_in - self.decoder.stats.damaged_bytes
        if stray > self.config.peer_max_stray:
            raise NotACentre(
                f"the far end sent {self.stats.bytes_in} bytes and no call-home frame",
                self.stray,
            )

    def _timer_extra(self, now: float) -> None:
        if self.phase is not Phase.HANDSHAKE:
            return
        if self._notice is not None and now >= (self._notice_deadline or now):
            raise HandshakeFailed(self._notice)
        peer = self._peer_deadline()
        damaged = self.decoder.stats.crc_failures
        if peer is not None and now >= peer and damaged > self._damaged_seen:
            # a damaged frame came meanwhile: a centre on a noisy line, most likely (text
            # is never a well-formed frame); wait again, within the attempt limit
            self._damaged_seen = damaged
            self._first_byte_at = now
            peer = self._peer_deadline()
        if peer is not None and now >= peer:
            raise NotACentre(
                f"no call-home frame {now - (self._first_byte_at or now):.0f} s after the "
                "far end began to send",
                self.stray,
            )
        if self._retry_at is not None and now >= self._retry_at:
            if self._attempts >= self.config.handshake_attempts:
                raise HandshakeFailed("no answer from the centre to the handshake")
            self._send_hs1(now)  # the identical bytes: the centre answers from its cache

    def _handshake_frame(self, kind: int, body: bytes, now: float) -> None:
        if kind not in (HS2, NOTICE):
            # our own HS1 echoed back (a login prompt's terminal echo) is a valid frame,
            # but no centre sends one: it proves nothing about the far end
            return
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
            return  # not from our centre: the state is as it was; wait for the real one
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
        v2 = bool(flags & HS2_FRAME_CHECK_V2 and self.capabilities & CAP_FRAME_CHECK_V2)
        clock = reader.uleb()
        resume: dict[int, int] = {}
        if not v2 or flags & HS2_RESUME:  # with v2 an empty resume list is left out
            for _ in range(reader.uleb(16)):
                seq = reader.uleb()
                resume[seq] = reader.uleb()
        test_interval = reader.uleb() if flags & 0x04 else None
        if v2:
            self._agree_frame_check_v2()
        self._install_keys(self._handshake.keys())
        self._enter(Phase.ESTABLISHED)
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
        first = self._hs1_sent_at if self._first_hs1_at is None else self._first_hs1_at
        self._events.append(
            HandshakeCompleted(
                clock,
                resume,
                now - self._hs1_sent_at,
                test_interval,
                attempts=self._attempts,
                seconds=now - first,
            )
        )

    def _frame(self, body: bytes, now: float) -> None:
        if body[0] != HS1:  # our own HS1 echoed back proves nothing (see below)
            self._valid_frame = True
        super()._frame(body, now)

    # -- messages out --------------------------------------------------------------------

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
                        ),
                        compact=self.compact_heads,
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

    # -- answers in ----------------------------------------------------------------------

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
