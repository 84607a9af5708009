"""Selective repeat over a serial line: what to resend, when, and how big to make frames.

A modem line does not reorder, so when an ACK covers a frame that left after frame k
and k is still unacknowledged, k was lost: it is resent at once (and again only if a
frame that left after the resend is acknowledged while k still is not). Everything
else is caught by the retransmission timer, set from measured round trips (RFC 6298,
with Karn's rule: never time a frame that was sent twice). Round trips are measured
from the moment a frame finished leaving, estimated from the line rate, so a 4-second
frame at 2,400 bit/s does not inflate the estimate.

Frame size follows the observed loss: the loss rate at the current size gives an
estimate of the bit error rate, and the size that maximises
    L / (L + h) * (1 - p) ** (10 * (L + h))
(transport-field-notes §2.7) is chosen among 64..1024 bytes, and 2,016 on a fast
error-corrected line (`TransferConfig.frame_sizes`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .records import MAX_WINDOW, AckInfo

P = TypeVar("P")

FRAME_SIZES = (64, 128, 256, 512, 1024)
LARGE_FRAME = 2016
"""The DATA payload of a fast error-corrected line: the largest under which the frame's
body (payload, header 2, tag 16, flags and ACK up to 9) stays within framing's MAX_BODY
(2,048), which every centre's decoder has accepted from the start. Its overhead per
payload byte is half a 1,024-byte frame's (1.3 % instead of 2.6 %)."""
FRAME_OVERHEAD = 27
"""Header 2, tag 16, flags 1, frame check 4 (v2; 2 with an end of before), COBS 1,
delimiters 2, and a byte of segment header, around a DATA payload: approximately."""


@dataclass(frozen=True)
class TransferConfig:
    line_rate: int = 2400
    """The line (DCE) rate in bit/s, from the modem's connect record."""
    flight_seconds: float = 4.0
    """Bytes in flight are bounded to this much line time (but at least two frames)."""
    min_rto: float = 1.0
    max_rto: float = 30.0
    initial_rto: float = 3.0
    ack_delay: float = 0.05
    idle_timeout: float = 90.0
    """No frame from the peer for this long ends the call (modems retrain for up to a
    minute; at least 60 s)."""
    handshake_retry: float = 3.0
    handshake_retry_max: float = 10.0
    handshake_attempts: int = 8
    notice_grace: float = 2.0
    """Client: how long after an (unauthenticated) NOTICE a genuine HS2 may still come
    before the notice is believed."""
    close_linger: float = 5.0
    """After the exchange is complete, how long to stay for a lost last frame."""
    initial_frame: int | None = None
    """The payload size of a call's first DATA frames (`first_frame`), until the losses
    say better."""
    handshake_timeout: float = 5.0
    """Centre: the fixed part of the time a caller has to deliver its first handshake
    message (from CONNECT), and again to prove it is live after the accepting HS2; the
    line time of the frames involved is added (`hs1_deadline`, `confirm_deadline`)."""
    peer_deadline: float = 10.0
    """Client: once the far end has sent anything, how long it has to send a valid
    frame before it is taken for something other than a call-home centre."""
    peer_max_stray: int = 1024
    """Client: bytes from the far end before its first valid frame beyond which it is
    taken for something other than a call-home centre (a login banner, say)."""
    stream: bool = False
    """Frames for a reliable byte stream (TCP, `streamframing.py`) instead of a modem
    line's COBS frames."""
    error_corrected: bool = False
    """The modems correct errors (V.42 LAPM, MNP: the connect record says): a frame is
    not lost on the line, only held up while they resend or retrain. A late ACK is then
    not taken for a loss, and a timeout resends the oldest frame alone, not every frame
    in flight (after a stall that emptied no frame, a whole window of resends would
    cost up to `flight_seconds` of line time for nothing)."""

    @property
    def frame_sizes(self) -> tuple[int, ...]:
        """The DATA payload sizes the sender chooses among. LARGE_FRAME only where the
        modems correct errors (a frame is not lost, so its size costs nothing in resends)
        and it takes at most a quarter of the flight's line time (21,600 bit/s and
        faster with the default 4 s): on a slower line it would hold up the ACKs and
        the other direction for longer than a round trip is worth."""
        if (
            self.error_corrected
            and not self.stream
            and self.line_time(LARGE_FRAME + FRAME_OVERHEAD) <= self.flight_seconds / 4
        ):
            return (*FRAME_SIZES, LARGE_FRAME)
        return FRAME_SIZES

    @property
    def first_frame(self) -> int:
        """`initial_frame`, or by default 1 KiB where frames are not lost (the modems
        correct errors, or TCP), and smaller on a line where they can be: a frame
        already sent can only be resent whole (the same bytes, the same nonce), so the
        first frames on a noisy line must be small enough to get through before the
        sizer has seen a loss (1 KiB frames at a BER of 2e-4 arrive 1 time in 9; at
        2,400 bit/s 4 calls in 10 timed out, `benchmarks/noisy_lines.py`). 256 bytes up
        to 9,600 bit/s; 512 above, where a first flight of 4 s holds dozens of frames
        before an ACK can come back to grow them. A clean 64 KiB call (`python -m
        benchmarks.noisy_lines --bers 0 --reports 1 --size 65536 --seeds 1 --compare
        1024`, and 256) takes 20.4 s at 33,600 bit/s with 1 KiB first frames, 20.5 with
        512, 20.7 with 256; 282.6 s and 284.0 at 2,400 with 1 KiB and 256."""
        if self.initial_frame is not None:
            return self.initial_frame
        if self.error_corrected or self.stream:
            return 1024
        return 256 if self.line_rate <= 9600 else 512

    def line_time(self, nbytes: int) -> float:
        """Seconds `nbytes` take on the line (10 bits a byte)."""
        return nbytes * 10 / max(self.line_rate, 1)

    def hs1_deadline(self) -> float:
        """Centre: from the start of the call to a readable HS1 (110-113 bytes on the
        wire), leaving room for one HS1 lost to noise and its resend: 9.5 s at 2,400
        bit/s, 8.1 s at 33,600, 20 s at 300."""
        return self.handshake_timeout + self.handshake_retry + self.line_time(3 * 120)

    def confirm_deadline(self) -> float:
        """Centre: from the accepting HS2 to the caller's first authenticated record:
        HS2 out (up to 355 bytes) and three 1 KiB frames back (a call's first frames are
        never larger; the first two may be lost to noise, and a round trip of up to a
        few seconds): 20 s at 2,400
        bit/s, 8.7 s at 9,600, 6.1 s at 33,600; never more than the idle timeout (it is
        at 300 bit/s, where a 1 KiB frame takes 36 s)."""
        return min(self.idle_timeout, self.handshake_timeout + self.line_time(355 + 3 * 1080))

    def peer_wait(self) -> float:
        """Client: `peer_deadline`, but never less than three HS1/HS2 round trips."""
        return max(self.peer_deadline, 3 * self.line_time(110 + 80))

    def scaled(self, factor: float) -> TransferConfig:
        """Every duration times `factor` (rates and sizes unchanged)."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name) * factor
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), float)
            },
        )


class LineClock:
    """When the bytes handed to the modem will have left, at the line rate."""

    def __init__(self, rate: int) -> None:
        self.seconds_per_byte = 10.0 / max(rate, 300)
        self.free_at = 0.0

    def depart(self, nbytes: int, now: float) -> float:
        self.free_at = max(self.free_at, now) + nbytes * self.seconds_per_byte
        return self.free_at


class RttEstimator:
    def __init__(self, config: TransferConfig) -> None:
        self.config = config
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.backoff = 1
        self.samples = 0
        self._backed_off_at = float("-inf")

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.001)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.backoff = 1
        self.samples += 1

    @property
    def rto(self) -> float:
        config = self.config
        base = (
            config.initial_rto
            if self.srtt is None
            else max(config.min_rto, self.srtt + 4 * self.rttvar)
        )
        return min(config.max_rto, base * self.backoff)

    def timed_out(self, now: float) -> None:
        """Back off once per timeout episode, not once per frame that timed out."""
        if now >= self._backed_off_at + self.rto:
            self.backoff = min(self.backoff * 2, 64)
            self._backed_off_at = now

    def overdue(self) -> float:
        """How long after a frame left its ACK is overdue (time-based loss detection)."""
        if self.srtt is None:
            return self.rto
        return self.srtt + 2 * self.rttvar + self.config.ack_delay


@dataclass
class SentFrame:
    seq: int
    wire: bytes
    fin: bool
    transmission: int
    departs: float
    retransmitted: bool = False
    lost: bool = False
    first_transmission: int = 0
    """The transmission number of its first copy (`transmission` is its latest's)."""
    first_departs: float = 0.0
    """When its first copy left (its `departs` moves with each resend)."""
    timer_from: float = 0.0
    """Its retransmission timer runs from the later of this and `departs` (restarted
    for the frames behind a resent one on an error-corrected line)."""

    @property
    def timer_start(self) -> float:
        return max(self.departs, self.timer_from)


class SendWindow:
    """The sender's side of one direction: frames in flight, acks, resends."""

    def __init__(self, config: TransferConfig) -> None:
        self.config = config
        self.clock = LineClock(config.line_rate)
        self.rtt = RttEstimator(config)
        self.sizer = FrameSizer(config.first_frame, config.frame_sizes)
        self.next_seq = 0
        self.acknowledged_below = 0
        """Every frame below this number is acknowledged (the highest cumulative ACK)."""
        self.frames: dict[int, SentFrame] = {}
        self._transmissions = 0
        self.retransmissions = 0
        self.frames_sent = 0
        self.bytes_sent = 0

    def in_flight(self) -> int:
        return sum(len(frame.wire) for frame in self.frames.values())

    def room_for(self, wire_bytes: int) -> bool:
        """Bytes in flight stay within `flight_seconds` of line time, but two frames are
        always allowed: with one, the line idles while each ACK comes back."""
        oldest = min(self.frames, default=self.next_seq)
        if self.next_seq - oldest >= MAX_WINDOW:
            return False  # the span, not the count: the receiver's window is a span
        if len(self.frames) < 2:
            return True
        limit = self.config.line_rate / 10 * self.config.flight_seconds
        return self.in_flight() + wire_bytes <= limit

    def sent(self, seq: int, wire: bytes, fin: bool, now: float) -> None:
        self._transmissions += 1
        departs = self.clock.depart(len(wire), now)
        self.frames[seq] = SentFrame(
            seq,
            wire,
            fin,
            self._transmissions,
            departs,
            first_transmission=self._transmissions,
            first_departs=departs,
        )
        self.frames_sent += 1
        self.bytes_sent += len(wire)

    def resent(self, frame: SentFrame, now: float) -> None:
        self._transmissions += 1
        frame.transmission = self._transmissions
        frame.departs = self.clock.depart(len(frame.wire), now)
        frame.retransmitted = True
        frame.lost = False
        self.retransmissions += 1
        self.bytes_sent += len(frame.wire)

    def on_ack(self, ack: AckInfo, now: float) -> list[SentFrame]:
        """Apply an ACK; returns the frames it newly acknowledged."""
        self.acknowledged_below = max(self.acknowledged_below, ack.cumulative)
        acked: list[SentFrame] = []
        for seq in list(self.frames):
            if seq < ack.cumulative or (
                seq > ack.cumulative and ack.sack >> (seq - ack.cumulative - 1) & 1
            ):
                acked.append(self.frames.pop(seq))
        # A line does not reorder: whichever copy of an acknowledged frame arrived, it
        # left no sooner than the first, so a frame whose last copy left before that is
        # lost. Not before the resend (Karn again): the ACK for a resent frame may be
        # for its first copy, and frames queued before the resend may still be coming.
        latest = max((frame.first_transmission for frame in acked), default=0)
        for frame in acked:
            if not frame.retransmitted:
                self.rtt.sample(now - frame.departs)  # Karn: only frames sent once
            elif self.config.error_corrected and now < frame.departs:
                # Back before its resend can have left: the first copy's ACK, late by a
                # stall. Its round trip, stall included, is what the timer must cover:
                # without the sample, every frame was probed before its ACK came and
                # the timer never learnt (a 40 kB report at 9,600 bit/s with two
                # bursts a second: 139 resends and 854 s; with it, 3 and 183 s).
                self.rtt.sample(now - frame.first_departs)
            self.sizer.record(len(frame.wire), lost=False)
        # an error-corrected line loses nothing: a late ACK means a stall, not a loss
        overdue = math.inf if self.config.error_corrected else self.rtt.overdue()
        if self.config.error_corrected and any(frame.retransmitted for frame in acked):
            # a resent frame came back: the line carries again, so a frame still missing
            # behind it (lost after all: a DTE buffer that overflowed) waits one timeout,
            # not a backed-off one (a lost tail of twelve frames took 240 s). Not resent
            # at once: after a stall the ACK is most often for its first copy, with the
            # frames behind it still on their way (that cost 50 to 70 resends a call).
            self.rtt.backoff = 1
        if self.config.error_corrected and acked:
            # The line carries: the frames behind the newest one acknowledged are queued
            # in the modems, not lost, and leave one after the other from now, so each
            # one's timer restarts (as RFC 6298 §5.3 restarts TCP's) from now plus the
            # line time queued ahead of it, never more than the gap between their sends
            # (a frame sent after the line idled is behind nothing). Timed from their
            # estimated departures, which a stall makes wrong, the frames behind a stall
            # timed out one by one and were resent for nothing.
            origin = max(frame.first_departs for frame in acked)
            queued = 0.0
            for frame in sorted(self.frames.values(), key=lambda f: f.first_departs):
                if frame.first_departs <= origin:
                    offset = 0.0
                else:
                    queued += self.config.line_time(len(frame.wire))
                    offset = min(frame.first_departs - origin, queued)
                frame.timer_from = max(frame.timer_from, now + offset)
        for frame in self.frames.values():
            if frame.lost:
                continue
            # A line does not reorder: if something that left later arrived, this did
            # not; and an ACK that should long have covered it did not (this catches a
            # lost retransmission without waiting for the timer).
            if frame.transmission < latest or now > frame.departs + overdue:
                frame.lost = True
                self.sizer.record(len(frame.wire), lost=True)
        return acked

    def due(self, now: float) -> list[SentFrame]:
        """Frames to send again now: known lost, or past their retransmission timeout
        (on an error-corrected line, of those timed out only the oldest: the timers of
        the others start again, and its ACK will say whether they arrived)."""
        rto = self.rtt.rto
        due = [
            frame for frame in self.frames.values() if frame.lost or now >= frame.timer_start + rto
        ]
        timed_out = sorted((frame for frame in due if not frame.lost), key=lambda f: f.seq)
        if timed_out and self.config.error_corrected:
            probe = timed_out[0]
            for frame in self.frames.values():
                if frame is not probe:  # all of them: they are behind the same stall
                    frame.timer_from = max(frame.timer_from, now)
            due = [frame for frame in due if frame.lost or frame is probe]
            timed_out = [probe]
        if timed_out:
            self.rtt.timed_out(now)
            if not self.config.error_corrected:  # a stall says nothing of the error rate
                for frame in timed_out:
                    self.sizer.record(len(frame.wire), lost=True)
        return sorted(due, key=lambda frame: frame.seq)

    def next_deadline(self) -> float | None:
        if not self.frames:
            return None
        rto = self.rtt.rto
        return min(frame.timer_start + rto for frame in self.frames.values())


class FrameSizer:
    """Chooses the DATA payload size from the bit error rate the losses imply.

    Each frame that arrived or was lost is an observation at its own size; the error
    rate that makes the recent observations most likely (a grid search over a log
    scale) gives the best size. Frames of different sizes mix correctly, which a plain
    loss ratio would not (a lost 1 KiB frame says less about a 128-byte one)."""

    WINDOW = 64
    GRID = tuple(10 ** (-7 + i * 0.125) for i in range(41))  # 1e-7 .. 1e-2

    def __init__(self, initial: int = 1024, sizes: tuple[int, ...] = FRAME_SIZES) -> None:
        self.sizes = sizes
        self.size = min(sizes, key=lambda size: abs(size - initial))
        self._observations: list[tuple[int, bool]] = []
        self._count = 0
        self.ber_estimate = 0.0

    def record(self, wire_bytes: int, *, lost: bool) -> None:
        self._observations.append((10 * wire_bytes, lost))
        if len(self._observations) > self.WINDOW:
            del self._observations[0]
        self._count += 1
        if lost or self._count % 8 == 0:
            self._choose()

    def _choose(self) -> None:
        if not any(lost for _, lost in self._observations):
            self.ber_estimate = 0.0
        else:
            # A handful of frame sizes recur among the observations: each distinct
            # (size, outcome) costs one term per grid point, not each observation (a
            # sender on a slow machine sees many "losses" and chose per observation:
            # 41 x 64 logarithms per loss were most of a client's CPU at 256 calls).
            groups = tuple(Counter(self._observations).items())
            self.ber_estimate = max(self.GRID, key=lambda ber: _likelihood(groups, ber))
        best = max(self.sizes, key=lambda size: _efficiency(size, self.ber_estimate))
        index = self.sizes.index(self.size)
        target = self.sizes.index(best)
        if target < index:
            self.size = best  # shrink at once: big frames on a bad line mostly die
        elif target > index:
            self.size = self.sizes[index + 1]  # grow a step at a time


def _likelihood(groups: Iterable[tuple[tuple[int, bool], int]], ber: float) -> float:
    """Log-likelihood of the observations, grouped as ((bits, lost), count), at `ber`."""
    log_ok = math.log1p(-ber)
    total = 0.0
    for (bits, lost), count in groups:
        survive = bits * log_ok
        total += count * (math.log(max(-math.expm1(survive), 1e-300)) if lost else survive)
    return total


def _efficiency(size: int, ber: float) -> float:
    return size / (size + FRAME_OVERHEAD) * math.pow(1 - ber, 10 * (size + FRAME_OVERHEAD))


class ReceiveWindow(Generic[P]):
    """The receiver's side: in-order delivery, duplicates, and what to ACK."""

    def __init__(self) -> None:
        self.expected = 0
        self._held: dict[int, P] = {}
        self.duplicates = 0

    def in_window(self, seq: int) -> bool:
        return seq - self.expected < MAX_WINDOW

    def accept(self, seq: int, plaintext: P) -> tuple[bool, list[P]]:
        """(new?, plaintexts now deliverable in order)."""
        if seq < self.expected or seq in self._held:
            self.duplicates += 1
            return False, []
        if not self.in_window(seq):
            return False, []  # beyond what any honest sender has in flight
        self._held[seq] = plaintext
        ready = []
        while self.expected in self._held:
            ready.append(self._held.pop(self.expected))
            self.expected += 1
        return True, ready

    @property
    def has_gap(self) -> bool:
        return bool(self._held)

    def ack_info(self) -> AckInfo:
        sack = 0
        for seq in self._held:
            sack |= 1 << (seq - self.expected - 1)
        sack_bytes = (sack.bit_length() + 7) // 8
        return AckInfo(self.expected, sack, sack_bytes)
