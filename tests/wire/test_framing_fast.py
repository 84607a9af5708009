"""The framing codecs without per-byte Python loops (issue 14) are byte-identical to the
per-byte ones they replaced (`reference_framing`), for good input and for bad."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from callhome.wire import framing
from callhome.wire.framing import CobsError, FrameDecoder, encode_frame

from . import reference_framing as reference

# bytes that matter to the codecs, often, and long runs (a COBS block is 254 bytes)
_interesting = st.sampled_from([0x00, 0x01, 0x2B, 0xFF, 0x41])
_bytes = st.one_of(
    st.binary(max_size=1200),
    st.lists(st.one_of(_interesting, st.integers(0, 255)), max_size=1200).map(bytes),
    st.lists(st.tuples(_interesting, st.integers(1, 600)), max_size=6).map(
        lambda runs: b"".join(bytes([b]) * n for b, n in runs)
    ),
)


def outcome(function, data):
    try:
        return ("ok", function(data))
    except CobsError:
        return ("error", None)


@settings(max_examples=200)
@given(_bytes)
@example(b"\x00" * 300)
@example(b"\x41" * 254)
@example(b"\x41" * 253 + b"\x00")
@example(b"+" * 7)
def test_encoders_match_the_reference(data):
    assert framing.cobs_encode(data) == reference.cobs_encode(data)
    assert framing.stuff(data) == reference.stuff(data)


@settings(max_examples=200)
@given(_bytes)
@example(b"++")
@example(b"++\x01")
@example(b"+++\x01")
@example(b"\x03ab\x02c")
@example(b"\xff" + b"a" * 254 + b"\x01")
def test_decoders_match_the_reference_on_any_input(data):
    assert outcome(framing.unstuff, data) == outcome(reference.unstuff, data)
    assert outcome(framing.cobs_decode, data) == outcome(reference.cobs_decode, data)


@settings(max_examples=150)
@given(_bytes)
def test_round_trips(data):
    assert framing.cobs_decode(framing.cobs_encode(data)) == data
    stuffed = framing.stuff(data)
    assert b"+++" not in stuffed
    assert framing.unstuff(stuffed) == data


@given(st.binary(min_size=1, max_size=framing.MAX_BODY), st.integers(1, 64))
def test_frames_decode_in_any_chunking(body, step):
    wire = encode_frame(body) + encode_frame(body[::-1])
    decoder = FrameDecoder()
    got = [f for i in range(0, len(wire), step) for f in decoder.feed(wire[i : i + step])]
    assert got == [body, body[::-1]]
