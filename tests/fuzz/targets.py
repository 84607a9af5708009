"""One fuzz target per parser that takes input from outside: the line, the modem, a
config file. A target takes arbitrary bytes and may end only in the typed error its
parser promises (the `expected` exceptions); anything else is a finding.

Run them with atheris for a time budget (`make fuzz`, `python -m tests.fuzz`), or with
the plain mutation loop of `tests.fuzz.runner` (what CI does for a few seconds each).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callhome.wire.client import ClientSession
from callhome.wire.errors import ProtocolError
from callhome.wire.events import CallFailed, HandshakeRequested
from callhome.wire.framing import MAX_BODY, FrameCheck, FrameDecoder, encode_frame
from callhome.wire.messages import (
    CURRENT_DICTIONARY,
    Kind,
    decode_body,
    decode_content,
    encode_message,
    load_dictionary,
)
from callhome.wire.noise import IKHandshake, generate_private_key, public_key
from callhome.wire.records import HANDSHAKE_TYPES, Reader, decode_segments
from callhome.wire.server import ServerSession
from callhome.wire.streamframing import StreamDecoder
from modem_drivers.configfile import ConfigError
from modem_drivers.hayes.errors import ModemError
from modem_drivers.hayes.framer import LineFramer
from modem_drivers.hayes.state import CommandKind, ModemCore
from receiver.proxyheader import ProxyHeaderError
from receiver.proxyheader import parse as parse_proxy_header


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    expected: tuple[type[BaseException], ...]
    seeds: tuple[bytes, ...] = ()

    def __call__(self, data: bytes) -> None:
        try:
            self.run(data)
        except self.expected:
            pass


def _chunks(data: bytes) -> list[bytes]:
    """The first byte chooses how the rest is cut: the parsers must not care."""
    if not data:
        return [b""]
    step = data[0] % 17 + 1
    rest = data[1:]
    return [rest[i : i + step] for i in range(0, len(rest), step)] or [b""]


# -- the protocol ------------------------------------------------------------------------


def _framing(data: bytes) -> None:
    # the first byte picks the check (v1, or v2 with handshake types on v1, as a call has)
    check = FrameCheck.V2 if data[:1] and data[0] & 0x80 else FrameCheck.V1
    decoder = FrameDecoder(check=check, v1_types=HANDSHAKE_TYPES)
    for chunk in _chunks(data):
        for body in decoder.feed(chunk):
            assert len(body) <= decoder.max_wire


def _stream_framing(data: bytes) -> None:
    decoder = StreamDecoder()
    for chunk in _chunks(data):
        for body in decoder.feed(chunk):
            assert 0 < len(body) <= MAX_BODY


def _proxy_header(data: bytes) -> None:
    header = parse_proxy_header(data)
    assert header is None or 0 < header.length <= len(data)


def _records(data: bytes) -> None:
    decode_segments(Reader(data))
    decode_segments(Reader(data), compact=True)


_DICTIONARY = load_dictionary(CURRENT_DICTIONARY)


def _messages(data: bytes) -> None:
    flag, body = (data[:1] or b"\x00"), data[1:]
    raw = decode_body(body, bool(flag[0] & 1), _DICTIONARY)
    decode_content(raw)


_CENTRE = generate_private_key()
_DEVICE = generate_private_key()
_HS1 = IKHandshake(
    initiator=True, static_private=_DEVICE, remote_static=public_key(_CENTRE)
).write_message_1(b"payload")


def _noise_responder(data: bytes) -> None:
    """The centre reading a first handshake message: garbage, or a genuine one mutated."""
    responder = IKHandshake(initiator=False, static_private=_CENTRE)
    message = data[1:] if data[:1] == b"\x00" else _mix(_HS1, data)
    responder.read_message_1(message)


def _noise_initiator(data: bytes) -> None:
    """The device reading the second handshake message; a failure must leave its state
    as it was, so the genuine answer still works afterwards."""
    initiator = IKHandshake(
        initiator=True, static_private=_DEVICE, remote_static=public_key(_CENTRE)
    )
    hs1 = initiator.write_message_1(b"")
    responder = IKHandshake(initiator=False, static_private=_CENTRE)
    responder.read_message_1(hs1)
    genuine = responder.write_message_2(b"")
    try:
        initiator.read_message_2(_mix(genuine, data))
    except ProtocolError:
        initiator.read_message_2(genuine)  # the forged answer poisoned nothing
        return
    initiator.keys()


def _mix(genuine: bytes, data: bytes) -> bytes:
    """`data` laid over a genuine message (so the fuzzer gets past the length checks)."""
    if not data:
        return genuine
    at = data[0] % (len(genuine) + 1)
    return genuine[:at] + data[1:] + genuine[at + len(data) - 1 :]


_MESSAGE = encode_message(Kind.REPORT, {"component": "fan", "data": "x" * 3000}, _DICTIONARY)


def _client() -> ClientSession:
    client = ClientSession(
        static_private=_DEVICE, server_public=public_key(_CENTRE), call_counter=1, epoch=7
    )
    client.queue(1, _MESSAGE)  # mid-transfer when the fuzzed bytes come
    return client


def _sessions(established: bool, fuzz_server: bool) -> Callable[[bytes], None]:
    """One side of a call fed arbitrary bytes (at rising times, with its timers), before
    the handshake or after it: only typed failures (CallFailed events) may come out."""

    def run(data: bytes) -> None:
        client, server = _client(), ServerSession(static_private=_CENTRE)
        client.start(0.0)
        server.start(0.0)
        if established:
            for event in server.receive_data(client.data_to_send(), 0.1):
                if isinstance(event, HandshakeRequested):
                    server.accept(0.1, clock_ms=0)
            client.receive_data(server.data_to_send(), 0.2)
            server.receive_data(client.data_to_send(), 0.25)  # the caller proves it is live
        side = server if fuzz_server else client
        now = 0.3
        for chunk in _chunks(data):
            now += 0.5
            events = side.receive_data(chunk, now)
            deadline = side.next_deadline()
            if deadline is not None and chunk[:1] == b"\x00":
                events += side.handle_timer(max(now, deadline))
            for event in events:
                if isinstance(event, CallFailed):
                    assert isinstance(event.error, ProtocolError)
            side.data_to_send()

    return run


# -- the modem ---------------------------------------------------------------------------


def _hayes_framer(data: bytes) -> None:
    framer = LineFramer()
    for chunk in _chunks(data):
        framer.feed(chunk)
        while (line := framer.next_line()) is not None:
            assert 0 < len(line.text) <= framer.max_line


def _hayes_core(data: bytes) -> None:
    """The core in the state the first byte picks, fed the rest at rising times, with a
    tick between chunks: only its own errors may come out."""
    core = ModemCore()
    core.opened()
    now = 0.0
    mode = data[:1][0] % 4 if data else 0
    if mode == 1:
        core.start_command(b"ATI3", CommandKind.COMMAND, now, 3.0, expects_info=True)
    elif mode == 2:
        core.start_command(b"ATD5550100", CommandKind.DIAL, now, 60.0)
    elif mode == 3:
        core.start_command(b"ATD5550100", CommandKind.DIAL, now, 60.0)
        core.receive(b"\r\nCONNECT 2400\r\n", now)
    for chunk in _chunks(data):
        now += 0.05
        core.receive(chunk, now)
        deadline = core.next_deadline()
        if deadline is not None and chunk[:1] == b"\x00":
            now = max(now, deadline)
            core.tick(now)


def _virtual_modem(data: bytes) -> None:
    """The virtual modem's command interpreter (what a DTE sends it), with a call."""
    from modem_drivers.virtual.network import PhoneNetwork

    network = PhoneNetwork()
    network.add_modem("a", "generic", number="5550001")
    network.add_modem("b", "usr", number="5550002")
    modem = network.modem("a")
    for chunk in _chunks(data):
        modem.receive(chunk)
        network.run_for(0.5)


# -- config files ----------------------------------------------------------------------------


def _config(parse: Callable[[Path], object]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        handle, name = tempfile.mkstemp(suffix=".toml")
        try:
            os.write(handle, data)
            os.close(handle)
            parse(Path(name))
        finally:
            os.unlink(name)

    return run


def _client_config(path: Path) -> object:
    from callhome.client.config import load_client_config

    return load_client_config(path)


def _centre_config(path: Path) -> object:
    from receiver.config import load_centre_config

    return load_centre_config(path)


def _sim_config(path: Path) -> object:
    from modem_drivers.virtual.config import load_config

    return load_config(path)


_CLIENT_SEED = b"""[device]
name = "plant"
[centre]
public_key = "AAAA"
numbers = ["5550100", "127.0.0.1:6400"]
[modem]
ports = ["/dev/ttyUSB0"]
init = ["S0=1"]
skip = ["+VCID"]
time_scale = 1.0
[calls]
attempts = 3
retry_delay = "60s"
"""
_CENTRE_SEED = b"""[centre]
name = "centre"
[bank]
ports = ["/dev/ttyS0"]
rings = 1
health_check = "5m"
drain = "60s"
time_scale = 1.0
[devices]
test_interval = "24h"
grace = "15m"
"""

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "framing",
            _framing,
            (),
            (
                b"\x00\x05\x01\x02\x03\x00",
                b"\x83" + encode_frame(b"\x03\x00ab", FrameCheck.V2),
            ),
        ),
        Target("stream-framing", _stream_framing, (ProtocolError,), (b"\x03\x00\x02\x01\x02",)),
        Target(
            "proxy-header",
            _proxy_header,
            (ProxyHeaderError,),
            (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"),
        ),
        Target("records", _records, (ProtocolError,), (b"\x01\x00\x02",)),
        Target("messages", _messages, (ProtocolError,), (b"\x00\xa1\x61a\x61b",)),
        Target("noise-responder", _noise_responder, (ProtocolError,), (b"\x05abc",)),
        Target("noise-initiator", _noise_initiator, (), (b"\x07\xff\x00",)),
        Target("client-handshake", _sessions(False, False), (), (b"\x03\x00\x02abc\x00",)),
        Target("server-handshake", _sessions(False, True), (), (b"\x03\x00\x01abc\x00",)),
        Target("client-established", _sessions(True, False), (), (b"\x03\x00\x03ab\x00",)),
        Target("server-established", _sessions(True, True), (), (b"\x03\x00\x03ab\x00",)),
        Target("hayes-framer", _hayes_framer, (), (b"\x03\r\nOK\r\n0\rRING\r\n",)),
        Target(
            "hayes-core",
            _hayes_core,
            (ModemError,),
            (b"\x01\r\nGENERIC\r\n\r\nOK\r\n", b"\x03data\r\nNO CARRIER\r\n\x00"),
        ),
        Target(
            "virtual-modem",
            _virtual_modem,
            (),
            (b"\x03ATE0V1\rATD5550002\r", b"\x01AT+VCID=1\rATI3\rATS7?\r+++"),
        ),
        Target("client-config", _config(_client_config), (ConfigError,), (_CLIENT_SEED,)),
        Target("centre-config", _config(_centre_config), (ConfigError,), (_CENTRE_SEED,)),
        Target("sim-config", _config(_sim_config), (ConfigError,), (b"[[modem]]\nname='a'\n",)),
    )
}
