"""The bank tells supervision of every stored message; supervision runs inside it."""

from __future__ import annotations

import asyncio
import contextlib

from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.store import AsyncStore, SQLiteStore
from receiver.supervision.engine import State
from receiver.supervision.notify import ListNotifier
from receiver.supervision.service import Supervisor

SCALE = 0.05


async def test_a_line_test_call_brings_a_new_device_up(tmp_path):
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
    store.enroll("plant", public_of(device_key), test_interval=3600, grace=900, site="lyon")
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
    async_store = AsyncStore(store)
    supervisor = Supervisor(async_store, ListNotifier())
    bank = Bank(
        [bank_url],
        async_store,
        centre_key,
        scale=SCALE,
        supervisor=supervisor,
        wait_for_caller_id=True,  # the exchange comes from the caller ID
    )
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        while bank.workers[0].state != "ready":
            await asyncio.sleep(0.02)
        assert supervisor.engine.status("plant").state is State.NEW
        assert supervisor.expected_interval("plant") == 3600
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        report = await call_centre(config, spool, device_key)
        assert report.result == "ok", report
        assert report.test_interval == 3600  # what supervision expects, in the HS2
        for _ in range(200):
            if supervisor.engine.status("plant").state is State.UP:
                break
            await asyncio.sleep(0.02)
        status = supervisor.engine.status("plant")
        assert status.state is State.UP and set(status.paths) == {"modem"}
        assert status.deadline is not None and status.last is not None
        assert status.deadline == status.last + 3600
        assert not status.skewed  # the line test's own clock was read
        assert supervisor.incidents.attributes("plant") == {
            "site": "lyon",
            "port": "bank0",
            "exchange": "555000",
        }
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        spool.close()
        store.close()
        await runner.stop()
    (row,) = SQLiteStore(tmp_path / "centre.db").supervision_rows()
    assert row.state == State.UP and row.last_port == "bank0"


async def test_a_late_device_that_answers_a_callback_is_dial_out_broken_not_down(tmp_path):
    from callhome.client.dialer import _converse, _noop
    from callhome.link import modem_timings
    from modem_drivers.hayes import HayesModem
    from receiver.incident_events import Change
    from receiver.supervision import operations
    from receiver.supervision.callback import Policy
    from receiver.supervision.settings import SupervisionSettings

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
    # due one second after enrolment: late at once, its grace long
    store.enroll("plant", public_of(device_key), test_interval=1, grace=3600, site=None)
    operations.configure(
        store, SupervisionSettings(), "plant", 0.0, callback=Policy.LATE, number="5550001"
    )
    spool = Spool(tmp_path / "spool.db", create=True)
    config = ClientConfig(
        path=tmp_path / "client.toml",
        name="plant",
        centre_key=public_of(centre_key),
        numbers=["5550100"],
        ports=[plant_url],
        time_scale=SCALE,
    )
    spool.enqueue(Kind.LINE_TEST, line_test_content(spool))

    async def device_answers() -> str:
        """The agent's side: answer, run the ordinary session (its dial-out is broken)."""
        modem = HayesModem(plant_url, timings=modem_timings(SCALE), name="plant")
        await modem.connect()
        await modem.initialize()
        await modem.wait_for_call()
        outcome = await modem.answer()
        assert outcome.call is not None
        report = await _converse(
            config, spool, device_key, outcome.call, spool.next_call_counter(), _noop
        )
        await modem.close()
        return report.result

    answering = asyncio.ensure_future(device_answers())
    notifier = ListNotifier()
    async_store = AsyncStore(store)
    supervisor = Supervisor(async_store, notifier, SupervisionSettings(command_poll=0.05))
    bank = Bank([bank_url], async_store, centre_key, scale=SCALE, supervisor=supervisor)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        assert await asyncio.wait_for(answering, 60) == "ok"
        for _ in range(500):
            if notifier.events:
                break
            await asyncio.sleep(0.02)
        (event,) = notifier.events
        assert (event.kind, event.change, event.device) == (
            "dial_out_broken",
            Change.OPENED,
            "plant",
        )
        assert supervisor.engine.status("plant").state is State.LATE  # not restored by it
        assert len(store.messages()) == 1  # the line test was stored all the same
        (call,) = store.calls()
        assert call.caller_id == "callback:5550001" and call.outcome == "completed"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        answering.cancel()
        spool.close()
        store.close()
        await runner.stop()


async def test_the_centre_tells_the_device_the_interval_supervision_expects(tmp_path):
    from receiver.supervision import operations
    from receiver.supervision.engine import DailySchedule
    from receiver.supervision.settings import SupervisionSettings

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
    store.enroll("plant", public_of(device_key), test_interval=3600, grace=900, site=None)
    schedule = DailySchedule.parse("daily 03:00 Europe/Paris")
    operations.configure(store, SupervisionSettings(), "plant", 0.0, schedule=schedule)
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
    async_store = AsyncStore(store)
    supervisor = Supervisor(async_store, ListNotifier())
    bank = Bank([bank_url], async_store, centre_key, scale=SCALE, supervisor=supervisor)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        while bank.workers[0].state != "ready":
            await asyncio.sleep(0.02)
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        report = await call_centre(config, spool, device_key)
        assert report.result == "ok", report
        assert report.test_interval == 86400  # a daily schedule, not the enrolment's 1 h
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        spool.close()
        store.close()
        await runner.stop()
