"""The bank answers on the first ring unless told to wait for caller ID (issue 18)."""

from __future__ import annotations

import asyncio

import pytest

from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.config import parse_centre_config
from receiver.store import AsyncStore, SQLiteStore

SCALE = 0.05


@pytest.mark.parametrize(
    ("wait", "cid_first", "rings", "caller"),
    [
        (False, False, 1, None),  # caller ID would come after the first ring: not waited for
        (False, True, 1, "5550001"),  # it came before the first ring: recorded
        (True, False, 1, "5550001"),  # the option: wait past the first ring for caller ID
    ],
)
async def test_answer_ring_and_caller_id(tmp_path, wait, cid_first, rings, caller):
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    bank_profile = "conexant" if cid_first else "usr"
    network.add_modem("bank0", bank_profile, number="5550100")
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
    answered: list[dict[str, object]] = []

    def notify(what: str, **fields: object) -> None:
        if what == "answered":
            answered.append(fields)

    bank = Bank(
        [bank_url],
        AsyncStore(store),
        centre_key,
        scale=SCALE,
        notify=notify,
        wait_for_caller_id=wait,
    )
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        while bank.workers[0].state != "ready":
            await asyncio.sleep(0.02)
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        report = await call_centre(config, spool, device_key)
        assert report.result == "ok", report
        assert [a["rings"] for a in answered] == [rings]
        calls = store.calls()
        assert [c.caller_id for c in calls] == [caller]
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)
        await runner.stop()


def test_the_option_in_the_config(tmp_path):
    base = {"centre": {"key": "k", "store": "s"}, "bank": {"ports": ["/dev/ttyS0"]}}
    assert parse_centre_config(base, tmp_path / "c.toml").wait_for_caller_id is False
    base["bank"]["wait_for_caller_id"] = True
    assert parse_centre_config(base, tmp_path / "c.toml").wait_for_caller_id is True
