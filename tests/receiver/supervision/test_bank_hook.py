"""The bank tells supervision of every stored message; supervision runs inside it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from receiver.store import AsyncStore, SQLiteStore
from receiver.supervision.engine import State
from receiver.supervision.notify import ListNotifier
from receiver.supervision.service import Supervisor
from tests.bankworld import bank_world


async def test_a_line_test_call_brings_a_new_device_up(tmp_path):
    async with bank_world(tmp_path, test_interval=3600, site="lyon") as world:
        async_store = AsyncStore(world.store)
        supervisor = Supervisor(async_store, ListNotifier())
        bank = world.bank(
            async_store,
            supervisor=supervisor,
            wait_for_caller_id=True,  # the exchange comes from the caller ID
        )
        async with world.serving(bank):
            assert supervisor.engine.status("plant").state is State.NEW
            assert supervisor.expected_interval("plant") == 3600
            report = await world.line_test()
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
    (row,) = SQLiteStore(tmp_path / "centre.db").supervision_rows()
    assert row.state == State.UP and row.last_port == "bank0"


async def test_a_late_device_that_answers_a_callback_is_dial_out_broken_not_down(tmp_path):
    from callhome.client.dialer import _converse, _noop, line_test_content
    from callhome.link import modem_timings
    from callhome.wire.messages import Kind
    from modem_drivers.hayes import HayesModem
    from receiver.incident_events import Change
    from receiver.supervision import operations
    from receiver.supervision.callback import Policy
    from receiver.supervision.settings import SupervisionSettings

    # due one second after enrolment: late at once, its grace long
    async with bank_world(tmp_path, test_interval=1, grace=3600) as world:
        store, spool, config = world.store, world.spool, world.config()
        operations.configure(
            store, SupervisionSettings(), "plant", 0.0, callback=Policy.LATE, number="5550001"
        )
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))

        async def device_answers() -> str:
            """The agent's side: answer, run the ordinary session (its dial-out is broken)."""
            modem = HayesModem(world.plant_url, timings=modem_timings(world.scale), name="plant")
            await modem.connect()
            await modem.initialize()
            await modem.wait_for_call()
            outcome = await modem.answer()
            assert outcome.call is not None
            report = await _converse(
                config, spool, world.device_key, outcome.call, spool.next_call_counter(), _noop
            )
            await modem.close()
            return report.result

        answering = asyncio.ensure_future(device_answers())
        notifier = ListNotifier()
        async_store = AsyncStore(store)
        supervisor = Supervisor(async_store, notifier, SupervisionSettings(command_poll=0.05))
        try:
            async with world.serving(world.bank(async_store, supervisor=supervisor)):
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
                assert supervisor.engine.status("plant").state is State.LATE  # not restored
                assert len(store.messages()) == 1  # the line test was stored all the same
                (call,) = store.calls()
                assert call.caller_id == "callback:5550001" and call.outcome == "completed"
        finally:
            answering.cancel()


async def test_the_centre_tells_the_device_the_interval_supervision_expects(tmp_path):
    from receiver.supervision import operations
    from receiver.supervision.engine import DailySchedule
    from receiver.supervision.settings import SupervisionSettings

    async with bank_world(tmp_path, test_interval=3600) as world:
        schedule = DailySchedule.parse("daily 03:00 Europe/Paris")
        operations.configure(world.store, SupervisionSettings(), "plant", 0.0, schedule=schedule)
        async_store = AsyncStore(world.store)
        supervisor = Supervisor(async_store, ListNotifier())
        async with world.serving(world.bank(async_store, supervisor=supervisor)):
            report = await world.line_test()
            assert report.result == "ok", report
            assert report.test_interval == 86400  # a daily schedule, not the enrolment's 1 h


class _NotRunning:
    """A receiver's leadership whose supervision never gets to run a turn."""

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


@pytest.mark.parametrize("leading", [False, True], ids=["not-leading", "leading"])
async def test_a_message_acknowledged_is_in_the_supervision_inbox_with_it(tmp_path, leading):
    """Among receivers sharing a store, what a stored message tells supervision is
    committed with the message: a receiver that dies (or loses the lease) right after
    the acknowledgement, before a hand-over (not leading) or a turn (leading) was
    committed, costs supervision nothing; whoever leads next takes it in."""
    from receiver.supervision.engine import State

    async with bank_world(tmp_path, test_interval=3600) as world:
        async_store = AsyncStore(world.store)
        world.store.receiver = "tokyo"
        here = Supervisor(async_store, ListNotifier())
        here.receiver, here.leading = "tokyo", leading

        async def dies_first(*args: object) -> None:
            await asyncio.Event().wait()  # the process is gone before this commits

        async_store.supervision_inbox_put = dies_first  # type: ignore[method-assign]
        bank = world.bank(async_store, supervisor=here)
        bank.leadership = _NotRunning()  # type: ignore[assignment]
        async with world.serving(bank):
            report = await world.line_test()
            assert report.result == "ok", report  # acknowledged: committed
            (row,) = world.store.supervision_inbox()  # at once, with the message
            assert json.loads(row[1])["device"] == "plant"
        if here._handing is not None:
            here._handing.cancel()
    other = SQLiteStore(tmp_path / "centre.db")
    leader = Supervisor(AsyncStore(other), ListNotifier())
    leader.receiver = "paris"
    await leader.start()
    await leader.turn(time.time())
    status = leader.engine.status("plant")
    assert status.state is State.UP and status.last is not None
    assert other.supervision_inbox() == []  # taken in, once
    other.close()
