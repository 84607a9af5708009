"""Frames over TCP: the length-prefixed envelope, and whole sessions using it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.linesim import Centre
from callhome.tcp import tcp_transfer_config
from callhome.wire.errors import PeerMisbehaved
from callhome.wire.framing import MAX_BODY
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from callhome.wire.records import HS1
from callhome.wire.session import (
    CallFailed,
    MessageAcknowledged,
    Phase,
    ServerSession,
)
from callhome.wire.streamframing import StreamDecoder, encode_stream_frame
from tests.sessionpair import exchange, session_pair

bodies = st.lists(st.binary(min_size=1, max_size=MAX_BODY), max_size=6)


@given(bodies, st.lists(st.integers(0, 5000), max_size=8))
def test_any_chunking_gives_the_frames_back(frames, cuts):
    wire = b"".join(encode_stream_frame(body) for body in frames)
    decoder = StreamDecoder()
    out: list[bytes] = []
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(points):
        out += list(decoder.feed(wire[start:end]))
    assert out == frames
    assert decoder.stats.frames == len(frames) and decoder.stats.malformed == 0


def test_split_at_every_position():
    wire = encode_stream_frame(b"\x01hello") + encode_stream_frame(b"\x02" * 300)
    for cut in range(len(wire) + 1):
        decoder = StreamDecoder()
        out = list(decoder.feed(wire[:cut])) + list(decoder.feed(wire[cut:]))
        assert out == [b"\x01hello", b"\x02" * 300], cut


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\n", b"\x00\x00", b"\xff\xff" + b"x" * 10])
def test_a_stream_that_is_not_ours_ends_at_once_and_stays_ended(junk):
    decoder = StreamDecoder()
    with pytest.raises(PeerMisbehaved):
        list(decoder.feed(encode_stream_frame(b"ok")[:0] + junk))
    assert decoder.stats.malformed == 1
    assert list(decoder.feed(encode_stream_frame(b"ok"))) == []  # no resynchronising


def test_a_good_frame_before_the_junk_is_still_delivered():
    decoder = StreamDecoder()
    got: list[bytes] = []
    with pytest.raises(PeerMisbehaved):
        for body in decoder.feed(encode_stream_frame(b"first") + b"\x00\x00"):
            got.append(body)
    assert got == [b"first"]


def test_encode_refuses_empty_and_oversize():
    for body in (b"", b"x" * (MAX_BODY + 1)):
        with pytest.raises(ValueError):
            encode_stream_frame(body)


def test_a_whole_call_in_stream_frames():
    centre, client, server = session_pair(tcp_transfer_config())
    message = encode_message(
        Kind.REPORT, {"severity": "info", "x": "y" * 3000}, load_dictionary(CURRENT_DICTIONARY)
    )
    client.queue(1, message)
    client.finish()
    hs1 = client.data_to_send()
    assert int.from_bytes(hs1[:2], "big") == len(hs1) - 2 and hs1[2] == HS1
    for event in server.receive_data(hs1, 0.0):
        centre.handle(server, event, 0.0)
    events = exchange(client, server, centre)
    assert [e.seq for e in events if isinstance(e, MessageAcknowledged)] == [1]
    assert not [e for e in events if isinstance(e, CallFailed)]
    assert len(centre.stored) == 1
    assert server.stats.crc_failures == 0 and server.decoder.stats.frames >= 2


def test_junk_ends_the_centre_session_at_once():
    server = ServerSession(static_private=Centre().static_private, config=tcp_transfer_config())
    server.start(0.0)
    events = server.receive_data(b"SSH-2.0-OpenSSH_9.6\r\n", 0.1)
    assert server.phase is Phase.FAILED and isinstance(events[0], CallFailed)
    assert server.data_to_send() == b""  # nothing at all for a stranger


def test_the_listeners_frame_bound_is_the_protocols():
    """`TcpCall.take_frame` knows the longest body without importing the protocol."""
    from callhome.tcp import MAX_STREAM_BODY
    from callhome.wire.framing import MAX_BODY

    assert MAX_STREAM_BODY == MAX_BODY
