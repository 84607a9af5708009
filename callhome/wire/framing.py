"""Frames on the byte stream: COBS, a frame check per frame, 0x00 between frames.

    wire frame = 0x00 || stuff(COBS(body || check)) || 0x00
    check v1   = CRC-16/CCITT-FALSE(body)                      2 bytes
    check v2   = CRC-32(length(body), 2 bytes big-endian || body) 4 bytes

Check v1 has two holes that a single bit error opens (docs/protocol.md §1a): a frame
whose CRC ends in 0x00 ends its COBS with a code byte 0x01, and flipped to 0x00 the
frame decodes to its body less the last byte with a CRC that checks; and any frame
whose closing 0x00 is flipped to 0x01 (the next frame's opening 0x00 behind it) decodes
to its body plus one byte with a CRC that checks. Both come from CRC-16/CCITT having no
final XOR, so that a message followed by its own CRC checks as a longer one; the damaged
wire bytes are exactly those of a valid v1 frame of another body, so no v1 decoder can
tell. Check v2 puts the body length in the CRC input and has a final XOR: neither a
shorter nor a longer reading checks, except by chance (2^-32). A call uses v2 for its
DATA and ACK frames when both ends say they can (HS1 capability bit 0, HS2 flag 0x08);
handshake and NOTICE frames always use v1, since they come before that agreement.

COBS removes every 0x00 from the frame, so 0x00 always means "frame boundary": after
garbage or a lost byte the decoder is back in step at the next 0x00. Its overhead is
fixed (one byte per 254, plus the delimiters), unlike HDLC's byte stuffing which can
double a frame of unlucky data. The leading 0x00 costs a byte per frame and buys this:
when noise eats a frame's closing delimiter, or a frame is cut short, or the line
carried junk while idle, the damage stops at the next frame's opening delimiter
instead of taking that frame with it.

`stuff` is the escape guard: after every two consecutive `+` it inserts 0x01, so the
wire never carries `+++` and no pause can ever turn our data into a Hayes escape (see
docs/protocol.md for the proof). On random data it costs about one byte in 65,536.

The check only sorts line noise (dropped silently, counted, repaired by retransmission)
from frames that arrived as sent; authentication is the AEAD's job one layer up.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Collection, Iterator
from dataclasses import dataclass

DELIMITER = 0x00
PLUS = 0x2B
STUFFED = 0x01
MAX_BODY = 2048
"""Largest frame body (before COBS, CRC and stuffing) either side may send, and the
largest the decoder accepts (longer ones are dropped as `oversize`). The transfer needs
at most 1,051 (a 1,024-byte payload, header, ACK fields, tag), a full HS2 348; the rest
is room for larger frames on fast error-corrected lines. docs/protocol.md §1."""
_MAX_COBS = MAX_BODY + 4 + (MAX_BODY + 4) // 254 + 1
MAX_WIRE = _MAX_COBS + _MAX_COBS // 2
"""Longest run of non-zero bytes the decoder buffers before declaring noise: a maximal
body after a 4-byte check, COBS and the worst case of stuffing (one byte per two)."""


class FrameCheck(enum.IntEnum):
    V1 = 1
    """CRC-16/CCITT-FALSE of the body: what every peer reads; handshake frames."""
    V2 = 2
    """CRC-32 of the body's length (2 bytes) and the body: negotiated per call."""

    @property
    def size(self) -> int:
        return 2 if self is FrameCheck.V1 else 4

    def compute(self, body: bytes) -> bytes:
        if self is FrameCheck.V1:
            return crc16(body).to_bytes(2, "big")
        return crc32_with_length(body).to_bytes(4, "big")


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), as XMODEM-CRC and V.42 use."""
    return binascii.crc_hqx(data, 0xFFFF)


def crc32_with_length(body: bytes) -> int:
    """CRC-32 (ISO-HDLC: as zlib, Ethernet and PNG; init and final XOR 0xFFFFFFFF) of
    the body's length as 2 bytes big-endian, then the body. The length is checked, not
    sent: the receiver knows it from the delimiters."""
    return binascii.crc32(body, binascii.crc32(len(body).to_bytes(2, "big")))


def cobs_encode(data: bytes) -> bytes:
    """COBS by slices: one block per run of non-zero bytes (split at 254), no loop over
    bytes in Python."""
    pieces: list[bytes] = []
    for run in data.split(b"\x00"):
        start = 0
        while len(run) - start >= 254:
            pieces.append(b"\xff")
            pieces.append(run[start : start + 254])
            start += 254
        pieces.append(bytes((len(run) - start + 1,)))
        pieces.append(run[start:] if start else run)
    return b"".join(pieces)


class CobsError(ValueError):
    pass


def cobs_decode(data: bytes) -> bytes:
    """One step per block, not per byte: a zero anywhere is an error, found by `find`."""
    if data.find(0) >= 0:
        raise CobsError("zero byte inside a COBS frame")
    pieces: list[bytes] = []
    index = 0
    length = len(data)
    while index < length:
        code = data[index]
        end = index + code
        if end > length:
            raise CobsError("COBS block runs past the end of the frame")
        pieces.append(data[index + 1 : end])
        index = end
        if code < 255 and index < length:
            pieces.append(b"\x00")
    return b"".join(pieces)


def stuff(data: bytes) -> bytes:
    """Insert 0x01 after every `++`: the output never contains `+++`. (Inserting after
    each pair of a run of `+` is what `replace` does: it scans left to right without
    overlap, and the inserted byte ends the run.)"""
    if b"++" not in data:
        return data
    return data.replace(b"++", b"++\x01")


def unstuff(data: bytes) -> bytes:
    if b"++" not in data:
        return data
    # in stuffed data every run of `+` is at most two long and every pair is followed by
    # 0x01, so each `++ 0x01` is a stuffed pair; the data was well stuffed exactly when
    # stuffing the result gives it back
    out = data.replace(b"++\x01", b"++")
    if out.replace(b"++", b"++\x01") != data:
        raise CobsError("`++` not followed by the stuffing byte")
    return out


def encode_frame(body: bytes, check: FrameCheck = FrameCheck.V1) -> bytes:
    if not body or len(body) > MAX_BODY:
        raise ValueError(f"frame body must be 1..{MAX_BODY} bytes")
    checked = body + check.compute(body)
    return b"\x00" + stuff(cobs_encode(checked)) + b"\x00"


def wire_length(body_length: int, check: FrameCheck = FrameCheck.V1) -> int:
    """Bytes on the wire for a body of this length (without the rare stuffing byte)."""
    checked = body_length + check.size
    return 1 + checked + 1 + checked // 254 + 1


@dataclass
class FrameStats:
    frames: int = 0
    crc_failures: int = 0
    """Frames that failed their check (v1 or v2): line noise."""
    malformed: int = 0
    """COBS or stuffing violations: line noise, like CRC failures."""
    oversize: int = 0
    noise_bytes: int = 0
    damaged_bytes: int = 0
    """Bytes of well-formed frames that failed their CRC: a peer's frames hit by noise,
    not someone else's text."""

    @property
    def line_errors(self) -> int:
        return self.crc_failures + self.malformed + self.oversize


class FrameDecoder:
    """Bytes in any chunking -> frame bodies that passed their check.

    `check` is the check of every frame but those whose first byte (the frame type) is
    in `v1_types`, which always carry check v1; the session sets `check` to V2 once both
    ends have agreed. A frame is judged when the decoder reaches its closing delimiter,
    so a change of `check` between two bodies applies to the next one."""

    def __init__(
        self,
        max_wire: int = MAX_WIRE,
        *,
        check: FrameCheck = FrameCheck.V1,
        v1_types: Collection[int] = (),
    ) -> None:
        self.max_wire = max_wire
        self.check = check
        self.v1_types = frozenset(v1_types)
        self.stats = FrameStats()
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        start = 0
        while start < len(data):
            end = data.find(b"\x00", start)
            if end < 0:
                self._extend(data[start:])
                return
            self._extend(data[start:end])
            body = self._finish()
            if body is not None:
                yield body
            start = end + 1

    def _extend(self, chunk: bytes) -> None:
        if self._discarding:
            self.stats.noise_bytes += len(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > self.max_wire:
            self.stats.oversize += 1
            self.stats.noise_bytes += len(self._buffer)
            self._buffer.clear()
            self._discarding = True

    def _finish(self) -> bytes | None:
        if self._discarding:
            self._discarding = False
            return None
        raw = bytes(self._buffer)
        self._buffer.clear()
        if not raw:
            return None  # 0x00 0x00: an empty frame is just a delimiter
        try:
            checked = cobs_decode(unstuff(raw))
        except CobsError:
            self.stats.malformed += 1
            self.stats.noise_bytes += len(raw)
            return None
        check = FrameCheck.V1 if checked[:1] and checked[0] in self.v1_types else self.check
        size = check.size
        body = checked[:-size]
        if len(checked) <= size or check.compute(body) != checked[-size:]:
            self.stats.crc_failures += 1
            self.stats.noise_bytes += len(raw)
            self.stats.damaged_bytes += len(raw) + 1
            return None
        if len(body) > MAX_BODY:
            # stuffing left room in the raw limit for up to 3,073 bytes: refuse them
            self.stats.oversize += 1
            self.stats.noise_bytes += len(raw)
            return None
        self.stats.frames += 1
        return body
