"""Honest handshake timings: every attempt counts (issue 18).

A bit error in the centre's HS2 makes the client resend HS1 after its back-off; the
report must show two attempts and the time from the first HS1, not the last round trip.
"""

from __future__ import annotations

from callhome.client.cli import _handshake_text
from callhome.client.dialer import CallReport, _handshake_timing
from callhome.wire.records import HS2
from callhome.wire.session import HandshakeCompleted
from tests.wire.framesim import frame_type, run_call
from tests.wire.test_session import pair, report


def _flip_first_hs2(seen: list[bytes]):
    def fate(frame: bytes) -> list[tuple[float, bytes]]:
        if frame_type(frame) == HS2 and not seen:
            seen.append(frame)
            damaged = bytearray(frame)
            damaged[len(frame) // 2] ^= 0x10  # one bit: the CRC fails, the frame is lost
            return [(0.0, bytes(damaged))]
        return [(0.0, frame)]

    return fate


def test_a_handshake_retry_is_counted_from_the_first_attempt():
    device, centre = pair(report())
    seen: list[bytes] = []
    outcome = run_call(device, centre, down=_flip_first_hs2(seen))
    assert outcome.closed and centre.store_count == 1 and seen
    done = [e for e in outcome.client_events if isinstance(e, HandshakeCompleted)]
    assert len(done) == 1
    event = done[0]
    assert event.attempts == 2
    assert outcome.client is not None and outcome.client.handshake_attempts == 2
    # the retry waited the back-off (3 s): the whole handshake took that much longer
    # than the round trip of the attempt that was answered
    assert event.seconds is not None and event.seconds > event.round_trip + 2.5


def test_an_unhindered_handshake_is_one_attempt():
    device, centre = pair(report())
    outcome = run_call(device, centre)
    event = next(e for e in outcome.client_events if isinstance(e, HandshakeCompleted))
    assert event.attempts == 1 and event.seconds == event.round_trip


def test_the_call_report_and_line_test_show_the_attempts():
    call = CallReport()
    _handshake_timing(call, HandshakeCompleted(0, {}, 0.82, attempts=2, seconds=4.07))
    assert call.handshake_seconds == 4.07 and call.handshake_attempts == 2
    assert call.handshake_round_trip == 0.82
    assert _handshake_text(call) == "4.07 s, 2 attempts (round trip 0.82 s)"
