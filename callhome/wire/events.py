"""What a session tells its caller: every event is named for something that happened.

The centre sees, in order: `HandshakeRequested` (decide: `accept()` or `refuse()`), or
`HandshakeRefused` / `HandshakeDecryptionFailed`; then `HandshakeConfirmed` once the
caller proved it is live; then `MessageStarted`, `MessagePartReceived`,
`MessageReceived` or `MessageFailed` per message; `PeerFinished`; and `CallClosed` or
`CallFailed`. The device sees `HandshakeCompleted`, `MessageAcknowledged` or
`MessageRejected` per message, `PeerFinished`, and `CallClosed` or `CallFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError
from .messages import Kind
from .records import RefusalReason, RejectReason


@dataclass(frozen=True)
class HandshakeRequested:
    """Centre: a device wants to talk. Call `accept()` or `refuse()`.

    Nothing here is proof that the caller is live: a recorded HS1 replays perfectly.
    Act on it only as far as the decision needs; `HandshakeConfirmed` follows when the
    caller proves it holds the keys."""

    device_key: bytes
    call_counter: int
    epoch: int
    dictionary_id: int
    version: int


@dataclass(frozen=True)
class HandshakeRefused:
    """Centre: the session refused the device by itself (a protocol version it does not
    speak); the refusal went out in HS2. Record it; nothing more happens in this call."""

    device_key: bytes
    reason: RefusalReason
    version: int


@dataclass(frozen=True)
class HandshakeDecryptionFailed:
    """Centre: a first handshake message did not decrypt (the device has the wrong
    centre key, or this is a forgery). A NOTICE went back; the session keeps waiting
    for a genuine one until the handshake deadline."""

    error: str


@dataclass(frozen=True)
class HandshakeConfirmed:
    """Centre: the caller's first record after the handshake authenticated, so it holds
    the keys of this call and is live (not a replayed HS1). Only now record the device
    as seen and the call as accepted."""

    device_key: bytes
    call_counter: int
    confirmation_time: float
    """Seconds from the accepting HS2 to the first authenticated record."""


@dataclass(frozen=True)
class HandshakeCompleted:
    """Client: the centre accepted; its clock (ms since 1970) and what it already holds."""

    server_clock_ms: int
    resume: dict[int, int]
    round_trip: float
    """From the HS1 that was answered to its answer (the line's round trip)."""
    test_interval: int | None = None
    """Seconds between line tests the centre expects of this device, if it said."""
    attempts: int = 1
    """How many times HS1 was sent (a retry means a lost or damaged HS1 or HS2)."""
    seconds: float | None = None
    """From the first HS1 sent to the answer: what the handshake cost this call."""


@dataclass(frozen=True)
class MessageStarted:
    seq: int
    kind: Kind
    total: int
    offset: int
    whole: bool = False
    """Every byte came with the head: its `MessageReceived` (or `MessageFailed`) follows
    in the same batch of events, so answering a duplicate early saves nothing."""


@dataclass(frozen=True)
class MessagePartReceived:
    """Centre: more of a long message, in order: persist it so a dropped call resumes."""

    seq: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class MessageReceived:
    """Centre: a whole message. Store it durably, then call `message_stored(seq)`."""

    seq: int
    kind: Kind
    content: bytes
    """The message's CBOR, decompressed and checked to be a map."""
    body_size: int
    """Bytes it took on the wire (compressed) and digest-verified when long."""


@dataclass(frozen=True)
class MessageFailed:
    """Centre: a message was refused by the protocol itself (bad digest, undecodable)."""

    seq: int
    reason: RejectReason


@dataclass(frozen=True)
class MessageAcknowledged:
    """Client: the centre holds this message durably (or already did)."""

    seq: int
    duplicate: bool


@dataclass(frozen=True)
class MessageRejected:
    """Client: the centre will not take this message (permanent reasons only)."""

    seq: int
    reason: RejectReason


@dataclass(frozen=True)
class PeerFinished:
    """The other end has nothing more to send."""


@dataclass(frozen=True)
class SecurityAlert:
    """After the handshake, a frame that passed its CRC failed authentication, or an
    authentic frame came again (a replay). Noise never raises this; an attacker on the
    line, or a replay from another call, does. `counter` is the session's count so far."""

    kind: str
    """"auth_failure" or "replay"."""
    frame_type: int
    counter: int


@dataclass(frozen=True)
class CallClosed:
    """The exchange is complete: everything sent was answered. Hang up."""


@dataclass(frozen=True)
class CallFailed:
    error: ProtocolError


Event = (
    HandshakeRequested
    | HandshakeRefused
    | HandshakeDecryptionFailed
    | HandshakeConfirmed
    | HandshakeCompleted
    | MessageStarted
    | MessagePartReceived
    | MessageReceived
    | MessageFailed
    | MessageAcknowledged
    | MessageRejected
    | PeerFinished
    | SecurityAlert
    | CallClosed
    | CallFailed
)
