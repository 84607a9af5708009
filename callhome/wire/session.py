"""The two ends of a call-home call, sans-IO: bytes and times in, events and bytes out.

One import for users of the protocol. The parts live in:

    events.py    what a session reports (past tense: HandshakeCompleted, CallClosed...)
    phases.py    the phases and every allowed change between them, in one table
    endpoint.py  what both ends share: frames, records, ACKs, deadlines, counters
    client.py    the device's end (ClientSession)
    server.py    the centre's end (ServerSession)
"""

from __future__ import annotations

from .client import ClientSession
from .endpoint import DIGEST_THRESHOLD, PROLOGUE, PROTOCOL_VERSION, SessionStats
from .events import (
    CallClosed,
    CallFailed,
    Event,
    HandshakeCompleted,
    HandshakeConfirmed,
    HandshakeDecryptionFailed,
    HandshakeRefused,
    HandshakeRequested,
    MessageAcknowledged,
    MessageFailed,
    MessagePartReceived,
    MessageReceived,
    MessageRejected,
    MessageStarted,
    PeerFinished,
    SecurityAlert,
)
from .phases import Phase, PhaseError, Role
from .server import MAX_NOTICES, ServerSession

__all__ = [
    "DIGEST_THRESHOLD",
    "MAX_NOTICES",
    "PROLOGUE",
    "PROTOCOL_VERSION",
    "CallClosed",
    "CallFailed",
    "ClientSession",
    "Event",
    "HandshakeCompleted",
    "HandshakeConfirmed",
    "HandshakeDecryptionFailed",
    "HandshakeRefused",
    "HandshakeRequested",
    "MessageAcknowledged",
    "MessageFailed",
    "MessagePartReceived",
    "MessageReceived",
    "MessageRejected",
    "MessageStarted",
    "PeerFinished",
    "Phase",
    "PhaseError",
    "Role",
    "SecurityAlert",
    "ServerSession",
    "SessionStats",
]
