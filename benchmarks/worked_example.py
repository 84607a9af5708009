"""Print the worked example of docs/protocol.md: one line-test call, every frame in hex.

    python -m benchmarks.worked_example

All keys are fixed, so the output is the same on every run (and the document can be
checked against it).
"""

from __future__ import annotations

import sys

from callhome.wire.framing import FrameCheck, cobs_decode, unstuff
from callhome.wire.messages import Kind, encode_message, load_dictionary
from callhome.wire.noise import public_key
from callhome.wire.records import HANDSHAKE_TYPES
from callhome.wire.session import ClientSession, ServerSession
from callhome.wire.transfer import TransferConfig

DEVICE = bytes.fromhex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1")
CENTRE = bytes.fromhex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893")
DEVICE_E = bytes.fromhex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
CENTRE_E = bytes.fromhex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
NAMES = {1: "HS1", 2: "HS2", 3: "DATA", 4: "ACK", 5: "NOTICE"}


def frames(data: bytes) -> list[bytes]:
    return [b"\x00" + part + b"\x00" for part in data.split(b"\x00") if part]


def show(direction: str, wire: bytes) -> None:
    checked = cobs_decode(unstuff(wire.strip(b"\x00")))
    check = FrameCheck.V1 if checked[0] in HANDSHAKE_TYPES else FrameCheck.V2
    body = checked[: -check.size]
    print(
        f"{direction} {NAMES.get(body[0], '?')}: {len(wire)} bytes on the wire, "
        f"body {len(body)} bytes, check v{check.value}"
    )
    for start in range(0, len(wire), 32):
        print("    " + wire[start : start + 32].hex(" "))


def main() -> int:
    config = TransferConfig(line_rate=2400)
    message = encode_message(
        Kind.LINE_TEST,
        {
            "skew_ms": -120,
            "previous": {"result": "ok", "connect_ms": 11210, "total_ms": 14870, "rate": 33600},
        },
        load_dictionary(1),
    )
    client = ClientSession(
        static_private=DEVICE,
        server_public=public_key(CENTRE),
        call_counter=42,
        epoch=0x1234ABCD,
        config=config,
        dictionary_id=1,  # the example as documented; dictionary 2 works the same way
        ephemeral_private=DEVICE_E,
    )
    client.queue(7, message)
    client.finish()
    server = ServerSession(static_private=CENTRE, config=config, ephemeral_private=CENTRE_E)
    server.start(0.0)
    client.start(0.0)
    up = client.data_to_send()
    for wire in frames(up):
        show("->", wire)
    print(
        f"   (payload: version 1, caps 1, dictionary 1, epoch 1234abcd, counter 42; "
        f"message body {len(message.body)} bytes, compressed)"
    )
    server.receive_data(up, 0.5)
    server.accept(0.5, clock_ms=1_764_144_000_123)
    down = server.data_to_send()
    for wire in frames(down):
        show("<-", wire)
    client.receive_data(down, 1.0)
    up = client.data_to_send()
    for wire in frames(up):
        show("->", wire)
    events = server.receive_data(up, 1.5)
    assert any(type(e).__name__ == "MessageReceived" for e in events)
    server.message_stored(7, 1.6)
    down = server.data_to_send()
    for wire in frames(down):
        show("<-", wire)
    print(f"total: {client.stats.bytes_out} bytes up, {server.stats.bytes_out} down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
