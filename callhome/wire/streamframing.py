"""Frames on a reliable byte stream (TCP): a two-byte length, then the body.

    stream frame = length (2 bytes, big-endian) || body

The modem framing (`framing.py`) exists for a line that loses, damages and invents
bytes: COBS delimiters to find the next frame after noise, a CRC to tell noise from
forgery, `+` stuffing against the Hayes escape. TCP does none of that to us: it delivers
every byte once and in order, or the connection ends. So over TCP the body is the same
(handshake, DATA and ACK frames, authenticated one layer up) and only the envelope
differs: no per-byte encoding at all, slices of a buffer. A length outside 1..MAX_BODY
means the peer does not speak this protocol (an HTTP request, a port scan): a stream
has no delimiter to resynchronise on, so the decoder raises and the session ends.
"""

from __future__ import annotations

from collections.abc import Iterator

from .errors import PeerMisbehaved
from .framing import MAX_BODY, FrameStats

HEADER = 2


def encode_stream_frame(body: bytes) -> bytes:
    if not body or len(body) > MAX_BODY:
        raise ValueError(f"frame body must be 1..{MAX_BODY} bytes")
    return len(body).to_bytes(HEADER, "big") + body


def stream_wire_length(body_length: int) -> int:
    return HEADER + body_length


class StreamDecoder:
    """Bytes in any chunking -> frame bodies; the same `stats` as `FrameDecoder` (only
    `frames`, `malformed` and `noise_bytes` ever move)."""

    def __init__(self) -> None:
        self.stats = FrameStats()
        self._buffer = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._broken:
            self.stats.noise_bytes += len(data)
            return
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        try:
            while end - start >= HEADER:
                length = int.from_bytes(buffer[start : start + HEADER], "big")
                if not 0 < length <= MAX_BODY:
                    self._broken = True
                    self.stats.malformed += 1
                    self.stats.noise_bytes += end - start
                    buffer.clear()
                    start = end = 0
                    raise PeerMisbehaved(f"not a call-home stream (frame length {length})")
                stop = start + HEADER + length
                if stop > end:
                    break
                self.stats.frames += 1
                body = bytes(buffer[start + HEADER : stop])
                start = stop
                yield body
        finally:
            del buffer[:start]
