"""Typed protocol errors: every bad input from the line ends in one of these."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the call-home protocol raises."""


class HandshakeFailed(ProtocolError):
    """A handshake message did not decrypt, was malformed or came out of order."""


class Refused(ProtocolError):
    """The centre refused this device (unknown, revoked, stale call counter)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused by the centre: {reason}")
        self.reason = reason


class PeerMisbehaved(ProtocolError):
    """An authenticated peer broke the protocol (bad segment, impossible ACK)."""


class SessionTimeout(ProtocolError):
    """Nothing from the peer for longer than the idle timeout."""


class MessageError(ProtocolError):
    """A message could not be encoded or decoded (too large, undecodable, bad digest)."""


class NotACentre(HandshakeFailed):
    """The far end is not a call-home centre: it sent text (a login prompt, an EMSI
    request, a modem's BUSY), tones or noise, and no valid frame in time."""

    def __init__(self, message: str, received: bytes = b"") -> None:
        super().__init__(f"not a call-home centre: {message}")
        self.received = received
        """The first bytes it sent (at most 256): for the caller to classify or show."""
