"""Framing, records and messages: round trips, bad input, bounds, and the escape guard."""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.wire.errors import MessageError, PeerMisbehaved
from callhome.wire.framing import (
    MAX_BODY,
    MAX_WIRE,
    FrameCheck,
    FrameDecoder,
    cobs_decode,
    cobs_encode,
    crc16,
    encode_frame,
    stuff,
    unstuff,
    wire_length,
)
from callhome.wire.messages import (
    MAX_CONTENT,
    Dictionary,
    Kind,
    decode_body,
    decode_content,
    encode_message,
    load_dictionary,
)
from callhome.wire.records import (
    AckInfo,
    Answer,
    MessageHead,
    Reader,
    RejectReason,
    ReplayWindow,
    SegmentType,
    decode_flags_and_ack,
    decode_segments,
    encode_answer,
    encode_data,
    encode_flags_and_ack,
    encode_head,
    expand,
    uleb,
)

# -- framing -----------------------------------------------------------------------------


@given(st.binary(max_size=3000))
def test_cobs_round_trip_and_no_zeros(data):
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + 1 + len(data) // 254


@given(st.binary(max_size=600).map(lambda b: b.replace(b"\x00", b"+")))
def test_stuffing_round_trip_never_has_three_plus(data):
    stuffed = stuff(data)
    assert b"+++" not in stuffed
    assert unstuff(stuffed) == data


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=1, max_size=MAX_BODY), min_size=1, max_size=4))
def test_no_frame_sequence_ever_contains_plus_plus_plus(bodies):
    """The escape guard: whatever the bodies, the wire never carries `+++`."""
    wire = b"".join(encode_frame(body) for body in bodies)
    assert b"+++" not in wire


def test_worst_case_plus_bodies():
    wire = encode_frame(b"+" * MAX_BODY)
    assert b"+++" not in wire
    assert list(FrameDecoder().feed(wire)) == [b"+" * MAX_BODY]


@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5), st.data())
def test_decoder_any_chunking(bodies, data):
    wire = b"".join(encode_frame(body) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = FrameDecoder()
    out = []
    previous = 0
    for cut in [*cuts, len(wire)]:
        out.extend(decoder.feed(wire[previous:cut]))
        previous = cut
    assert out == bodies
    assert decoder.stats.line_errors == 0


def test_decoder_every_split_point_of_two_frames():
    wire = encode_frame(b"first frame ++ body") + encode_frame(bytes(range(1, 40)))
    for split in range(len(wire) + 1):
        decoder = FrameDecoder()
        got = list(decoder.feed(wire[:split])) + list(decoder.feed(wire[split:]))
        assert got == [b"first frame ++ body", bytes(range(1, 40))]


def test_garbage_is_counted_and_the_decoder_resynchronises():
    decoder = FrameDecoder()
    good = encode_frame(b"hello")
    out = list(decoder.feed(b"\x17garbage\xff\x00" + good + b"NO CARRIER\r\n\x00" + good))
    assert out == [b"hello", b"hello"]
    assert decoder.stats.crc_failures + decoder.stats.malformed == 2


def _body_whose_crc_does_not_end_in_zero() -> bytes:
    # check v1 only: a CRC-16 ending in 0x00 is one of its holes (tests/wire/test_frame_check.py)
    while not crc16(body := os.urandom(200)) & 0xFF:
        pass
    return body


@pytest.mark.parametrize("check", list(FrameCheck))
def test_bit_flips_fail_the_check(check):
    if check is FrameCheck.V1:
        # v1 avoids its two holes: 1 body in 256, and the closing delimiter
        body = _body_whose_crc_does_not_end_in_zero()
        frame = encode_frame(body, check)
        bits = range(0, (len(frame) - 1) * 8, 7)
    else:
        body = os.urandom(200)  # any body, every byte
        frame = encode_frame(body, check)
        bits = range(0, len(frame) * 8, 7)
    after = encode_frame(b"after", check)
    for bit in bits:
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        out = list(FrameDecoder(check=check).feed(bytes(damaged) + after))
        assert out == [b"after"]


def test_oversize_frames_are_bounded():
    decoder = FrameDecoder(max_wire=100)
    out = list(decoder.feed(b"\x01" * 10_000))
    out += list(decoder.feed(b"\x00" + encode_frame(b"ok")))
    assert out == [b"ok"]
    assert decoder.stats.oversize == 1
    assert len(decoder._buffer) == 0


@given(st.binary(max_size=5000))
def test_decoder_never_raises_on_noise(noise):
    decoder = FrameDecoder()
    for body in decoder.feed(noise):
        assert body


def test_wire_length_formula():
    for size in (1, 100, 253, 254, 600, 1024, MAX_BODY):
        body = bytes([1]) * size
        assert len(encode_frame(body)) == wire_length(size)
    with pytest.raises(ValueError):
        encode_frame(b"")
    with pytest.raises(ValueError):
        encode_frame(b"x" * (MAX_BODY + 1))


# -- records -----------------------------------------------------------------------------


@given(st.integers(0, 2**63 - 1))
def test_uleb_round_trip(value):
    assert Reader(uleb(value)).uleb() == value


def test_reader_bounds():
    with pytest.raises(PeerMisbehaved):
        Reader(b"\x80\x80").uleb()
    with pytest.raises(PeerMisbehaved):
        Reader(b"\xff" * 12).uleb()
    with pytest.raises(PeerMisbehaved):
        Reader(b"ab").take(3)


@given(st.integers(0, 10**6), st.integers(-60, 60))
def test_expand_recovers_nearby_numbers(expected, delta):
    actual = expected + delta
    if actual >= 0:
        assert expand(actual & 0xFF, expected) == actual


def test_replay_window():
    window = ReplayWindow(size=16)
    for seq in (0, 1, 3, 10):
        assert not window.seen(seq)
        window.mark(seq)
    assert window.seen(3) and not window.seen(2) and window.seen(10)
    window.mark(40)
    assert window.seen(3)  # fell out of the window: too old counts as seen
    assert not window.seen(39) and window.seen(40)


@given(st.booleans(), st.integers(0, 5000), st.integers(0, 2**56 - 1))
def test_flags_and_ack_round_trip(fin, cumulative, sack):
    ack = AckInfo(cumulative, sack, (sack.bit_length() + 7) // 8)
    reader = Reader(encode_flags_and_ack(ack, fin))
    decoded, decoded_fin = decode_flags_and_ack(reader, cumulative)
    assert decoded == ack and decoded_fin == fin and not reader.left()


@given(
    st.integers(0, 2**40),
    st.sampled_from(list(Kind)),
    st.booleans(),
    st.integers(0, 3000),
    st.binary(max_size=300),
    st.booleans(),
)
def test_segments_round_trip(seq, kind, compressed, extra, chunk, digest):
    total = len(chunk) + extra
    head = MessageHead(
        seq, kind, compressed, total, extra, os.urandom(16) if digest else None, chunk
    )
    answers = [
        Answer(SegmentType.STORED, seq),
        Answer(SegmentType.DUPLICATE, seq + 1),
        Answer(SegmentType.REJECTED, 7, RejectReason.TOO_LARGE),
    ]
    data = encode_head(head) + encode_data(chunk) + b"".join(encode_answer(a) for a in answers)
    segments = decode_segments(Reader(data))
    assert segments[0] == head
    assert segments[1].chunk == chunk
    assert segments[2:] == answers


@given(st.binary(max_size=200))
def test_segment_decoder_only_raises_protocol_errors(noise):
    try:
        decode_segments(Reader(noise))
    except PeerMisbehaved:
        pass


# -- messages ----------------------------------------------------------------------------


def test_dictionary_ships_and_compresses_a_report():
    dictionary = load_dictionary(1)
    assert dictionary is not None and len(dictionary.data) == 32 * 1024
    content = {
        "severity": "warning",
        "component": "psu1",
        "state": "degraded",
        "message": "psu1 reports degraded",
        "data": {"psu1": {"volts": 11.9}},
    }
    message = encode_message(Kind.REPORT, content, dictionary)
    assert message.compressed and len(message.body) < message.content_size / 2
    assert decode_content(decode_body(message.body, True, dictionary)) == content
    assert load_dictionary(99) is None


def test_dictionaries_load_through_importlib_resources_when_not_plain_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read from the file next to the module (importlib.resources stays out of an idle
    agent); a package that is not plain files (a zip) still finds them."""
    from callhome.wire import messages

    plain = load_dictionary(2)
    assert plain is not None
    load_dictionary.cache_clear()
    monkeypatch.setattr(messages, "__file__", "/nonexistent/callhome/wire/messages.py")
    try:
        assert load_dictionary(2) == plain
        assert load_dictionary(99) is None
    finally:
        load_dictionary.cache_clear()


def test_compression_only_when_smaller():
    dictionary = load_dictionary(1)
    message = encode_message(Kind.REPORT, {"blob": os.urandom(4000)}, dictionary)
    assert not message.compressed


def test_decompression_is_bounded():
    dictionary = Dictionary(1, b"")
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"\x00" * (MAX_CONTENT + 1000)) + bomb.flush()
    with pytest.raises(MessageError, match="exceeds"):
        dictionary.decompress(payload)
    with pytest.raises(MessageError):
        dictionary.decompress(b"\xff\xff\xff garbage")
    with pytest.raises(MessageError, match="dictionary"):
        decode_body(b"x", True, None)


@given(st.binary(max_size=300))
def test_content_decoder_only_raises_message_errors(data):
    try:
        decode_content(data)
    except MessageError:
        pass


def test_content_must_be_a_map():
    with pytest.raises(MessageError):
        decode_content(b"\x01")
    with pytest.raises(MessageError):
        encode_message(Kind.REPORT, ["not", "a", "map"], None)  # type: ignore[arg-type]


def test_kind_labels():
    assert Kind.from_label("line-test") is Kind.LINE_TEST
    assert Kind.INVENTORY.label == "inventory"
    with pytest.raises(ValueError):
        Kind.from_label("bogus")


def test_the_shipped_dictionary_is_what_the_builder_makes():
    from benchmarks.build_dictionary import build

    assert load_dictionary(1).data == build()


def test_the_worked_example_in_the_docs_is_current(capsys):
    from pathlib import Path

    from benchmarks.worked_example import main

    main()
    printed = capsys.readouterr().out
    document = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for line in printed.splitlines():
        if line.startswith("    "):
            assert line in document, line


def _raw_frame(body: bytes) -> bytes:
    """A frame as a peer that ignores our size limit would send it."""
    return b"\x00" + stuff(cobs_encode(body + crc16(body).to_bytes(2, "big"))) + b"\x00"


@pytest.mark.parametrize("fill", [b"x", b"+", b"\x00"])
def test_the_decoder_takes_bodies_up_to_max_body_and_no_more(fill):
    """Issue 10 defect 10: docs/protocol.md says bodies over 2,048 bytes are dropped as
    oversize; the decoder used to take up to 3,073."""
    assert MAX_BODY == 2048
    for size in (MAX_BODY - 1, MAX_BODY):
        decoder = FrameDecoder()
        assert list(decoder.feed(_raw_frame(fill * size))) == [fill * size]
    for size in (MAX_BODY + 1, 3073, 3074, 5000):
        decoder = FrameDecoder()
        wire = _raw_frame(fill * size) + encode_frame(b"next")
        assert list(decoder.feed(wire)) == [b"next"]
        assert decoder.stats.oversize == 1 and decoder.stats.crc_failures == 0


@given(st.integers(1, 5000), st.binary(min_size=1, max_size=8), st.data())
def test_the_body_limit_holds_for_any_content_and_chunking(size, pattern, data):
    body = (pattern * size)[:size]
    wire = _raw_frame(body) + encode_frame(b"ok")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    decoder = FrameDecoder()
    out: list[bytes] = []
    previous = 0
    for cut in [*cuts, len(wire)]:
        out.extend(decoder.feed(wire[previous:cut]))
        previous = cut
    assert out == ([body] if size <= MAX_BODY else []) + [b"ok"]
    assert len(decoder._buffer) <= MAX_WIRE


def test_a_frame_whose_crc_ends_in_zero_survives_losing_its_last_code_byte_only_under_v1():
    """The defect found on 2026-12-02 (stop 21): when a body's CRC-16 ends in 0x00, COBS
    encodes that zero as a final code byte 0x01; one bit flip makes it a delimiter, and
    the frame decodes to the body less its last byte with a CRC that checks. The damaged
    bytes are a valid v1 frame, so v1 cannot refuse them; check v2 (CRC-32 over length
    and body) does. Calls between current ends use v2 for every DATA and ACK frame."""
    body = next(b for i in range(100_000) if crc16(b := i.to_bytes(4, "big") * 8) & 0xFF == 0)
    frame = encode_frame(body)
    assert frame.endswith(b"\x01\x00")
    damaged = frame[:-2] + b"\x00\x00"  # the final code byte hit by a one-bit error
    assert list(FrameDecoder().feed(damaged)) == [body[:-1]]  # v1: the hole
    frame = encode_frame(body, FrameCheck.V2)
    for index in range(1, len(frame) - 1):
        for bit in range(8):
            damaged = bytearray(frame)
            damaged[index] ^= 1 << bit
            assert list(FrameDecoder(check=FrameCheck.V2).feed(bytes(damaged))) == []


@given(
    st.integers(0, 2**40),
    st.sampled_from(list(Kind)),
    st.integers(0, 3000),
    st.binary(max_size=300),
    st.integers(0, 50),
)
def test_compact_heads_leave_out_the_chunk_length_only_when_agreed(seq, kind, offset, chunk, short):
    """Head flag 0x20 (agreed with frame check v2): the chunk is the rest of the message,
    so its length is not sent. A centre of before refuses the flag: it is sent only to a
    centre that agreed, and read only when agreed."""
    head = MessageHead(seq, kind, True, offset + len(chunk), offset, None, chunk)
    full, compact = encode_head(head), encode_head(head, compact=True)
    assert len(compact) == len(full) - len(uleb(len(chunk)))
    more = encode_answer(Answer(SegmentType.STORED, 3))
    assert decode_segments(Reader(compact + more), compact=True) == [
        head,
        Answer(SegmentType.STORED, 3),
    ]
    assert decode_segments(Reader(full), compact=True) == [head]
    with pytest.raises(PeerMisbehaved, match="reserved"):
        decode_segments(Reader(compact))
    # a chunk that is not the rest of its message keeps its length
    partial = MessageHead(seq, kind, True, offset + len(chunk) + 1 + short, offset, None, chunk)
    assert encode_head(partial, compact=True) == encode_head(partial)
