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
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.linesim import enrolled_pair as pair
from callhome.wire.endpoint import PROLOGUE
from callhome.wire.framing import (
    MAX_BODY,
    FrameCheck,
    FrameDecoder,
    cobs_decode,
    cobs_encode,
    crc16,
    crc32_with_length,
    encode_frame,
    stuff,
    unstuff,
    wire_length,
)
from callhome.wire.messages import (
    CURRENT_DICTIONARY,
    EncodedMessage,
    Kind,
    encode_message,
    load_dictionary,
)
from callhome.wire.noise import IKHandshake
from callhome.wire.records import (
    ACK,
    CAP_FRAME_CHECK_V2,
    DATA,
    HS1,
    HS2,
    HS2_FRAME_CHECK_V2,
    HS2_RESUME,
    NOTICE,
    uleb,
)
from callhome.wire.session import HandshakeCompleted, SecurityAlert, ServerSession
from callhome.wire.transfer import TransferConfig

from .framesim import frame_type, run_call, split_frames

DICTIONARY = load_dictionary(CURRENT_DICTIONARY)

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


# -- agreed per call; peers of before keep v1 --------------------------------------------

V2_CAP = CAP_FRAME_CHECK_V2


def report(size: int, seed: int = 0) -> EncodedMessage:
    rng = random.Random(seed)
    return encode_message(
        Kind.REPORT, {"component": "fan2", "data": rng.randbytes(size).hex()}, DICTIONARY
    )


def checks_on_the_wire(frames: list[bytes]) -> set[tuple[int, FrameCheck]]:
    """(frame type, check) of every frame; fails if a frame is neither v1 nor v2."""
    seen = set()
    for frame in frames:
        checked = cobs_decode(unstuff(frame.strip(b"\x00")))
        for check in FrameCheck:
            if check.compute(checked[: -check.size]) == checked[-check.size :]:
                seen.add((checked[0], check))
                break
        else:
            raise AssertionError(f"a frame with no valid check: {frame.hex()}")
    return seen


AGREEMENT = [
    pytest.param(V2_CAP, V2_CAP, FrameCheck.V2, id="current-both"),
    pytest.param(0, V2_CAP, FrameCheck.V1, id="device-of-before"),
    pytest.param(V2_CAP, 0, FrameCheck.V1, id="centre-of-before"),
    pytest.param(0, 0, FrameCheck.V1, id="both-of-before"),
]


@pytest.mark.parametrize(("device_caps", "centre_caps", "expected"), AGREEMENT)
def test_the_check_is_agreed_per_call_and_a_peer_of_before_keeps_v1(
    device_caps, centre_caps, expected
):
    """Capabilities 0 is what an end of before sends and does: a device of before sends
    caps 0 and reads a resume count in every HS2; a centre of before ignores the caps
    byte, never sets HS2 flag 0x08 and refuses message heads with flag 0x20 (a call that
    completes shows that neither was sent to it)."""
    device, centre = pair(report(100), report(5000, 1), report(20, 2))
    outcome = run_call(
        device, centre, client_capabilities=device_caps, server_capabilities=centre_caps
    )
    assert outcome.closed and outcome.failure is None and centre.store_count == 3
    assert outcome.client is not None and outcome.server is not None
    assert outcome.client.frame_check is expected and outcome.server.frame_check is expected
    seen = checks_on_the_wire(outcome.wire_up + outcome.wire_down)
    assert {check for kind, check in seen if kind in (HS1, HS2, NOTICE)} == {FrameCheck.V1}
    assert {check for kind, check in seen if kind in (DATA, ACK)} == {expected}
    for session in (outcome.client, outcome.server):
        assert session.stats.crc_failures == 0 and session.stats.auth_failures == 0


def _hs2_flags_and_rest(device_caps: int, resume: dict[int, bytes]) -> tuple[int, bytes]:
    device, centre = pair(report(10))
    handshake = IKHandshake(
        initiator=True,
        static_private=device.static_private,
        remote_static=centre.public,
        prologue=PROLOGUE,
    )
    payload = bytes([1, device_caps, 2]) + b"\x12\x34\x56\x78" + b"\x05"
    server = ServerSession(static_private=centre.static_private)
    server.start(0.0)
    server.receive_data(encode_frame(bytes([HS1]) + handshake.write_message_1(payload)), 0.1)
    server.accept(0.1, clock_ms=300, resume=resume)
    (answer,) = split_frames(server.data_to_send())
    (body,) = FrameDecoder().feed(answer)  # check v1, as every device reads it
    plain = handshake.read_message_2(body[1:])
    return plain[0], plain[1:]


def test_hs2_to_a_device_of_before_is_the_layout_it_reads():
    flags, rest = _hs2_flags_and_rest(0, {})
    assert not flags & HS2_FRAME_CHECK_V2
    assert rest == uleb(300) + b"\x00"  # clock, resume count 0: as ever
    flags, rest = _hs2_flags_and_rest(0, {1: b"abc"})
    assert not flags & (HS2_FRAME_CHECK_V2 | HS2_RESUME)
    assert rest == uleb(300) + b"\x01\x01\x03"


def test_hs2_to_a_current_device_agrees_and_leaves_out_an_empty_resume_list():
    flags, rest = _hs2_flags_and_rest(V2_CAP, {})
    assert flags & HS2_FRAME_CHECK_V2 and not flags & HS2_RESUME
    assert rest == uleb(300)
    flags, rest = _hs2_flags_and_rest(V2_CAP, {1: b"abc"})
    assert flags & HS2_FRAME_CHECK_V2 and flags & HS2_RESUME
    assert rest == uleb(300) + b"\x01\x01\x03"


@pytest.mark.parametrize(("device_caps", "centre_caps", "expected"), AGREEMENT)
def test_a_cut_message_resumes_with_any_mix_of_peers(device_caps, centre_caps, expected):
    device, centre = pair(report(6000, 3))
    sent = []

    def cut(frame: bytes):
        if frame_type(frame) == DATA:
            sent.append(frame)
            if len(sent) > 2:
                return []  # the line dies after two records
        return [(0.0, frame)]

    first = run_call(
        device,
        centre,
        up=cut,
        client_capabilities=device_caps,
        server_capabilities=centre_caps,
        config=TransferConfig(line_rate=2400, idle_timeout=60.0, initial_frame=256),
    )
    assert not first.closed and centre.store_count == 0 and centre.partial
    second = run_call(
        device, centre, client_capabilities=device_caps, server_capabilities=centre_caps
    )
    assert second.closed and centre.store_count == 1
    (completed,) = [e for e in second.client_events if isinstance(e, HandshakeCompleted)]
    assert completed.resume and second.client is not None
    assert second.client.frame_check is expected


@pytest.mark.parametrize(("device_caps", "alerts"), [(0, True), (V2_CAP, False)], ids=["v1", "v2"])
def test_a_closing_delimiter_hit_by_noise_is_noise_not_an_attack(device_caps, alerts):
    """Every DATA frame first arrives with its closing 0x00 turned into 0x01 (the genuine
    copy right behind it). Under v1 the damaged copy passes its CRC and fails the AEAD:
    a false attack signal per frame. Under v2 it is a line error, as noise should be."""
    device, centre = pair(report(3000))

    def hit(frame: bytes):
        if frame_type(frame) == DATA:
            return [(0.0, frame[:-1] + b"\x01"), (0.0, frame)]
        return [(0.0, frame)]

    outcome = run_call(device, centre, up=hit, client_capabilities=device_caps)
    assert outcome.closed and centre.store_count == 1 and outcome.server is not None
    stats = outcome.server.stats
    security = [e for e in outcome.server_events if isinstance(e, SecurityAlert)]
    if alerts:
        assert stats.auth_failures > 0 and security
    else:
        assert stats.auth_failures == 0 and not security and stats.crc_failures > 0
