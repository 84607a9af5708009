"""Live events between receivers on one PostgreSQL store (LISTEN/NOTIFY): what one
publishes reaches the others' consoles, never its own twice."""

from __future__ import annotations

import asyncio

import pytest

from receiver.events import Events
from receiver.incident_events import Change, IncidentEvent, Severity
from receiver.web.live import Live

from .pgtest import (  # noqa: F401 - the fixtures
    pg_database_fixture,
    pg_session_database_fixture,
)


@pytest.fixture
def dsn(pg_database):
    return pg_database()


def test_what_one_receiver_publishes_reaches_the_others_consoles(dsn):
    async def scenario() -> None:
        paris_live, tokyo_live = Live(), Live()
        paris = Events(dsn, "paris", paris_live.show)
        tokyo = Events(dsn, "tokyo", tokyo_live.show)
        paris_live.forward = paris.publish
        page = tokyo_live.subscribe()  # a console page open in Tokyo
        mine = paris_live.subscribe()
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(e.run(stop)) for e in (paris, tokyo)]
        await asyncio.wait_for(paris.connected.wait(), 10)
        await asyncio.wait_for(tokyo.connected.wait(), 10)
        paris_live.bank_event("answered", port="bank0", caller="0146001234")
        assert await asyncio.wait_for(page.get(), 10) == (
            "answered",
            '{"port":"bank0","receiver":"paris"}',
        )
        assert mine.get_nowait() == ("answered", '{"port":"bank0"}')  # first-hand
        event = IncidentEvent(7, Change.OPENED, "device_late", Severity.MAJOR, "late", 1.0, 1.0)
        await paris.notify(event)  # a leader without a console: its incidents too
        kind, text = await asyncio.wait_for(page.get(), 10)
        assert kind == "incident" and '"id":7' in text and '"receiver":"paris"' in text
        tokyo.bank_event("call", port="ttyS0", outcome="completed")
        tokyo.bank_event("not-shown", port="ttyS0")
        kind, text = await asyncio.wait_for(mine.get(), 10)
        assert (kind, text) == ("call", '{"port":"ttyS0","receiver":"tokyo"}')
        await asyncio.sleep(0.3)
        assert mine.qsize() == 0  # Paris's own note came once (first-hand), not back
        assert paris.received == 1 and tokyo.received == 2
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())


def test_an_unreachable_database_is_retried_not_fatal():
    async def scenario() -> None:
        events = Events("postgresql://nobody@127.0.0.1:1/none", "paris")
        events.publish("call", {"port": "x"})
        stop = asyncio.Event()
        task = asyncio.ensure_future(events.run(stop))
        await asyncio.sleep(0.5)
        assert not task.done() and not events.connected.is_set()
        stop.set()
        await asyncio.wait_for(task, 35)

    asyncio.run(scenario())


def test_pokes_wake_the_other_receivers_once_and_never_reach_a_console(dsn):
    async def scenario() -> None:
        shown: list[tuple[str, dict[str, object]]] = []
        woken: list[float] = []
        paris = Events(dsn, "paris")
        tokyo = Events(dsn, "tokyo", lambda kind, data: shown.append((kind, data)))
        tokyo.on_inbox = lambda: woken.append(1.0)
        for _ in range(3):  # rows written while one poke waits: one poke tells them all
            paris.poke()
        paris.publish("call", {"port": "bank0"})
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(tokyo.run(stop))]
        await asyncio.wait_for(tokyo.connected.wait(), 10)  # listening before Paris sends
        tasks.append(asyncio.ensure_future(paris.run(stop)))
        for _ in range(500):
            if shown:
                break
            await asyncio.sleep(0.02)
        assert woken == [1.0] and shown == [("call", {"port": "bank0", "receiver": "paris"})]
        paris.poke()  # sent: the next one goes too
        for _ in range(500):
            if len(woken) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(woken) == 2
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
