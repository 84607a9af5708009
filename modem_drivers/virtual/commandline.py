"""Reading a command line: the cursor the command handlers share, and dial strings.

Pure text handling for `interpreter.py`: no state, no time, no I/O.
"""

from __future__ import annotations

import re


class CommandLine:
    """A cursor over one command line (the text after `AT`)."""

    def __init__(self, text: str, *, max_digits: int | None = 3) -> None:
        self._text = text
        self._pos = 0
        self._max_digits = max_digits

    def skip_spaces(self) -> None:
        while self._pos < len(self._text) and self._text[self._pos] == " ":
            self._pos += 1

    def word(self) -> str:
        """tcpser's `getData`: a number, or a run of characters, up to a space."""
        start = self._pos
        text = self._text
        numeric = start < len(text) and text[start].isdigit()
        while self._pos < len(text) and text[self._pos] != " ":
            if numeric and not text[self._pos].isdigit():
                break
            self._pos += 1
        return text[start : self._pos]

    def done(self) -> bool:
        while self._pos < len(self._text) and self._text[self._pos] == " ":
            self._pos += 1
        return self._pos >= len(self._text)

    def next_char(self) -> str:
        if self._pos >= len(self._text):
            return ""
        char = self._text[self._pos]
        self._pos += 1
        return char

    def number(self, default: int | None) -> int | None:
        start = self._pos
        while self._pos < len(self._text) and self._text[self._pos].isdigit():
            self._pos += 1
        digits = self._text[start : self._pos]
        if not digits:
            return default
        if self._max_digits is not None and len(digits) > self._max_digits:
            return None
        return int(digits)

    def rest(self) -> str:
        rest = self._text[self._pos :]
        self._pos = len(self._text)
        return rest

    def extended(self) -> tuple[str, str, str]:
        """`+NAME[=arg|?|=?]` up to the next `;`."""
        end = self._text.find(";", self._pos)
        if end < 0:
            end = len(self._text)
        body = self._text[self._pos : end].replace(" ", "").upper()
        self._pos = end
        for op in ("=?", "?", "="):
            if op in body:
                name, arg = body.split(op, 1)
                return name, op, arg
        return body, "", ""


_IGNORED_IN_DIAL = frozenset(" -().")
_DIAL_DIGITS = frozenset("0123456789*#ABCD")


def parse_dial_string(text: str) -> tuple[str | None, bool, bool]:
    """Returns (digits to dial, `;` seen, `@` seen); digits is None when invalid."""
    digits: list[str] = []
    stay = False
    wait_quiet = False
    for raw in text:
        char = raw.upper()
        if char in _DIAL_DIGITS:
            digits.append(char)
        elif char in "TPW,!" or char in _IGNORED_IN_DIAL:
            pass  # tone/pulse, wait for dial tone, pause, flash: timing only
        elif char == "@":
            wait_quiet = True
        elif char == ";":
            stay = True
            break
        else:
            return None, False, False
    return "".join(digits), stay, wait_quiet


_PHONE_NUMBER_CHARS = frozenset("0123456789*# -(),")
_ADDRESS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}")


def is_address(text: str) -> bool:
    """`host:port` (an IPv4 address or a host name and a TCP port), as IP modems dial."""
    return _ADDRESS.fullmatch(text) is not None


def address_or_number(target: str) -> str:
    """What an emulator dials: a phone number's digits, or anything else verbatim."""
    if all(char in _PHONE_NUMBER_CHARS for char in target):
        return "".join(char for char in target if char in "0123456789*#")
    return target


def dial_duration(digits: str) -> float:
    return 0.1 * len(digits)
