"""The frame check against single-bit errors and truncation, at every position.

Check v1 (CRC-16/CCITT, no final XOR, no length) has two holes, both from one bit
error (docs/protocol.md §1a):

- a body whose CRC ends in 0x00 ends its COBS with a code byte 0x01: flipped to 0x00,
  the frame decodes to the body less its last byte with a CRC that checks (1 body in
  256; cutting the frame just before that byte does the same);
- the closing 0x00 of any frame flipped to 0x01, with the next frame's opening 0x00
  behind it, decodes to the body plus one byte with a CRC that checks (every frame).

Check v2 (CRC-32 over a 2-byte length and the body) closes both: every single-bit flip
and every cut of a frame loses that frame and only that frame, for every body tried.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.wire.framing import (
    MAX_BODY,
    FrameCheck,
    FrameDecoder,
    cobs_encode,
    crc16,
    crc32_with_length,
    encode_frame,
    stuff,
    wire_length,
)
from callhome.wire.records import DATA, HS1, HS2, NOTICE

from .framesim import split_frames

BEFORE = b"\x03\x07 the frame before"
AFTER = b"\x03\x09 the frame after"


def _crc16_ends_in_zero() -> bytes:
    return next(
        b for i in itertools.count() if crc16(b := b"\x03" + i.to_bytes(4, "big") * 8) & 0xFF == 0
    )


def _crc32_ends_in_zero() -> bytes:
    return next(
        b
        for i in itertools.count()
        if crc32_with_length(b := b"\x03" + i.to_bytes(4, "big") * 8) & 0xFF == 0
    )


BODIES = [
    b"\x03",
    b"\x04\x00",
    b"\x03\x00" + bytes(range(1, 40)),
    b"\x03" + b"+" * 60,
    b"\x03" + bytes(252),
    b"\x03" + b"\xa5" * 253,
    b"\x03" + b"\x5a" * 254,
    b"\x03" + bytes((i * 37 + 11) % 256 for i in range(700)),
    _crc16_ends_in_zero(),
    _crc32_ends_in_zero(),
]


def decode(check: FrameCheck, wire: bytes) -> list[bytes]:
    return list(FrameDecoder(check=check).feed(wire))


def single_bit_flips(frame: bytes):
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(damaged)


def surrounded(check: FrameCheck, middle: bytes) -> bytes:
    return encode_frame(BEFORE, check) + middle + encode_frame(AFTER, check)


@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B-{b[-4:].hex()}")
def test_v2_every_single_bit_flip_loses_the_frame_and_only_it(body):
    frame = encode_frame(body, FrameCheck.V2)
    for bit, damaged in single_bit_flips(frame):
        got = decode(FrameCheck.V2, surrounded(FrameCheck.V2, damaged))
        assert got == [BEFORE, AFTER], f"bit {bit} of {len(frame)}"


@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B-{b[-4:].hex()}")
def test_v2_every_cut_loses_the_frame_and_only_it(body):
    frame = encode_frame(body, FrameCheck.V2)
    for cut in range(1, len(frame) - 1):
        got = decode(FrameCheck.V2, surrounded(FrameCheck.V2, frame[:cut]))
        assert got == [BEFORE, AFTER], f"cut at {cut} of {len(frame)}"
    # without its closing delimiter only: the next frame's opening one closes it
    got = decode(FrameCheck.V2, surrounded(FrameCheck.V2, frame[:-1]))
    assert got == [BEFORE, body, AFTER]


def _v1_hole(body: bytes, got: list[bytes]) -> str | None:
    """Which of the two v1 holes explains a wrong delivery (None: neither)."""
    if got == [BEFORE, body[:-1], AFTER] and crc16(body) & 0xFF == 0:
        return "final code byte"
    if got == [BEFORE, body + bytes([crc16(body) >> 8]), AFTER]:
        return "closing delimiter"
    return None


@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B-{b[-4:].hex()}")
def test_v1_single_bit_flips_open_exactly_the_two_known_holes(body):
    """Why v1 had to go: the same damage as above, with check v1. Every flip that gets
    through is one of the two holes, and the closing-delimiter one is open for every
    frame. The damaged bytes are exactly those of a valid v1 frame of another body, so
    no v1 decoder can refuse them: only a new check can."""
    frame = encode_frame(body, FrameCheck.V1)
    holes = set()
    for bit, damaged in single_bit_flips(frame):
        got = decode(FrameCheck.V1, surrounded(FrameCheck.V1, damaged))
        if got != [BEFORE, AFTER]:
            hole = _v1_hole(body, got)
            assert hole is not None, f"bit {bit}: {got}"
            holes.add(hole)
    expected = {"closing delimiter"}
    if crc16(body) & 0xFF == 0:
        expected.add("final code byte")
    assert holes == expected


def test_v1_the_damaged_frame_is_a_valid_frame_of_another_body():
    for body in BODIES:
        frame = encode_frame(body, FrameCheck.V1)
        flipped = frame[:-1] + b"\x01"  # closing delimiter hit, next frame's 0x00 behind
        longer = body + bytes([crc16(body) >> 8])
        assert flipped + b"\x00" == encode_frame(longer, FrameCheck.V1)
    body = _crc16_ends_in_zero()
    frame = encode_frame(body, FrameCheck.V1)
    assert frame.endswith(b"\x01\x00")
    assert frame[:-2] + b"\x00" == encode_frame(body[:-1], FrameCheck.V1)


# -- the property: any body, any one-bit error or cut ------------------------------------

_bodies = st.one_of(
    st.binary(min_size=1, max_size=600),
    st.lists(st.sampled_from([0x00, 0x01, 0x2B, 0xFF, 0x03]), min_size=1, max_size=300).map(bytes),
)


@settings(max_examples=300, deadline=None)
@given(_bodies, st.data())
def test_v2_property_a_one_bit_error_or_a_cut_never_delivers_a_wrong_body(body, data):
    frame = encode_frame(body, FrameCheck.V2)
    if data.draw(st.booleans(), label="flip"):
        bit = data.draw(st.integers(0, len(frame) * 8 - 1), label="bit")
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        middle = bytes(damaged)
    else:
        middle = frame[: data.draw(st.integers(1, len(frame) - 2), label="cut")]
    assert decode(FrameCheck.V2, surrounded(FrameCheck.V2, middle)) == [BEFORE, AFTER]


@settings(max_examples=100, deadline=None)
@given(st.lists(_bodies, min_size=1, max_size=5), st.sampled_from(list(FrameCheck)))
def test_round_trip_and_wire_length_for_both_checks(bodies, check):
    bodies = [b[:MAX_BODY] for b in bodies]
    wire = b"".join(encode_frame(b, check) for b in bodies)
    assert decode(check, wire) == bodies
    for body, frame in zip(bodies, split_frames(wire), strict=True):
        assert len(frame) >= wire_length(len(body), check)  # more only by stuffing
        if b"++" not in frame:
            assert len(frame) == wire_length(len(body), check)


def test_v2_costs_two_bytes_a_frame_and_is_what_the_spec_says():
    assert wire_length(100, FrameCheck.V2) == wire_length(100, FrameCheck.V1) + 2
    # CRC-32/ISO-HDLC's check value, and the length goes in first, big-endian
    assert crc32_with_length(b"") == 0x41D912FF  # crc32(b"\x00\x00")
    body = b"123456789"
    import zlib

    assert crc32_with_length(body) == zlib.crc32(b"\x00\x09" + body)
    assert encode_frame(body, FrameCheck.V2) == (
        b"\x00"
        + stuff(cobs_encode(body + zlib.crc32(b"\x00\x09" + body).to_bytes(4, "big")))
        + b"\x00"
    )


def test_handshake_frames_keep_v1_in_a_v2_decoder():
    """HS1, HS2 and NOTICE come before the two ends agree: a decoder switched to v2
    still reads them with v1 (and old peers always could), and reads DATA with v2."""
    decoder = FrameDecoder(check=FrameCheck.V2, v1_types={HS1, HS2, NOTICE})
    bodies = [bytes([HS2]) + b"answer", bytes([NOTICE, 1]), bytes([DATA, 0]) + b"record"]
    wire = b"".join(
        encode_frame(b, FrameCheck.V2 if b[0] == DATA else FrameCheck.V1) for b in bodies
    )
    assert list(decoder.feed(wire)) == bodies
    # the same DATA frame with v1 is noise to it
    assert list(decoder.feed(encode_frame(bodies[2], FrameCheck.V1))) == []
    assert decoder.stats.crc_failures == 1
