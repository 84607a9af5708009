"""The PROXY protocol header (HAProxy, versions 1 and 2), sans-IO.

A TCP load balancer that speaks it sends, before anything of the client's, where the
connection really came from. `parse` takes the bytes received so far and returns None
(need more), or the header's length and the client's address (None: the proxy's own
connection, `LOCAL` or `UNKNOWN`, such as its health checks). Only connections from the
proxies named in `[ip] proxies` are read this way: from anyone else a PROXY header is
just a stream that is not ours, so it cannot be used to pose as another source.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107
"""The longest version 1 line, CRLF included (the specification's own bound)."""
V2_MAX = 16 + 4096
"""A version 2 header we accept: the fixed part and up to 4 KiB of addresses and TLVs."""


class ProxyHeaderError(ValueError):
    """Not a PROXY header, or a malformed one."""


@dataclass(frozen=True)
class ProxyHeader:
    length: int
    source: tuple[str, int] | None


def parse(data: bytes) -> ProxyHeader | None:
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)] and len(data) < 16:
        return None  # could still be version 2
    if data.startswith(V2_SIGNATURE):
        return _v2(data)
    if V1_PREFIX.startswith(data[: len(V1_PREFIX)]) and len(data) < len(V1_PREFIX):
        return None
    if data.startswith(V1_PREFIX):
        return _v1(data)
    raise ProxyHeaderError("the proxy sent no PROXY header")


def _v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("PROXY line too long")
        return None
    try:
        fields = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY line is not ASCII") from None
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(end + 2, None)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("malformed PROXY line")
    _, family, source, _destination, port, _destination_port = fields
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        raise ProxyHeaderError(f"bad source address {source!r}") from None
    if (address.version == 4) != (family == "TCP4"):
        raise ProxyHeaderError("address does not match its family")
    if not port.isdigit() or not 0 <= int(port) < 65536 or len(port) > 5:
        raise ProxyHeaderError(f"bad source port {port!r}")
    return ProxyHeader(end + 2, (str(address), int(port)))


def _v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    version_command, family, length = data[12], data[13], int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2 or version_command & 0x0F not in (0, 1):
        raise ProxyHeaderError("unknown PROXY version or command")
    if 16 + length > V2_MAX:
        raise ProxyHeaderError("PROXY header too long")
    if len(data) < 16 + length:
        return None
    total = 16 + length
    if version_command & 0x0F == 0:  # LOCAL: the proxy's own connection
        return ProxyHeader(total, None)
    body = data[16:total]
    if family == 0x11 and length >= 12:  # TCP over IPv4
        address = str(ipaddress.IPv4Address(body[0:4]))
        return ProxyHeader(total, (address, int.from_bytes(body[8:10], "big")))
    if family == 0x21 and length >= 36:  # TCP over IPv6
        address = str(ipaddress.IPv6Address(body[0:16]))
        return ProxyHeader(total, (address, int.from_bytes(body[32:34], "big")))
    if family >> 4 == 0 or family & 0x0F != 1:
        return ProxyHeader(total, None)  # UNSPEC, or not a stream: no address we can use
    raise ProxyHeaderError("PROXY addresses shorter than their family")
