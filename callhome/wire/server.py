"""The centre's end of a call: read HS1, let the application decide, take messages.

The centre's side never acknowledges a message by itself: it reports
`MessageReceived`, and sends STORED only when the caller says `message_stored()` after
its transaction committed. A message the caller already holds is acknowledged again as
DUPLICATE (`message_stored(seq, duplicate=True)`).

Deadlines of its own, so that a caller cannot hold a port: a readable HS1 within
`config.hs1_deadline()` of `start()`, and after `accept()` the caller's first
authenticated record within `config.confirm_deadline()` (`HandshakeConfirmed`: only then
is the caller known to be live, not a replayed HS1). An HS1 that does not decrypt is
answered with a NOTICE and the session keeps waiting: one forged frame must not end a
genuine call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .endpoint import PROLOGUE, PROTOCOL_VERSION, Endpoint
from .errors import HandshakeFailed, MessageError, PeerMisbehaved, ProtocolError, SessionTimeout
from .events import (
    Event,
    HandshakeConfirmed,
    HandshakeDecryptionFailed,
    HandshakeRefused,
    HandshakeRequested,
    MessageFailed,
    MessagePartReceived,
    MessageReceived,
    MessageStarted,
)
from .messages import MAX_MESSAGE, decode_body, decode_content, load_dictionary, message_digest
from .noise import IKHandshake
from .phases import Phase, Role
from .records import (
    CAP_FRAME_CHECK_V2,
    HS1,
    HS2,
    HS2_FRAME_CHECK_V2,
    HS2_RESUME,
    NOTICE,
    NOTICE_UNDECRYPTABLE,
    Answer,
    MessageData,
    MessageHead,
    Reader,
    RefusalReason,
    RejectReason,
    SegmentType,
    encode_answer,
    uleb,
)
from .transfer import TransferConfig

MAX_NOTICES = 8
"""NOTICE frames a centre sends in one call (one per undecryptable HS1, at most)."""


@dataclass
class _Incoming:
    head: MessageHead
    position: int
    """Where in the message the next chunk starts."""
    skip: bool = False
    """Not kept: rejected, a duplicate, or answered meanwhile."""
    prefix: bytes = b""
    data: bytearray = field(default_factory=bytearray)


class ServerSession(Endpoint):
    role = Role.CENTRE

    def __init__(
        self,
        *,
        static_private: bytes,
        config: TransferConfig | None = None,
        ephemeral_private: bytes | None = None,
        capabilities: int = CAP_FRAME_CHECK_V2,
    ) -> None:
        super().__init__(config or TransferConfig())
        self.capabilities = capabilities
        """What the centre agrees to when a device asks: CAP_FRAME_CHECK_V2, or 0 to
        behave as a centre of before (it ignored the capabilities byte)."""
        self._device_capabilities = 0
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
        self._started_at = 0.0
        self._accepted_at: float | None = None
        self._progress_at: float | None = None
        """When a frame last arrived damaged (line noise) or, on an error-corrected
        line, when bytes last arrived: the caller's first record may be on its way."""
        self.confirmed = False
        """The caller proved it is live: its first record after the handshake
        authenticated (`HandshakeConfirmed`)."""

    def start(self, now: float) -> None:
        self._last_heard = now
        self._started_at = now

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
                self._write(self._encode(bytes([NOTICE, NOTICE_UNDECRYPTABLE])))
            self._events.append(HandshakeDecryptionFailed(str(error)))
            return
        reader = Reader(payload)
        assert handshake.remote_static is not None
        try:
            version = reader.byte()
            if version == PROTOCOL_VERSION:
                caps, dictionary_id = reader.byte(), reader.byte()
                epoch = int.from_bytes(reader.take(4), "big")
                counter = reader.uleb()
        except PeerMisbehaved:
            raise HandshakeFailed("malformed handshake payload") from None
        self._handshake = handshake
        self._hs1 = body
        self.device_key = handshake.remote_static
        self._heard(now)
        self._enter(Phase.AWAITING_DECISION)
        if version != PROTOCOL_VERSION:
            # the rest of a later version's payload may differ: it was not read. The
            # refusal's layout (flags, reason) is the same in every version.
            self.refuse(now, RefusalReason.UNSUPPORTED_VERSION)
            self._events.append(
                HandshakeRefused(
                    handshake.remote_static, RefusalReason.UNSUPPORTED_VERSION, version
                )
            )
            return
        self.request = HandshakeRequested(
            handshake.remote_static, counter, epoch, dictionary_id, version
        )
        self._dictionary_id = dictionary_id
        self._device_capabilities = caps
        self._events.append(self.request)

    def accept(
        self,
        now: float,
        *,
        clock_ms: int,
        resume: Mapping[int, bytes] | None = None,
        test_interval: int | None = None,
    ) -> None:
        """Let the device in; `resume` maps message numbers to what is already stored;
        `test_interval`: the seconds between line tests the centre expects of it.
        The caller is not yet known to be live: wait for `HandshakeConfirmed`."""
        if self.phase is not Phase.AWAITING_DECISION or self._handshake is None:
            raise ValueError("nothing to accept")
        self._resume = dict(resume or {})
        dictionary_ok = load_dictionary(self._dictionary_id) is not None
        flags = (0x02 if dictionary_ok else 0x00) | (0x04 if test_interval else 0x00)
        v2 = self.capabilities & self._device_capabilities & CAP_FRAME_CHECK_V2
        entries = [(seq, len(data)) for seq, data in self._resume.items() if data][:16]
        if v2:
            flags |= HS2_FRAME_CHECK_V2
            if entries:
                flags |= HS2_RESUME
        payload = bytes([flags]) + uleb(clock_ms)
        if not v2 or entries:  # agreed on v2: no resume list at all when it is empty
            payload += uleb(len(entries))
        for seq, stored in entries:
            payload += uleb(seq) + uleb(stored)
        if test_interval:  # after everything a device of before it reads: it ignores it
            payload += uleb(test_interval)
        self._hs2 = self._encode(bytes([HS2]) + self._handshake.write_message_2(payload))
        if v2:  # after our HS2 (always v1) is encoded: the caller's records come after it
            self._agree_frame_check_v2()
        self._install_keys(self._handshake.keys())
        self._enter(Phase.ACCEPTED)
        self._accepted_at = now
        self._write(self._hs2)

    def refuse(self, now: float, reason: RefusalReason) -> None:
        """Tell the device why it may not talk (authenticated: only it can read this)."""
        if self.phase is not Phase.AWAITING_DECISION or self._handshake is None:
            raise ValueError("nothing to refuse")
        payload = bytes([0x01, reason])
        self._hs2 = self._encode(bytes([HS2]) + self._handshake.write_message_2(payload))
        self._write(self._hs2)
        self._enter(Phase.CLOSED)  # the caller knows why: no event

    def _authenticated(self, now: float) -> None:
        if self.phase is Phase.ACCEPTED:
            assert self.request is not None and self._accepted_at is not None
            self._enter(Phase.ESTABLISHED)
            self.confirmed = True
            self._events.append(
                HandshakeConfirmed(
                    self.request.device_key, self.request.call_counter, now - self._accepted_at
                )
            )

    # -- time ----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        damaged = self.decoder.stats.line_errors
        events = super().receive_data(data, now)
        if self.decoder.stats.line_errors > damaged or (data and self.config.error_corrected):
            self._progress_at = now
        return events

    def _hs1_deadline_at(self) -> float:
        """A damaged frame (CRC failure) while we wait is most likely an HS1 hit by
        noise: allow each of the first two one more resend of the caller's."""
        damaged = min(self.decoder.stats.line_errors, 2)
        extra = damaged * self.config.handshake_retry * 1.5
        return self._started_at + self.config.hs1_deadline() + extra

    def _confirm_deadline_at(self) -> float:
        """From our answer, or from the caller's last sign of progress, but never beyond
        the idle timeout after our answer. Progress is a damaged frame (a caller on a
        noisy line whose first frames are lost: at 2,400 bit/s and a BER of 1e-4 two of
        three 1 KiB frames are) or, where the modems correct errors, any bytes: there a
        burst holds the line up (a resend and a retrain by the modems) rather than
        damaging it, and a first record still arriving in pieces seconds apart is on its
        way (at 2 bursts a second, 1 call in 20 at 33,600 bit/s and 3 at 9,600 timed out
        with its first record half delivered)."""
        assert self._accepted_at is not None
        since = max(self._accepted_at, self._progress_at or 0.0)
        return min(
            since + self.config.confirm_deadline(),
            self._accepted_at + self.config.idle_timeout,
        )

    def _extra_deadlines(self) -> list[float | None]:
        if self.phase is Phase.HANDSHAKE:
            return [self._hs1_deadline_at()]
        if self.phase is Phase.ACCEPTED and self._accepted_at is not None:
            return [self._confirm_deadline_at()]
        return []

    def _timer_extra(self, now: float) -> None:
        if self.phase is Phase.HANDSHAKE and now >= self._hs1_deadline_at():
            raise SessionTimeout(
                f"no readable handshake {now - self._started_at:.1f} s into the call"
            )
        if (
            self.phase is Phase.ACCEPTED
            and self._accepted_at is not None
            and now >= self._confirm_deadline_at()
        ):
            raise SessionTimeout(
                f"the caller did not prove it is live within "
                f"{now - self._accepted_at:.1f} s of our answer"
            )

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
            whole = head.offset + len(head.chunk) >= head.total
            self._events.append(MessageStarted(head.seq, head.kind, head.total, head.offset, whole))
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
                self._events.append(MessagePartReceived(head.seq, current.position, bytes(chunk)))
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
        # not yet `_received`: that waits for `message_stored`, so a head resent in the
        # same batch is never answered DUPLICATE for a message the store may still refuse
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

    def _everything_answered(self) -> bool:
        """The device said it has sent everything, every message it announced has its
        answer decided, and no answer is waiting to go out."""
        return self.peer_finished and all(self._announced.values()) and not self._answers

    def _fill(self, budget: int) -> list[bytes]:
        pieces: list[bytes] = []
        room = budget
        while self._answers and len(self._answers[0]) <= room:
            piece = self._answers.popleft()
            pieces.append(piece)
            room -= len(piece)
        self._check_done(0.0)
        return pieces

    def _check_done(self, now: float) -> None:
        if self._everything_answered():
            self._fin_wanted = True

    def _after_fin(self, now: float) -> None:
        # stay a moment: if our last frame is lost, the client's resend gets it again
        self._close_at = now + self.config.close_linger

    @property
    def complete(self) -> bool:
        """Everything the device sent is answered and our FIN is out: the exchange is
        done even if the device hangs up before we report CallClosed."""
        return self._fin_sent and self._everything_answered()
