"""A real call through the bank on the virtual network, with the console's hooks as
`run` sets them up: the bank's events and the timed store reach the metrics."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.metrics import TimedStore
from receiver.store import SQLiteStore
from receiver.web.live import Live

SCALE = 0.05


async def test_a_call_through_the_bank_is_counted(tmp_path: Path) -> None:
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    network.add_modem("bank0", "usr", number="5550100")
    network.add_modem("plant", "generic", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    bank_url = (await runner.expose("bank0", "inproc")).url
    plant_url = (await runner.expose("plant", "inproc")).url
    store = SQLiteStore(tmp_path / "centre.db", create=True)
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
    live = Live()
    bank = Bank(
        [bank_url],
        TimedStore(store, live.metrics),
        centre_key,
        scale=SCALE,
        notify=live.bank_event,
    )
    live.attach_bank(bank.workers)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        while bank.workers[0].state != "ready":
            await asyncio.sleep(0.02)
        assert live.port_counts() == {"ready": 1}
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        report = await call_centre(config, spool, device_key)
        assert report.result == "ok", report
        while bank.workers[0].in_call:
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        spool.close()
        store.close()
        await runner.stop()
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(live.metrics.render().decode())
        for sample in family.samples
    }
    calls = {key: value for key, value in found.items() if key[0] == "callhome_calls_total"}
    assert list(calls.values()) == [1.0] and ("port", "bank0") in next(iter(calls))[1]
    assert found[("callhome_messages_stored_total", (("kind", "line-test"),))] == 1
    assert found[("callhome_call_received_bytes_total", (("port", "bank0"),))] > 0
    assert found[("callhome_call_sent_bytes_total", (("port", "bank0"),))] > 0
    assert found[("callhome_handshake_duration_seconds_count", ())] == 1
    assert found[("callhome_call_duration_seconds_count", ())] == 1
    assert found[("callhome_acknowledgement_latency_seconds_count", ())] == 1
    assert found[("callhome_store_commit_seconds_count", (("operation", "finish_call"),))] == 1
