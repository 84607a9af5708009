"""The bank in-process: a store that fails must cost a call, never the port."""

from __future__ import annotations

import asyncio
import contextlib

from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.errors import Refused
from callhome.wire.framing import encode_frame
from callhome.wire.messages import Kind
from callhome.wire.noise import IKHandshake
from callhome.wire.records import HS1, RefusalReason
from callhome.wire.session import PROLOGUE, CallFailed, ClientSession, ServerSession
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank, CallState
from receiver.store import AsyncStore, SQLiteStore, StoreUnavailable

SCALE = 0.05


class FlakyStore(SQLiteStore):
    """Cannot even record the first call (locked for too long, say)."""

    failures = 1

    def start_call(self, port, caller_id, started):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the store is locked by another process")
        return super().start_call(port, caller_id, started)


async def test_a_store_that_cannot_record_a_call_costs_that_call_only(tmp_path):
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    network.add_modem("bank0", "usr", number="5550100")
    network.add_modem("plant", "generic", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    bank_url = (await runner.expose("bank0", "inproc")).url
    plant_url = (await runner.expose("plant", "inproc")).url
    store = FlakyStore(tmp_path / "centre.db", create=True)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    spool = Spool(tmp_path / "spool.db", create=True)
    config = ClientConfig(
        path=tmp_path / "client.toml",
        name="plant",
        centre_key=public_of(centre_key),
        numbers=["5550100"],
        ports=[plant_url],
        time_scale=SCALE,
        attempts=1,
    )
    bank = Bank([bank_url], AsyncStore(store), centre_key, scale=SCALE)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        while bank.workers[0].state != "ready":
            await asyncio.sleep(0.02)
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        first = await call_centre(config, spool, device_key)
        assert first.result != "ok" and len(spool.queued()) == 1  # nothing lost
        second = await call_centre(config, spool, device_key)
        assert second.result == "ok", second
        assert spool.queued() == [] and len(store.messages()) == 1
        assert bank.workers[0].state == "ready" and not serving.done()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        spool.close()
        store.close()
        await runner.stop()


# -- decisions at the handshake, in-process (no modem) -----------------------------------


def _bank(tmp_path) -> tuple[Bank, SQLiteStore, bytes, bytes]:
    store = SQLiteStore(tmp_path / "centre.db", create=True)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    return Bank(["unused"], AsyncStore(store), centre_key), store, centre_key, device_key


async def _handshake(bank: Bank, server: ServerSession, frame: bytes) -> CallState:
    worker = bank.workers[0]
    state = CallState(worker.name, None)
    for event in server.receive_data(frame, 0.1):
        await worker._event(server, event, state)
    return state


async def test_an_unknown_protocol_version_is_refused_and_recorded(tmp_path):
    bank, store, centre_key, device_key = _bank(tmp_path)
    handshake = IKHandshake(
        initiator=True,
        static_private=device_key,
        remote_static=public_of(centre_key),
        prologue=PROLOGUE,
    )
    payload = bytes([2, 0, 1]) + b"\x00\x00\x00\x05\x01"
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = await _handshake(
        bank, server, encode_frame(bytes([HS1]) + handshake.write_message_1(payload))
    )
    assert state.outcome == "refused: unsupported version"
    assert state.error == "protocol version 2"
    assert state.device is not None and state.device.name == "plant"
    assert bank.refusals == {"unsupported version": 1}
    device = store.device_by_key(public_of(device_key))
    assert device is not None and device.last_counter == -1 and device.last_seen is None
    store.close()


async def test_a_draining_bank_answers_busy(tmp_path):
    bank, store, centre_key, device_key = _bank(tmp_path)
    bank.stopping.set()
    client = ClientSession(
        static_private=device_key, server_public=public_of(centre_key), call_counter=1, epoch=5
    )
    client.start(0.0)
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = await _handshake(bank, server, client.data_to_send())
    assert state.outcome == "refused: busy" and bank.refusals == {"busy": 1}
    (event,) = client.receive_data(server.data_to_send(), 0.2)
    assert isinstance(event, CallFailed) and isinstance(event.error, Refused)
    assert client.refusal is RefusalReason.BUSY
    store.close()
