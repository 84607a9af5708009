"""The PROXY protocol header: versions 1 and 2, any chunking, bad input."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.proxyheader import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, parse


def v2(source: str, port: int, *, tlv: bytes = b"", local: bool = False) -> bytes:
    address = ipaddress.ip_address(source)
    if address.version == 4:
        family = 0x11
        body = address.packed + bytes(4) + port.to_bytes(2, "big") + b"\x1f\x90"
    else:
        family = 0x21
        body = address.packed + bytes(16) + port.to_bytes(2, "big") + b"\x1f\x90"
    body += tlv
    command = 0x20 if local else 0x21
    return V2_SIGNATURE + bytes([command, family]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize(
    ("header", "source"),
    [
        (b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 7070\r\n", ("192.0.2.7", 56324)),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 7070\r\n", ("2001:db8::7", 4000)),
        (b"PROXY UNKNOWN\r\n", None),
        (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", None),
        (v2("192.0.2.7", 56324), ("192.0.2.7", 56324)),
        (v2("2001:db8::7", 4000, tlv=b"\x04\x00\x01x"), ("2001:db8::7", 4000)),
        (v2("192.0.2.7", 1, local=True), None),
    ],
)
def test_headers_at_every_cut(header, source):
    frame = b"\x00\x6b\x01rest of the stream"
    for cut in range(len(header)):
        assert parse(header[:cut]) is None, cut
    assert parse(header + frame) == ProxyHeader(len(header), source)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x6b\x01" + bytes(40),  # our own protocol: no header from the proxy
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",
        b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 2\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2" + b" " * 120,
        b"PROXY TCP4 \xff 1 2 3\r\n",
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
        V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # IPv4 too short
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # longer than we take
    ],
)
def test_bad_headers(data):
    with pytest.raises(ProxyHeaderError):
        parse(data)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_none_or_the_error(data):
    try:
        result = parse(data)
    except ProxyHeaderError:
        return
    assert result is None or 0 < result.length <= len(data)
