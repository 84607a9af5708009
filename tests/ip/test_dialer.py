"""The dialer over several paths, in-process: one centre with a modem bank and a TCP
listener, one client with a modem on the virtual network and the centre's address."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from callhome import exitcodes
from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from receiver.ip import IpListener
from tests.bankworld import bank_world

from .helpers import CuttingRelay


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def world(tmp_path):
    async with bank_world(tmp_path) as base:
        bank = base.bank()
        listener = IpListener(bank, ["127.0.0.1:0"])
        await listener.start()
        bank.services.append(listener)
        host, port = listener.bound[0]

        def config(**paths: str) -> ClientConfig:
            return base.config(path_specs=paths)

        world = type("World", (), {})()
        world.network, world.store, world.spool = base.network, base.store, base.spool
        world.key, world.config, world.ip = base.device_key, config, f"{host}:{port}"
        world.bank, world.listener, world.tmp = bank, listener, tmp_path
        world.settled = base.settled
        async with base.serving(bank):
            yield world


async def test_the_modem_path_fails_and_the_ip_path_carries_the_report(world):
    world.spool.enqueue(Kind.REPORT, {"severity": "error", "component": "psu"})
    config = world.config(phone="modem", lan=world.ip)
    config.ports = ["inproc://no-such-modem"]
    report = await call_centre(config, world.spool, world.key)
    assert report.result == "ok" and report.path == "lan", report
    assert [a["result"] for a in report.attempts] == ["modem", "connected"]
    (stored,) = world.store.messages()
    assert stored.path == "ip" and world.spool.queued() == []


async def test_the_ip_path_fails_and_the_modem_carries_the_report(world):
    world.spool.enqueue(Kind.REPORT, {"severity": "error", "component": "fan"})
    config = world.config(lan=f"127.0.0.1:{closed_port()}", phone="modem")
    report = await call_centre(config, world.spool, world.key)
    assert report.result == "ok" and report.path == "phone", report
    assert [a["result"] for a in report.attempts] == ["no carrier", "connected"]
    (stored,) = world.store.messages()
    assert stored.path == "modem"
    await world.settled()
    assert world.store.calls()[0].path == "modem"


async def test_a_message_cut_on_the_modem_resumes_over_ip(world):
    big = {"severity": "error", "component": "raid0", "log": os.urandom(6000).hex()}
    world.spool.enqueue(Kind.REPORT, big)
    world.network.set_next_call("plant", drop_after_bytes=5000)
    first = await call_centre(world.config(phone="modem"), world.spool, world.key)
    assert first.result == "dropped", first
    assert len(world.spool.queued()) == 1 and world.store.messages() == []
    await world.settled()
    second = await call_centre(world.config(lan=world.ip), world.spool, world.key)
    assert second.result == "ok" and second.path == "lan", second
    (stored,) = world.store.messages()
    assert stored.path == "ip" and stored.content  # delivered once, whole
    await world.settled()
    calls = world.store.calls()
    assert [(c.path, c.outcome) for c in calls] == [("ip", "completed"), ("modem", "dropped")]
    # it resumed: the IP call carried the rest (~3 kB), not the whole (~7 kB compressed)
    assert calls[0].bytes_in < 5000 < calls[0].bytes_in + calls[1].bytes_in


async def test_every_path_down_is_no_carrier(world):
    world.spool.enqueue(Kind.REPORT, {"severity": "info"})
    config = world.config(lan=f"127.0.0.1:{closed_port()}")
    report = await call_centre(config, world.spool, world.key)
    assert report.result == "no carrier" and report.exit_code == exitcodes.NO_CARRIER
    assert "127.0.0.1" in report.detail and len(world.spool.queued()) == 1


async def test_a_message_cut_over_ip_resumes_over_ip(world):
    big = {"severity": "error", "component": "raid1", "log": os.urandom(6000).hex()}
    world.spool.enqueue(Kind.REPORT, big)
    relay = CuttingRelay(world.ip, cut_after=4000)
    through = await relay.start()
    try:
        first = await call_centre(world.config(lan=through), world.spool, world.key)
    finally:
        relay.close()
    assert first.result == "dropped" and first.path == "lan", first
    assert first.exit_code == exitcodes.NO_CARRIER
    assert len(world.spool.queued()) == 1 and world.store.messages() == []
    await world.settled()
    second = await call_centre(world.config(lan=world.ip), world.spool, world.key)
    assert second.result == "ok", second
    assert len(world.store.messages()) == 1 and world.spool.queued() == []
    await world.settled()
    calls = world.store.calls()
    assert [(c.path, c.outcome) for c in calls] == [("ip", "completed"), ("ip", "dropped")]
    assert calls[0].bytes_in < 5000 < calls[0].bytes_in + calls[1].bytes_in  # resumed


async def test_wrong_centre_key_over_ip_is_a_protocol_error_and_counted(world):
    world.spool.enqueue(Kind.LINE_TEST, {"time": 1})
    config = world.config(lan=world.ip)
    config.centre_key = public_of(write_private_key(world.tmp / "impostor.key"))
    report = await call_centre(config, world.spool, world.key)
    assert report.result == "protocol" and "wrong centre public key" in report.detail, report
    assert len(world.spool.queued()) == 1  # nothing lost
    admission = world.listener.admission
    for _ in range(500):
        if admission.refused["undecryptable"]:
            break
        await asyncio.sleep(0.01)
    assert admission.refused["undecryptable"] == 1 and world.store.calls() == []


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
async def test_an_ipv6_path(world, tmp_path):
    listener = IpListener(world.bank, ["[::1]:0"])
    await listener.start()
    world.bank.services.append(listener)
    serving = asyncio.ensure_future(listener.run())
    try:
        world.spool.enqueue(Kind.REPORT, {"severity": "info", "component": "v6"})
        host, port = listener.bound[0]
        report = await call_centre(world.config(v6=f"[{host}]:{port}"), world.spool, world.key)
        assert report.result == "ok" and report.number == f"[::1]:{port}", report
        await world.settled()
        (call,) = world.store.calls()
        assert call.path == "ip" and call.caller_id.startswith("[::1]:")
    finally:
        world.bank.stopping.set()
        await asyncio.wait_for(serving, 10)


async def test_a_connection_reset_before_the_centre_speaks_moves_on_to_the_next_path(world):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()  # the listener's limits, or a proxy with nothing behind

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    world.spool.enqueue(Kind.REPORT, {"severity": "info"})
    try:
        config = world.config(lan=f"127.0.0.1:{port}", phone="modem")
        report = await call_centre(config, world.spool, world.key)
    finally:
        server.close()
    assert report.result == "ok" and report.path == "phone", report
    assert [a["result"] for a in report.attempts] == ["dropped", "connected"]


async def test_a_refusal_over_ip_is_final_the_modem_is_not_tried(world):
    world.store.revoke("plant", 0.0)
    world.spool.enqueue(Kind.REPORT, {"severity": "info"})
    config = world.config(lan=world.ip, phone="modem")
    report = await call_centre(config, world.spool, world.key)
    assert report.result == "refused" and report.detail == "revoked", report
    assert [a["result"] for a in report.attempts] == ["connected"]
    assert report.exit_code == exitcodes.REFUSED and len(world.spool.queued()) == 1
