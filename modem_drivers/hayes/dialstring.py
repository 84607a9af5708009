"""What may follow ATD: a telephone number with its modifiers, or a network address.

Modems dial digits with V.250's modifiers; Hayes emulators and Wi-Fi/IP modems dial
`host:port` (`ATDT127.0.0.1:6400`). A dial string is checked where a user configures
it, before any port is opened, and is never changed silently: spaces, dashes and
brackets in a telephone number are formatting and go; anything else is refused.
"""

from __future__ import annotations

import re

_PHONE = re.compile(r"[0-9*#ABCDabcdTtPpWw,!@;]+")
_PHONE_FORMATTING = str.maketrans("", "", " -()")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def dial_string(number: str) -> str:
    """`number` as it goes after ATD; ValueError (saying why) if it is neither a
    telephone number nor a `host:port` address."""
    text = number.strip()
    if not text.isascii():
        raise ValueError(f"not a dial string: {number!r} (ASCII digits and letters only)")
    if ":" in text:
        return _address(text, number)
    if "." in text:
        raise ValueError(
            f"not a dial string: {number!r} (dots belong only in a host:port address; "
            "write a telephone number with spaces or dashes)"
        )
    cleaned = text.translate(_PHONE_FORMATTING)
    if not cleaned or not _PHONE.fullmatch(cleaned):
        raise ValueError(
            f"not a dial string: {number!r} (digits, * # A-D, and the modifiers T P W , ! @ ;)"
        )
    if ";" in cleaned[:-1]:
        raise ValueError(f"not a dial string: {number!r} (';' may only end it)")
    return cleaned


def _address(text: str, original: str) -> str:
    host, _, port = text.rpartition(":")
    if host[:1] in ("T", "t", "P", "p") and not _valid_host(host) and _valid_host(host[1:]):
        host_part = host[1:]  # `T127.0.0.1:6400`: tone dialling an address, as ATDT does
    else:
        host_part = host
    if not _valid_host(host_part):
        raise ValueError(f"not a dial string: {original!r} (not a valid host in host:port)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"not a dial string: {original!r} (the port must be 1-65535)")
    return text


def _valid_host(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    if _IPV4.fullmatch(host):
        return all(int(part) <= 255 for part in host.split("."))
    labels = host.split(".")
    if labels[-1].isdigit():
        return False  # all-numeric last label: a mistyped IPv4 address
    return all(_LABEL.fullmatch(label) for label in labels)
