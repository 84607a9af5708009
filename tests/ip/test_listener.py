"""The centre's TCP listener, in-process over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket

import structlog.testing

from callhome.keys import public_of, write_private_key
from callhome.tcp import connect_tcp, run_tcp_session, tcp_transfer_config
from callhome.wire.errors import Refused
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from callhome.wire.records import NOTICE, NOTICE_UNDECRYPTABLE
from callhome.wire.session import CallFailed, ClientSession
from callhome.wire.streamframing import encode_stream_frame
from modem_drivers.hayes import CallEnded
from receiver.ip import IpLimits

from .helpers import acknowledged, centre, enroll, send_report


async def _wait(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_report_over_tcp_is_stored_once_with_its_path(tmp_path):
    async with centre(tmp_path) as c:
        key = enroll(c, tmp_path, "plant")
        events = await send_report(c, key, 1, severity="warning", component="psu")
        assert acknowledged(events) == [1]
        await _wait(lambda: c.store.calls() and c.store.calls()[0].outcome != "in progress")
        (stored,) = c.store.messages()
        assert (stored.device, stored.component, stored.path) == ("plant", "psu", "ip")
        (call,) = c.store.calls()
        assert (call.path, call.port, call.outcome, call.device) == (
            "ip",
            "ip",
            "completed",
            "plant",
        )
        assert call.caller_id.startswith("127.0.0.1:")
        assert c.listener.admission.authenticated_count == 1


async def test_an_unknown_device_is_refused_and_recorded(tmp_path):
    async with centre(tmp_path) as c:
        stranger = write_private_key(tmp_path / "stranger.key")
        events = await send_report(c, stranger, 1, severity="info")
        (failed,) = [e for e in events if isinstance(e, CallFailed)]
        assert isinstance(failed.error, Refused) and failed.error.reason == "unknown device"
        await _wait(lambda: c.store.calls() and c.store.calls()[0].outcome != "in progress")
        (call,) = c.store.calls()
        assert (call.outcome, call.device, call.path) == ("refused: unknown device", None, "ip")
        assert c.bank.refusals == {"unknown device": 1}


async def test_a_revoked_device_is_refused_and_recorded(tmp_path):
    async with centre(tmp_path) as c:
        stranger = enroll(c, tmp_path, "ghost")
        c.store.revoke("ghost", 0.0)
        events = await send_report(c, stranger, 1, severity="info")
        (failed,) = [e for e in events if isinstance(e, CallFailed)]
        assert isinstance(failed.error, Refused) and failed.error.reason == "revoked"
        await _wait(lambda: c.store.calls() and c.store.calls()[0].outcome != "in progress")
        assert c.store.calls()[0].outcome == "refused: revoked"
        assert c.store.messages() == []


async def test_strangers_get_nothing_and_cost_no_call_record(tmp_path):
    limits = IpLimits(handshake_timeout=1.0, burst=3, rate=0.01)
    async with centre(tmp_path, limits) as c:
        host, port = c.address
        junk = await connect_tcp(host, port, 5.0)
        junk.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        silent = await connect_tcp(host, port, 5.0)
        for call in (junk, silent):
            await asyncio.wait_for(call.ended.wait(), 5.0)
            assert call.bytes_in == 0  # not one byte back
        # the bucket (burst 3) is spent: the next is reset at once
        third = await connect_tcp(host, port, 5.0)
        try:
            fourth = await connect_tcp(host, port, 5.0)
        except ConnectionResetError:
            pass  # the reset came before the connection was ours
        else:
            await asyncio.wait_for(fourth.ended.wait(), 5.0)
            assert fourth.bytes_in == 0
        await asyncio.wait_for(third.ended.wait(), 5.0)
        admission = c.listener.admission
        await _wait(lambda: admission.connections == 0)
        assert admission.refused["rate"] == 1
        assert admission.refused["handshake"] == 1 and admission.refused["deadline"] == 2
        assert c.store.calls() == []
    status = json.loads((tmp_path / "ip-status.json").read_text())
    assert status["refused"]["rate"] == 1 and status["admitted"] == 3


async def test_behind_a_proxy_the_limits_and_records_use_the_client_it_names(tmp_path):
    limits = IpLimits(burst=1, rate=0.001, handshake_timeout=2.0)
    async with centre(tmp_path, limits, proxies=["127.0.0.0/8"]) as c:
        key = enroll(c, tmp_path, "plant")
        header = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 7070\r\n"
        events = await send_report(c, key, 1, header=header, severity="info")
        assert acknowledged(events) == [1]
        await _wait(lambda: c.store.calls() and c.store.calls()[0].outcome != "in progress")
        (call,) = c.store.calls()
        assert call.caller_id == "192.0.2.7:40000" and call.path == "ip"
        # the same client again: its bucket (burst 1) is spent, not the proxy's
        other = b"PROXY TCP4 192.0.2.8 127.0.0.1 40001 7070\r\n"
        again = await send_report(c, key, 2, seq=2, header=header, severity="info")
        assert acknowledged(again) == []
        assert acknowledged(await send_report(c, key, 3, seq=3, header=other)) == [3]
        # no header, or not in time: refused, never taken for the proxy's own client
        host, port = c.address
        bare = await connect_tcp(host, port, 5.0)
        bare.write(b"\x00\x6b\x01" + bytes(107))
        await asyncio.wait_for(bare.ended.wait(), 5.0)
        silent = await connect_tcp(host, port, 5.0)
        await asyncio.wait_for(silent.ended.wait(), 5.0)
        admission = c.listener.admission
        await _wait(lambda: admission.refused["proxy header"] == 2)
        assert admission.refused["rate"] == 1 and bare.bytes_in == silent.bytes_in == 0


async def test_a_proxy_header_from_an_untrusted_address_is_not_believed(tmp_path):
    async with centre(tmp_path, proxies=["192.0.2.0/24"]) as c:
        key = enroll(c, tmp_path, "plant")
        header = b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 7070\r\n"
        events = await send_report(c, key, 1, header=header, severity="info")
        assert acknowledged(events) == [] and c.store.messages() == []
        await _wait(lambda: c.listener.admission.connections == 0)
        assert c.listener.admission.refused["handshake"] == 1  # a stream not ours


async def test_forged_handshakes_get_small_notices_then_the_connection_ends(tmp_path):
    async with centre(tmp_path) as c:
        host, port = c.address
        forger = await connect_tcp(host, port, 5.0)
        forged = encode_stream_frame(b"\x01" + os.urandom(105))
        for _ in range(5):
            with contextlib.suppress(CallEnded):
                forger.write(forged)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(forger.ended.wait(), 5.0)
        notices = await forger.read()
        # two NOTICEs of 4 bytes for 5 x 108 bytes sent: no amplification, then closed
        assert notices == encode_stream_frame(bytes([NOTICE, NOTICE_UNDECRYPTABLE])) * 2
        admission = c.listener.admission
        await _wait(lambda: admission.connections == 0)
        assert admission.refused["undecryptable"] == 1 and c.store.calls() == []


async def test_silent_peers_holding_every_handshake_slot_are_evicted_for_a_device(tmp_path):
    limits = IpLimits(max_handshakes=2, evict_after=0.2, handshake_timeout=30.0)
    async with centre(tmp_path, limits) as c:
        key = enroll(c, tmp_path, "plant")
        host, port = c.address
        squatters = [await connect_tcp(host, port, 5.0) for _ in range(2)]
        admission = c.listener.admission
        await _wait(lambda: admission.handshakes == 2)
        await asyncio.sleep(0.3)  # older than evict_after now
        events = await send_report(c, key, 1, severity="info")
        assert acknowledged(events) == [1]
        await asyncio.wait_for(squatters[0].ended.wait(), 5.0)  # the oldest made room
        assert squatters[1].open and admission.refused["evicted"] == 1
        squatters[1].abort()
        await _wait(lambda: admission.connections == 0 and admission.handshakes == 0)


async def test_refusals_are_logged_as_one_summary_per_interval(tmp_path):
    limits = IpLimits(burst=1, rate=0.001, handshake_timeout=0.3)
    async with centre(tmp_path, limits) as c:
        host, port = c.address
        calls = []
        for _ in range(4):
            with contextlib.suppress(ConnectionResetError):
                calls.append(await connect_tcp(host, port, 5.0))
        await _wait(lambda: c.listener.admission.connections == 0)
        with structlog.testing.capture_logs() as logs:
            c.listener._summary()
            c.listener._summary()  # nothing new: nothing logged
    (summary,) = [e for e in logs if e["event"] == "ip.refused"]
    assert summary["rate"] == 3 and summary["deadline"] == 1 and summary["total"] == 4


async def test_a_call_still_up_when_the_drain_ends_is_stopped_and_recorded(tmp_path):
    """The bank's hard stop reaches a TCP call that waits on its device (its loop is
    `run_tcp_session`, not the modem's): it ends at once and is recorded as stopped."""

    async def ignore(event) -> None:
        return None

    async with centre(tmp_path) as c:
        c.bank.drain_timeout = 0.2
        key = enroll(c, tmp_path, "plant")
        device = await connect_tcp(*c.address, 5.0)
        session = ClientSession(
            static_private=key,
            server_public=public_of(c.key),
            call_counter=1,
            epoch=7,
            config=tcp_transfer_config(),
        )
        session.queue(1, encode_message(Kind.REPORT, {}, load_dictionary(CURRENT_DICTIONARY)))
        session.start(asyncio.get_running_loop().time())  # never finishes: the call stays up
        idle = asyncio.ensure_future(run_tcp_session(device, session, ignore))
        await _wait(lambda: len(c.store.messages()) == 1)
        started = asyncio.get_running_loop().time()
    # the centre has stopped: its drain (0.2 s), then the hard stop
    assert asyncio.get_running_loop().time() - started < 5.0
    (call,) = c.store.calls()
    assert (call.path, call.outcome, call.device) == ("ip", "stopped", "plant")
    assert await asyncio.wait_for(idle, 5.0) == "carrier lost"


async def test_forged_handshakes_from_many_addresses_filling_the_cap_leave_room_for_a_device(
    tmp_path,
):
    """Sixteen connections from eight 127.x addresses fill `max_handshakes` in the same
    accept batch as a device's call (queued in the kernel before the listener runs), and
    hold their slots (no deadline, no age eviction in the test's time): the device's
    call still completes, as the oldest handshake of a source holding two is dropped for
    it before its task has even run."""
    limits = IpLimits(
        max_handshakes=16, max_handshakes_per_source=2, evict_after=60.0, handshake_timeout=60.0
    )
    async with centre(tmp_path, limits) as c:
        key = enroll(c, tmp_path, "plant")
        host, port = c.address
        forged = []
        for index in range(16):
            sock = socket.socket()
            sock.bind((f"127.0.3.{index // 2 + 1}", 0))
            sock.connect((host, port))  # completed by the kernel, not yet accepted
            sock.send(encode_stream_frame(os.urandom(107))[:40])  # a partial HS1: it waits
            forged.append(sock)
        admission = c.listener.admission
        assert admission.admitted == 0  # the listener has not run since
        events = await send_report(c, key, 1, severity="info")
        assert acknowledged(events) == [1]
        assert admission.refused["evicted"] == 1 and admission.refused["handshakes"] == 0
        assert admission.holding("127.0.3.1") == 1  # its oldest made room
        assert admission.handshakes == 15
        for sock in forged:
            sock.close()
        await _wait(lambda: admission.connections == 0 and admission.handshakes == 0)


def _slow_diffie_hellman(monkeypatch, seconds: float) -> None:
    """Every HS1 the centre reads costs `seconds` of the event loop (a blocking sleep: a
    slower CPU, or a busier one, without depending on this machine's load)."""
    import time

    from callhome.wire import server
    from callhome.wire.noise import IKHandshake

    class Slow(IKHandshake):
        def read_message_1(self, message: bytes) -> bytes:
            time.sleep(seconds)
            return super().read_message_1(message)

    monkeypatch.setattr(server, "IKHandshake", Slow)


def _forged_hs1s(host: str, port: int, sources: int, each: int) -> list[socket.socket]:
    """`sources` x `each` connections, each with a whole forged HS1 sent, completed by
    the kernel but not yet accepted (the listener has not run since)."""
    forged = []
    for index in range(sources * each):
        sock = socket.socket()
        sock.bind((f"127.0.4.{index % sources + 1}", 0))
        sock.connect((host, port))
        sock.send(encode_stream_frame(b"\x01" + os.urandom(105)))
        forged.append(sock)
    return forged


async def test_a_device_is_served_ahead_of_forged_hs1s_queued_from_many_sources(
    tmp_path, monkeypatch
):
    """400 forged HS1s from 10 addresses reach the centre just before a device's call,
    and each costs 5 ms (`_slow_diffie_hellman`: about 30 times a real one, so the
    budget per turn is 1 rather than 4). Processed as they arrive (the code before the
    handshake queue), they held the device's HS1 for 2 s (400 DHs); the queue serves one
    HS1 per source per round, so at most one of each flooding address goes before the
    device's. Counted in HS1s served, not in seconds: a wall-clock bound failed a run
    beside two CPU burners (1.22 s) for reasons that were not the queue's."""
    _slow_diffie_hellman(monkeypatch, 0.005)
    limits = IpLimits(
        max_handshakes=512,
        max_handshakes_per_source=40,
        burst=40,
        handshake_queue=512,
        handshakes_per_turn=1,
        handshake_timeout=30.0,
        evict_after=60.0,
    )
    async with centre(tmp_path, limits) as c:
        key = enroll(c, tmp_path, "plant")
        host, port = c.address
        queue = c.listener.handshake_queue
        waited: list[int] = []  # HS1s served while the device's waited its turn
        turn = c.listener.turn

        async def counted_turn(handler):
            before = queue.served
            go = await turn(handler)
            if not handler.source.startswith("127.0.4."):
                waited.append(queue.served - before - 1)
            return go

        monkeypatch.setattr(c.listener, "turn", counted_turn)
        forged = _forged_hs1s(host, port, sources=10, each=40)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # the device on a loop of its own (another machine): only the centre's waits count
        events = await asyncio.to_thread(
            asyncio.run,
            send_report(c, key, 1, severity="info"),  # type: ignore[arg-type]
        )
        took = loop.time() - started
        assert acknowledged(events) == [1]
        assert len(waited) == 1, waited  # the device's HS1, once
        assert waited[0] <= 10, f"{waited[0]} forged HS1s went first ({took:.2f} s)"
        admission = c.listener.admission
        await _wait(lambda: not c.listener.handshake_queue, 20.0)
        for sock in forged:
            sock.close()
        await _wait(lambda: admission.connections == 0 and admission.handshakes == 0)
        assert admission.refused["queue"] == 0 and admission.authenticated_count == 1


async def test_a_full_handshake_queue_drops_the_flooders_oldest_not_the_device(
    tmp_path, monkeypatch
):
    """A queue of 4 and 8 forged HS1s from one address: the device's HS1, from its
    own, stays; the flooder's oldest are reset and counted as "queue"."""
    _slow_diffie_hellman(monkeypatch, 0.005)
    limits = IpLimits(handshake_queue=4, handshakes_per_turn=1, handshake_timeout=30.0)
    async with centre(tmp_path, limits) as c:
        key = enroll(c, tmp_path, "plant")
        host, port = c.address
        forged = _forged_hs1s(host, port, sources=1, each=8)
        events = await send_report(c, key, 1, severity="info")
        assert acknowledged(events) == [1]
        admission = c.listener.admission
        await _wait(lambda: admission.refused["queue"] >= 1)
        for sock in forged:
            sock.close()
        await _wait(lambda: admission.connections == 0 and admission.handshakes == 0)
        assert c.listener.handshake_queue.dropped == admission.refused["queue"]
        c.listener._summary()
    status = json.loads((tmp_path / "ip-status.json").read_text())
    assert status["refused"]["queue"] >= 1 and status["queued"] == 0
