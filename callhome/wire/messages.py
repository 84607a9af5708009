"""Messages: CBOR maps, compressed with a versioned dictionary when that is smaller.

A small report barely shrinks without a dictionary (deflate needs context it does not
have); with a preset dictionary made of typical reports it shrinks four to six times
(transport-field-notes §3). The dictionary is a versioned file shipped with both ends;
its id travels in the handshake, and a side that lacks it gets uncompressed bodies.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cbor2

from .errors import MessageError

MAX_MESSAGE = 1 << 20
"""Largest encoded (compressed) message, 1 MiB."""
MAX_CONTENT = 4 << 20
"""Largest decoded content: a bound on what a decompression bomb can cost."""
DIGEST_SIZE = 16
CURRENT_DICTIONARY = 3
"""The dictionary this side compresses with (its id goes in HS1). Every earlier one
stays shipped so that a centre still decodes older clients: 1 was the tail of the
benchmark's own reports; 2 is trained on `benchmarks/corpora/training` (issue 18: on
the held-out corpus it makes reports 12 % smaller than 1; zstd with the same trained
dictionary would save about 2 % more, not worth a compiled dependency on every
device); 3 is trained on the same reports and the agent's own messages, and halves
held-out agent events against 2 (107 -> 59 bytes, median) at no cost to reports (see
docs/protocol.md §5). A centre without 3 says so in HS2 and gets uncompressed bodies."""
SEVERITIES = ("info", "notice", "warning", "error", "critical")
"""A report's severity, least to most severe."""


class Kind(enum.IntEnum):
    REPORT = 0
    LINE_TEST = 1
    INVENTORY = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> Kind:
        try:
            return cls[label.upper().replace("-", "_")]
        except KeyError:
            raise ValueError(f"unknown message kind {label!r}") from None


@dataclass(frozen=True)
class Dictionary:
    id: int
    data: bytes

    def compress(self, data: bytes) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, self.data)
        return compressor.compress(data) + compressor.flush()

    def decompress(self, data: bytes, limit: int = MAX_CONTENT) -> bytes:
        decompressor = zlib.decompressobj(-15, self.data)
        try:
            out = decompressor.decompress(data, limit)
        except zlib.error as exc:
            raise MessageError(f"cannot decompress: {exc}") from None
        if decompressor.unconsumed_tail:
            raise MessageError(f"decompressed content exceeds {limit} bytes")
        if not decompressor.eof:
            raise MessageError("compressed content is truncated")
        return out


@lru_cache(maxsize=8)
def load_dictionary(dictionary_id: int) -> Dictionary | None:
    """The dictionary with this id, or None if this installation does not have it."""
    if dictionary_id <= 0:
        return None
    name = f"{dictionary_id}.bin"
    folder = Path(__file__).with_name("dictionaries")
    try:
        return Dictionary(dictionary_id, (folder / name).read_bytes())
    except OSError:
        if folder.is_dir():
            return None
    # not installed as files (a zip): importlib.resources, which the usual case does
    # without (it brings tempfile, shutil, bz2, lzma: 0.7 MB of an idle agent's RSS)
    from importlib import resources

    try:
        data = (resources.files(__package__) / "dictionaries" / name).read_bytes()
    except OSError:
        return None
    return Dictionary(dictionary_id, data)


def encode_content(content: dict[str, Any]) -> bytes:
    if not isinstance(content, dict):
        raise MessageError("a message is a map")
    try:
        return cbor2.dumps(content, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise MessageError(f"cannot encode as CBOR: {exc}") from None


def decode_content(data: bytes) -> dict[str, Any]:
    try:
        content = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise MessageError(f"not valid CBOR: {type(exc).__name__}") from None
    if not isinstance(content, dict):
        raise MessageError("a message must be a CBOR map")
    return content


@dataclass(frozen=True)
class EncodedMessage:
    kind: Kind
    body: bytes
    """What crosses the wire (compressed or not)."""
    compressed: bool
    content_size: int

    @property
    def digest(self) -> bytes:
        return message_digest(self.body)


def message_digest(body: bytes) -> bytes:
    return hashlib.blake2s(body, digest_size=DIGEST_SIZE).digest()


def encode_message(
    kind: Kind, content: dict[str, Any], dictionary: Dictionary | None
) -> EncodedMessage:
    return pack_message(kind, encode_content(content), dictionary)


def pack_message(kind: Kind, raw: bytes, dictionary: Dictionary | None) -> EncodedMessage:
    """A message from its CBOR bytes: compressed when that is smaller, sizes checked."""
    if len(raw) > MAX_CONTENT:
        raise MessageError(f"message content is {len(raw)} bytes; the limit is {MAX_CONTENT}")
    body, compressed = raw, False
    if dictionary is not None:
        packed = dictionary.compress(raw)
        if len(packed) < len(raw):
            body, compressed = packed, True
    if len(body) > MAX_MESSAGE:
        raise MessageError(f"encoded message is {len(body)} bytes; the limit is {MAX_MESSAGE}")
    return EncodedMessage(kind, body, compressed, len(raw))


def current_form(kind: Kind, body: bytes, compressed: bool, plain: bytes) -> EncodedMessage:
    """A message stored compressed with an earlier dictionary (queued before an
    upgrade), compressed again with the current one: HS1 names one dictionary for the
    whole call. The stored body is kept when the current dictionary gives `plain`."""
    current = load_dictionary(CURRENT_DICTIONARY)
    if compressed and current is not None:
        try:
            if current.decompress(body) == plain:
                return EncodedMessage(kind, body, True, len(plain))
        except MessageError:
            pass
        return pack_message(kind, plain, current)
    return EncodedMessage(kind, body, compressed, len(plain))


def decode_body(body: bytes, compressed: bool, dictionary: Dictionary | None) -> bytes:
    """The CBOR bytes of a received body (decompressed, bounded)."""
    if not compressed:
        return body
    if dictionary is None:
        raise MessageError("compressed with a dictionary this side does not have")
    return dictionary.decompress(body)


# -- the agent's messages (issue 11; docs/protocol.md "Agent messages") ------------------

AGENT_FORMAT = 1
"""The `v` of the agent's message contents. A reader takes any `v` it knows, and from a
newer one the fields it knows (fields are only ever added within a version)."""

AGENT_STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
_STATE_SEVERITY = {"OK": "info", "WARNING": "warning", "CRITICAL": "critical", "UNKNOWN": "warning"}


def agent_event_content(
    *,
    check: str,
    event: str,
    state: str,
    previous: str,
    since: float,
    time: float,
    text: str,
    value: float | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """A check's state change ("change"), the start of its flapping ("flapping") or its
    end ("stable"). `severity`, `component` and `state` are the fields every centre
    indexes, so an older centre files it as an ordinary report."""
    content: dict[str, Any] = {
        "v": AGENT_FORMAT,
        "type": "event",
        "event": event,
        "check": check,
        "component": check,
        "state": state,
        "previous": previous,
        "severity": "warning" if event == "flapping" else _STATE_SEVERITY.get(state, "warning"),
        "since": int(since),
        "time": int(time),
        "text": text[:500],
    }
    if value is not None:
        content["value"] = value
    if unit:
        content["unit"] = unit
    return content


def agent_throttled_content(
    *, check: str, held: int, first_held: float | None, state: str, since: float, text: str
) -> dict[str, Any]:
    """What a throttle held back for one check: how many events, and the state it is in."""
    return {
        "v": AGENT_FORMAT,
        "type": "throttled",
        "check": check,
        "component": check,
        "held": held,
        "first_held": None if first_held is None else int(first_held),
        "state": state,
        "severity": "notice",
        "since": int(since),
        "text": text[:500],
    }


def agent_line_test_content(base: dict[str, Any], health: str) -> dict[str, Any]:
    """A line test (the client's usual content) with the agent's one-line health summary."""
    return {**base, "v": AGENT_FORMAT, "health": health[:200]}


def agent_inventory_content(
    changed: dict[str, str], removed: list[str], *, full: bool, time: float
) -> dict[str, Any]:
    """The inventory items that changed since the last one the centre acknowledged."""
    return {
        "v": AGENT_FORMAT,
        "type": "inventory",
        "full": full,
        "time": int(time),
        "changed": dict(sorted(changed.items())),
        "removed": sorted(removed),
    }
