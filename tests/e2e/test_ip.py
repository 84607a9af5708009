"""End to end over the second path: the real CLIs as subprocesses, the receiver
listening on loopback TCP beside its modem bank on the virtual network."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import sqlite3

import pytest

from callhome import exitcodes

from .system import System


@pytest.fixture
async def system(tmp_path):
    """The usual centre (two modems), also listening on a loopback TCP port."""
    system = System(tmp_path)
    await system.start()
    with system.centre_config.open("a") as config:
        config.write('\n[ip]\nlisten = ["127.0.0.1:0"]\nhandshake_timeout = "10s"\n')
    await system.start_receiver()
    system.ip = await _listening(system)
    yield system
    await system.stop()


async def _listening(system: System, after: int = 0) -> str:
    event = await system.wait_for("ip.listening", after=after)
    return event["addresses"][0]


async def _ip_client(system: System, name: str, number: str, *, order: str = "ip", **kw):
    """A client with its modem and the centre's address; `order` says which first."""
    client = await system.add_client(name, number, **kw)
    paths = (
        f'lan = "{system.ip}"\nphone = "modem"\n'
        if order == "ip"
        else f'phone = "modem"\nlan = "{system.ip}"\n'
    )
    with client.config.open("a") as config:
        config.write(f"\n[paths]\n{paths}")
    return client


async def test_a_report_over_ip_is_delivered_once_and_its_path_recorded(system):
    client = await _ip_client(system, "plant-a", "5550001")
    result = await client.cli(
        "send", "--severity", "warning", "--component", "psu1", "--message", "low"
    )
    assert result.code == 0, result
    assert "connected: TCP 127.0.0.1:" in result.out and "1 of 1 acknowledged" in result.out
    assert "dialling" not in result.out  # the first path carried it
    (stored,) = await system.reports("--kind", "report")
    assert (stored["device"], stored["component"], stored["path"]) == ("plant-a", "psu1", "ip")
    await system.wait_for("call.ended", device="plant-a")
    (call,) = await system.calls()
    assert (call["path"], call["outcome"], call["port"]) == ("ip", "completed", "ip")
    table = (await system.receiver_cli("calls")).out
    assert "ip    ip" in table.splitlines()[1]  # the path column, then the port
    only = await client.cli("line-test", "--path", "lan", "--json")
    assert only.code == 0 and json.loads(only.out)["path"] == "lan", only
    wrong = await client.cli("line-test", "--path", "carrier-pigeon")
    assert wrong.code == exitcodes.USAGE and "no path named 'carrier-pigeon'" in wrong.err
    status = await system.receiver_cli("ip")
    assert status.code == 0 and "listening on 127.0.0.1:" in status.out, status


@pytest.mark.slow
async def test_line_test_of_every_path_one_row_each(system):
    client = await _ip_client(system, "plant-b", "5550002")
    both = await client.cli("line-test", "--all-paths", timeout=180)
    assert both.code == 0, both
    rows = both.out.strip().splitlines()[-2:]
    assert rows[0].startswith("lan ") and rows[0].endswith("ok")
    assert rows[1].startswith("phone ") and rows[1].endswith("ok")
    tests = await system.reports("--kind", "line-test")
    assert sorted(t["path"] for t in tests) == ["ip", "modem"]
    assert sorted(t["content"]["path_tested"] for t in tests) == ["lan", "phone"]


@pytest.mark.slow  # the short versions: tests/ip/test_listener.py, test_dialer.py
async def test_unknown_revoked_and_wrong_centre_key_over_ip(system):
    rogue = await _ip_client(system, "rogue", "5550666", enroll=False)
    result = await rogue.cli("line-test", "--path", "lan")
    assert result.code == exitcodes.REFUSED, result
    assert "refused by the centre (unknown device)" in result.out
    client = await _ip_client(system, "plant-f", "5550006")
    assert (await system.receiver_cli("revoke", "plant-f")).code == 0
    result = await client.cli("line-test", "--path", "lan")
    assert result.code == exitcodes.REFUSED and "(revoked)" in result.out, result
    await system.wait_for("call.ended", count=2)
    outcomes = [(c["device"], c["outcome"], c["path"]) for c in await system.calls()]
    assert outcomes == [
        ("plant-f", "refused: revoked", "ip"),
        (None, "refused: unknown device", "ip"),
    ]
    impostor = await _ip_client(system, "plant-w", "5550010")
    config = impostor.config.read_text()
    fake = base64.b64encode(os.urandom(32)).decode()
    impostor.config.write_text(config.replace(system.centre_key, fake))
    result = await impostor.cli("line-test", "--path", "lan")
    assert result.code == exitcodes.PROTOCOL, result
    assert "wrong centre public key" in result.out
    assert len(await impostor.queue()) == 1  # nothing lost
    await system.stop_receiver()  # the counters are written on the way out
    status = json.loads((await system.receiver_cli("ip", "--json")).out)
    assert status["refused"]["undecryptable"] == 1, status


class SlowRelay:
    """A TCP relay in front of the centre that passes the device's bytes on slowly
    (`rate` bytes a second) and the centre's at once: the TCP path's slow line."""

    def __init__(self, target: str, rate: float) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.rate = rate
        self.pending = 0
        self.forwarded = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def down() -> None:
            while data := await up_reader.read(4096):
                writer.write(data)
                await writer.drain()
            writer.close()

        async def up() -> None:
            while data := await reader.read(4096):
                self.pending += len(data)
                for index in range(0, len(data), 8):
                    await asyncio.sleep(8 / self.rate)
                    up_writer.write(data[index : index + 8])
                    self.pending -= len(data[index : index + 8])
                    self.forwarded += len(data[index : index + 8])
            up_writer.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(down(), up())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_receiver_killed_between_receipt_and_commit_over_ip(system):
    # 200 bytes/s: the report's frame takes about 2 s to cross after the handshake,
    # time enough for the test to lock the store however loaded the machine
    relay = SlowRelay(system.ip, rate=200.0)
    through = await relay.start()
    client = await system.add_client("plant-d", "5550004")
    with client.config.open("a") as config:
        config.write(f'\n[paths]\nlan = "{through}"\n')
    before = len(system.events())
    sending = asyncio.ensure_future(
        client.cli(
            "send", "--severity", "error", "--component", "fan2", "--message", os.urandom(300).hex()
        )
    )
    # the centre answered the handshake; the device's first record (the report) is
    # still trickling in: lock the store, so the centre receives it but cannot commit
    await system.wait_for("call.handshake", after=before, device="plant-d")
    lock = sqlite3.connect(system.centre_config.parent / "centre.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while relay.pending or relay.forwarded < 400:  # HS1, then the report (> 300 bytes)
        assert loop.time() < deadline, (relay.pending, relay.forwarded)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the report is in the receiver's hands
    assert not [e for e in system.events()[before:] if e.get("event") == "message.stored"]
    await system.stop_receiver(signal.SIGKILL)
    lock.execute("ROLLBACK")
    lock.close()
    first = await sending
    assert first.code == exitcodes.NO_CARRIER, first  # cut after the handshake
    assert len(await client.queue()) == 1
    assert await system.reports("--kind", "report") == []
    before = len(system.events())
    await system.start_receiver()
    system.ip = await _listening(system, before)
    await relay.stop()
    text = client.config.read_text()
    client.config.write_text(text.replace(through, system.ip))
    second = await client.cli("line-test")
    assert second.code == 0, second
    (stored,) = await system.reports("--kind", "report")
    assert stored["component"] == "fan2" and stored["path"] == "ip"
    assert await client.queue() == []


@pytest.mark.slow  # the short version: tests/ip/test_dialer.py
async def test_the_ip_path_down_the_modem_carries_the_report(system):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    client = await system.add_client("plant-m", "5550007", attempts=1)
    with client.config.open("a") as config:
        config.write(f'\n[paths]\nlan = "{dead}"\nphone = "modem"\n')
    result = await client.cli("send", "--severity", "critical", "--component", "ups")
    assert result.code == 0, result
    assert "path lan:" in result.out and "dialling 5550100" in result.out
    (stored,) = await system.reports("--kind", "report")
    assert stored["path"] == "modem"


async def test_a_receiver_on_uvloop_serves_its_modems_and_its_tcp_port(tmp_path):
    """`[centre] event_loop = "uvloop"`: the same bank (pty modems through
    pyserial-asyncio-fast) and listener on libuv's loop, which the TCP path chose for
    its CPU per call; each path carries a report, and SIGTERM stops it cleanly."""
    system = System(tmp_path)
    await system.start(event_loop="uvloop")
    try:
        with system.centre_config.open("a") as config:
            config.write('\n[ip]\nlisten = ["127.0.0.1:0"]\nhandshake_timeout = "10s"\n')
        await system.start_receiver()
        system.ip = await _listening(system)
        modem = await system.add_client("plant-m", "5550001")
        over_modem = await modem.cli("send", "--severity", "warning", "--component", "psu1")
        assert over_modem.code == 0, over_modem
        lan = await _ip_client(system, "plant-i", "5550002")
        over_ip = await lan.cli("send", "--severity", "warning", "--component", "psu2")
        assert over_ip.code == 0 and "connected: TCP 127.0.0.1:" in over_ip.out, over_ip
        stored = {r["device"]: r["path"] for r in await system.reports("--kind", "report")}
        assert stored == {"plant-m": "modem", "plant-i": "ip"}
    finally:
        await system.stop()
    assert not [e for e in system.events() if e.get("level") in ("error", "critical")]
    (started,) = [e for e in system.events() if e["event"] == "bank.started"]
    assert started["event_loop"] == "uvloop"
    (stopped,) = [e for e in system.events() if e["event"] == "bank.stopped"]
    # the store's counters: two calls, each recorded, counter advanced, report stored,
    # finished (4 writes), after one read at its handshake
    assert stopped["writes"] >= 8 and stopped["reads"] >= 2, stopped
    assert 1 <= stopped["commits"] <= stopped["store_trips"] <= stopped["writes"] + stopped["reads"]
