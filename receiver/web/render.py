"""Showing stored things to people: times, fingerprints, decoded report contents."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import cbor2


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = now - at
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f} {unit}"
            break
    else:
        text = f"{seconds:.0f} s"
    return f"in {text}" if future else f"{text} ago"


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of the public key, in groups: what a person compares, never the key."""
    digest = hashlib.sha256(public_key).hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


def _plain(item: Any) -> Any:
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    if isinstance(item, dict):
        return {str(k): _plain(v) for k, v in item.items()}
    if isinstance(item, list | tuple):
        return [_plain(v) for v in item]
    if isinstance(item, str | int | float | bool) or item is None:
        return item
    return str(item)


def decode(content: bytes) -> str:
    """A message's content as indented JSON when it is CBOR or JSON; otherwise its size.
    Byte strings inside are shown by length only (they may be anything)."""
    value: Any
    # a JSON object or array starts with a byte that is a (short) CBOR string or array:
    # try JSON first for those
    decoders = (json.loads, cbor2.loads) if content[:1] in (b"{", b"[") else (cbor2.loads,)
    for decoder in decoders:
        try:
            value = decoder(content)
            break
        except Exception:
            continue
    else:
        return f"<{len(content)} bytes, not CBOR or JSON>"
    return json.dumps(_plain(value), indent=2, ensure_ascii=False, sort_keys=True)
