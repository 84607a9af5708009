"""Frame bodies, sealed records, segments and the small integer codings they use.

    HS1    0x01 || Noise message 1            (client -> centre)
    HS2    0x02 || Noise message 2            (centre -> client)
    DATA   0x03 || seq8 || AEAD(plaintext)    AD = the two header bytes
    ACK    0x04 || aseq8 || AEAD(ack fields)  AD = the two header bytes
    NOTICE 0x05 || code                       unauthenticated hint (cannot decrypt HS1)

DATA frames are numbered 0, 1, 2... per direction and that number is the AEAD nonce;
ACK frames have their own counter, used as nonce 2^63 + n. Both travel truncated to 8
bits and are expanded against the highest number seen (as QUIC does), which is why a
sender keeps fewer than 128 frames in flight. A retransmission resends the identical
bytes: same nonce, same plaintext, so no nonce is ever reused for different data.

DATA plaintext: flags, then (if ACK) the cumulative ACK and a SACK bitmap, then
segments. Segments carry messages in order (MSG_HEAD starts one, MSG_DATA continues
it) and the centre's answers (STORED, DUPLICATE, REJECTED).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import PeerMisbehaved
from .messages import DIGEST_SIZE, Kind
from .noise import nonce_bytes

HS1, HS2, DATA, ACK, NOTICE = 0x01, 0x02, 0x03, 0x04, 0x05
HANDSHAKE_TYPES = frozenset({HS1, HS2, NOTICE})
"""Frames that always carry frame check v1: they come before the two ends agree on one."""
CAP_FRAME_CHECK_V2 = 0x01
"""HS1 capabilities bit 0: the device reads and writes frame check v2 and compact heads."""
HS2_FRAME_CHECK_V2 = 0x08
"""HS2 flag bit 3: the centre agrees; DATA and ACK frames use frame check v2, both ways."""
HS2_RESUME = 0x10
"""HS2 flag bit 4, with bit 3 only: resume entries follow (with bit 3 and without this
one, the resume list is left out, count included: a byte less in almost every call)."""
ACK_NONCE_BASE = 1 << 63
SEQ_BITS = 8
SEQ_MODULUS = 1 << SEQ_BITS
MAX_WINDOW = 56
"""Frames in flight: below half the truncated sequence space, and what 7 SACK bytes
can describe."""

FLAG_ACK = 0x01
FLAG_FIN = 0x10
SACK_SHIFT = 1
SACK_MASK = 0x0E
RESERVED_FLAGS = 0xE0

NOTICE_UNDECRYPTABLE = 1
NOTICE_TEXT = {
    NOTICE_UNDECRYPTABLE: "the centre could not decrypt our handshake (wrong centre public key?)"
}


class SegmentType(enum.IntEnum):
    MSG_HEAD = 0x10
    MSG_DATA = 0x11
    STORED = 0x20
    DUPLICATE = 0x21
    REJECTED = 0x22


class RejectReason(enum.IntEnum):
    RESTART = 1
    """Send it again from the start (bad offset, digest mismatch): not permanent."""
    TOO_LARGE = 2
    UNDECODABLE = 3
    UNSUPPORTED = 4

    @property
    def permanent(self) -> bool:
        return self is not RejectReason.RESTART


class RefusalReason(enum.IntEnum):
    UNKNOWN_DEVICE = 1
    REVOKED = 2
    STALE_COUNTER = 3
    UNSUPPORTED_VERSION = 4
    BUSY = 5

    @property
    def text(self) -> str:
        return self.name.lower().replace("_", " ")

    @classmethod
    def of(cls, value: int) -> RefusalReason | None:
        """The reason with this code, or None for one a later version added."""
        try:
            return cls(value)
        except ValueError:
            return None


# -- integers ----------------------------------------------------------------------------


def uleb(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Reader:
    """A cursor over bytes from the peer: every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise PeerMisbehaved("truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise PeerMisbehaved("truncated")
        value = self.data[self.pos : self.pos + count]
        self.pos += count
        return value

    def uleb(self, max_bits: int = 63) -> int:
        value = 0
        shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > max_bits:
                raise PeerMisbehaved("integer too long")


def expand(truncated: int, expected: int) -> int:
    """The full sequence number nearest `expected` whose low bits are `truncated`."""
    half = SEQ_MODULUS // 2
    candidate = (expected & ~(SEQ_MODULUS - 1)) | truncated
    if candidate + half <= expected:
        candidate += SEQ_MODULUS
    elif candidate > expected + half and candidate >= SEQ_MODULUS:
        candidate -= SEQ_MODULUS
    return candidate


# -- sealing -----------------------------------------------------------------------------


class Sealer:
    """One direction's transport key, with explicit nonces."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal(self, nonce: int, header: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(nonce_bytes(nonce), plaintext, header)

    def open(self, nonce: int, header: bytes, ciphertext: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(nonce_bytes(nonce), ciphertext, header)
        except InvalidTag:
            return None


class ReplayWindow:
    """Which DATA numbers arrived (authenticated), over the last `size` numbers."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self.highest = -1
        self._seen = 0  # bit i set: highest - i arrived

    def seen(self, seq: int) -> bool:
        if seq > self.highest:
            return False
        offset = self.highest - seq
        return offset >= self.size or bool(self._seen >> offset & 1)

    def mark(self, seq: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest
            self._seen = (self._seen << shift | 1) & ((1 << self.size) - 1)
            self.highest = seq
        else:
            self._seen |= 1 << (self.highest - seq)


# -- ACK fields --------------------------------------------------------------------------


@dataclass(frozen=True)
class AckInfo:
    cumulative: int
    """Every DATA frame below this number has arrived."""
    sack: int
    """Bit i: frame cumulative + 1 + i has arrived too."""
    sack_bytes: int


def encode_flags_and_ack(ack: AckInfo | None, fin: bool) -> bytes:
    flags = FLAG_FIN if fin else 0
    if ack is None:
        return bytes([flags])
    flags |= FLAG_ACK | (ack.sack_bytes << SACK_SHIFT)
    return bytes([flags, ack.cumulative % SEQ_MODULUS]) + ack.sack.to_bytes(
        ack.sack_bytes, "little"
    )


def decode_flags_and_ack(reader: Reader, expected_ack: int) -> tuple[AckInfo | None, bool]:
    flags = reader.byte()
    if flags & RESERVED_FLAGS:
        raise PeerMisbehaved("reserved flag bits set")
    fin = bool(flags & FLAG_FIN)
    if not flags & FLAG_ACK:
        return None, fin
    sack_bytes = (flags & SACK_MASK) >> SACK_SHIFT
    cumulative = expand(reader.byte(), expected_ack)
    sack = int.from_bytes(reader.take(sack_bytes), "little")
    return AckInfo(cumulative, sack, sack_bytes), fin


# -- segments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageHead:
    seq: int
    kind: Kind
    compressed: bool
    total: int
    offset: int
    digest: bytes | None
    chunk: bytes


@dataclass(frozen=True)
class MessageData:
    chunk: bytes


@dataclass(frozen=True)
class Answer:
    """STORED, DUPLICATE or REJECTED for a message number."""

    type: SegmentType
    seq: int
    reason: RejectReason | None = None


Segment = MessageHead | MessageData | Answer

_HEAD_COMPRESSED = 0x04
_HEAD_DIGEST = 0x08
_HEAD_OFFSET = 0x10
_HEAD_REST = 0x20
"""No chunk length: the chunk is the rest of the message (only once agreed)."""
_HEAD_KIND = 0x03


def head_size(seq: int, total: int, offset: int, digest: bool, chunk: int) -> int:
    """The size of a head with a chunk length (a compact one may be smaller)."""
    size = 1 + len(uleb(seq)) + 1 + len(uleb(total)) + len(uleb(chunk)) + chunk
    if offset:
        size += len(uleb(offset))
    if digest:
        size += DIGEST_SIZE
    return size


def encode_head(head: MessageHead, *, compact: bool = False) -> bytes:
    """`compact`: the peer agreed to heads without a chunk length when the chunk is the
    rest of the message (then one or two bytes shorter)."""
    rest = compact and head.offset + len(head.chunk) == head.total
    flags = int(head.kind) & _HEAD_KIND
    if head.compressed:
        flags |= _HEAD_COMPRESSED
    if head.digest is not None:
        flags |= _HEAD_DIGEST
    if head.offset:
        flags |= _HEAD_OFFSET
    if rest:
        flags |= _HEAD_REST
    out = bytearray([SegmentType.MSG_HEAD])
    out += uleb(head.seq)
    out.append(flags)
    out += uleb(head.total)
    if head.offset:
        out += uleb(head.offset)
    if head.digest is not None:
        out += head.digest
    if not rest:
        out += uleb(len(head.chunk))
    out += head.chunk
    return bytes(out)


def encode_data(chunk: bytes) -> bytes:
    return bytes([SegmentType.MSG_DATA]) + uleb(len(chunk)) + chunk


def encode_answer(answer: Answer) -> bytes:
    out = bytes([answer.type]) + uleb(answer.seq)
    if answer.type is SegmentType.REJECTED:
        assert answer.reason is not None
        out += bytes([answer.reason])
    return out


def decode_segments(reader: Reader, *, compact: bool = False) -> list[Segment]:
    """`compact`: heads without a chunk length (flag 0x20) were agreed on; otherwise
    that flag is as reserved as it was in every version before."""
    known = _HEAD_KIND | _HEAD_COMPRESSED | _HEAD_DIGEST | _HEAD_OFFSET
    if compact:
        known |= _HEAD_REST
    segments: list[Segment] = []
    while reader.left():
        code = reader.byte()
        if code == SegmentType.MSG_HEAD:
            seq = reader.uleb()
            flags = reader.byte()
            if flags & ~known:
                raise PeerMisbehaved("reserved message flags set")
            try:
                kind = Kind(flags & _HEAD_KIND)
            except ValueError:
                raise PeerMisbehaved("unknown message kind") from None
            total = reader.uleb()
            offset = reader.uleb() if flags & _HEAD_OFFSET else 0
            digest = reader.take(DIGEST_SIZE) if flags & _HEAD_DIGEST else None
            if flags & _HEAD_REST:
                if offset > total:
                    raise PeerMisbehaved("message chunk beyond its length")
                chunk = reader.take(total - offset)
            else:
                chunk = reader.take(reader.uleb(31))
            if offset + len(chunk) > total:
                raise PeerMisbehaved("message chunk beyond its length")
            segments.append(
                MessageHead(
                    seq,
                    kind,
                    bool(flags & _HEAD_COMPRESSED),
                    total,
                    offset,
                    digest,
                    chunk,
                )
            )
        elif code == SegmentType.MSG_DATA:
            segments.append(MessageData(reader.take(reader.uleb(31))))
        elif code in (SegmentType.STORED, SegmentType.DUPLICATE):
            segments.append(Answer(SegmentType(code), reader.uleb()))
        elif code == SegmentType.REJECTED:
            seq = reader.uleb()
            try:
                reason = RejectReason(reader.byte())
            except ValueError:
                raise PeerMisbehaved("unknown reject reason") from None
            segments.append(Answer(SegmentType.REJECTED, seq, reason))
        else:
            raise PeerMisbehaved(f"unknown segment type {code:#x}")
    return segments
