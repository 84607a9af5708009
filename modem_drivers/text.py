"""Showing line bytes to people: lossless, printable, never raising."""

from __future__ import annotations

_NAMED = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x5C: "\\\\"}


def escape_bytes(data: bytes, limit: int | None = None) -> str:
    """`b'AT\\r\\x00'` -> `AT\\r\\x00`: printable ASCII as is, everything else escaped."""
    shown = data if limit is None else data[:limit]
    out = []
    for byte in shown:
        if byte in _NAMED:
            out.append(_NAMED[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    if limit is not None and len(data) > limit:
        out.append(f"...(+{len(data) - limit} bytes)")
    return "".join(out)


def display_text(data: bytes) -> str:
    """Decode for display; undecodable bytes become U+FFFD rather than an exception."""
    return data.decode("utf-8", "replace")
