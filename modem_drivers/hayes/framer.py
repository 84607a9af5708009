"""Bytes from a modem in command mode -> lines.

Modems end lines with CR LF, bare CR (V0 results), bare LF, CR CR LF, and pad them
with NULs and empty lines; reads split lines anywhere. The framer hides all of that:
it hands out one line at a time (so the caller can switch to data mode in the middle
of a buffer and take the rest as data) and bounds memory with a line length limit.
"""

from __future__ import annotations

from dataclasses import dataclass

CR, LF, NUL = 0x0D, 0x0A, 0x00
MAX_LINE = 512


@dataclass(frozen=True)
class Line:
    text: bytes
    """The line without terminator, NULs removed; never empty."""
    ended_by_cr: bool = False
    """True when the line ended with a bare CR (as V0 result codes do) as far as known."""
    overflow: bool = False
    """True when the line was cut at the length limit (the rest up to the next
    terminator is dropped)."""


class LineFramer:
    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False
        self._pending_lf = False  # the last line ended with CR at the end of the buffer

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self._pending_lf and not self._buffer:
            self._pending_lf = False
            if data[0] == LF:
                data = data[1:]
        self._buffer += data

    def next_line(self) -> Line | None:
        """The next complete non-empty line, or None until more bytes arrive."""
        buffer = self._buffer
        while buffer:
            end = _find_terminator(buffer)
            if end < 0:
                if len(buffer) > self.max_line:
                    return self._overflow()
                return None
            raw = bytes(buffer[:end])
            consumed = end + 1
            cr_only = buffer[end] == CR
            if cr_only and consumed < len(buffer) and buffer[consumed] == LF:
                consumed += 1
                cr_only = False
            elif cr_only and consumed == len(buffer):
                self._pending_lf = True  # an LF may still come: it belongs to this line
            del buffer[:consumed]
            if self._discarding:
                self._discarding = False
                continue
            text = raw.replace(b"\x00", b"")
            if len(text) > self.max_line:
                return Line(text[: self.max_line], cr_only, overflow=True)
            if text:
                return Line(text, ended_by_cr=cr_only)
        return None

    def _overflow(self) -> Line | None:
        """No terminator within the limit: report the line once, drop the rest of it."""
        if self._discarding:
            self._buffer.clear()
            return None
        text = bytes(self._buffer[: self.max_line]).replace(b"\x00", b"")
        self._buffer.clear()
        self._discarding = True
        return Line(text or b"?", overflow=True)

    def take_remainder(self) -> bytes:
        """Everything not yet handed out as lines (the start of the data stream).

        A CR LF that ended the last line is already consumed when both bytes were here;
        when the CR was the last byte, `expecting_lf()` tells the caller to drop an LF
        that may begin the next read (V1 framing only: in V0 a result ends with CR).
        """
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._discarding = False
        self._pending_lf = False
        return rest

    def expecting_lf(self) -> bool:
        """The last line's CR was the final byte seen: an LF may follow it."""
        return self._pending_lf and not self._buffer

    def clear(self) -> None:
        self._buffer.clear()
        self._discarding = False
        self._pending_lf = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def _find_terminator(buffer: bytearray) -> int:
    cr = buffer.find(b"\r")
    lf = buffer.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
