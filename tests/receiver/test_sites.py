"""Several receivers on one store (in one process; tests/e2e/test_sites.py runs three
real ones): one leads supervision, the others hand it their events through the
inbox, a former leader is fenced off, each closes only its own open calls, and a
takeover neither loses nor repeats an alert, on both backends."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from receiver.incident_events import Change
from receiver.leases import lease_for
from receiver.store import (
    IN_PROGRESS,
    INTERRUPTED,
    AsyncStore,
    Fence,
    LeaseLost,
    Store,
    SupervisionBatch,
)
from receiver.supervision.leader import LEASE, Leadership
from receiver.supervision.notify import ListNotifier
from receiver.supervision.service import PortNote, Stored, Supervisor, handed_over
from receiver.supervision.settings import SupervisionSettings

from .pgtest import (  # noqa: F401 - the fixtures
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stores(backend):
    """Two receivers' connections to one store (as two sites have)."""
    first = backend.open(create=True)
    first.enroll("plant-a", os.urandom(32), test_interval=3600.0, grace=600.0, site="paris")
    second = backend.open()
    yield first, second
    first.close()
    second.close()


def supervisor(store: Store, clock: Clock, notifier: ListNotifier | None = None) -> Supervisor:
    settings = SupervisionSettings(command_poll=0.05, lease_check=0.05)
    return Supervisor(AsyncStore(store), notifier or ListNotifier(), settings, clock=clock)


def stored(store: Store, at: float, port: str = "bank0") -> Stored:
    device = next(d for d in store.devices() if d.name == "plant-a")
    return Stored(device, at, port, "0146001234", "line-test", at)


def test_a_former_leader_is_fenced_off(stores):
    first, second = stores
    first.fence = first.take_lease(LEASE, "paris", 1.0)
    assert first.fence == Fence(LEASE, 1)
    first.save_supervision(SupervisionBatch(outbox=("{}",)))  # the holder writes
    second.fence = second.take_lease(LEASE, "tokyo", 2.0)  # taken over
    assert second.fence.epoch == 2 and first.lease_holder(LEASE) == ("tokyo", 2, 2.0)
    with pytest.raises(LeaseLost):
        first.save_supervision(SupervisionBatch(outbox=("{}",)))
    with pytest.raises(LeaseLost):
        first.sun_commit([], [(1, "default", "{}")], [], 3.0)
    with pytest.raises(LeaseLost):
        first.supervision_outbox_done([1])
    assert len(first.supervision_outbox()) == 1  # nothing of the refused writes
    assert first.sun_escalations() == []
    second.save_supervision(SupervisionBatch(outbox=("{}",)))
    second.supervision_outbox_done([row for row, _ in second.supervision_outbox()])
    assert second.supervision_outbox() == []


def test_each_receiver_closes_only_its_own_open_calls(stores):
    first, second = stores
    first.receiver, second.receiver = "paris", "tokyo"
    mine = first.start_call("bank0", None, 10.0)
    theirs = second.start_call("bank0", None, 11.0)
    first.receiver = None
    old = first.start_call("bank1", None, 9.0)  # from before receivers had names
    assert first.close_open_calls(20.0, "paris") == 2
    outcomes = {c.id: c.outcome for c in first.calls()}
    assert outcomes == {mine: INTERRUPTED, theirs: IN_PROGRESS, old: INTERRUPTED}
    assert second.close_open_calls(21.0, "tokyo") == 1


def test_a_receiver_that_does_not_lead_hands_its_events_to_the_one_that_does(stores):
    first, second = stores
    clock = Clock(time.time())
    notifier = ListNotifier()

    async def scenario() -> None:
        leader, other = supervisor(first, clock, notifier), supervisor(second, clock)
        leader.receiver, other.receiver = "paris", "tokyo"
        leader.name_ports = other.name_ports = True
        other.leading = False
        await leader.start()
        other.message_stored(stored(second, clock()))
        other.port_state("bank0", False, "no modem")
        await other.handed()
        assert len(second.supervision_inbox()) == 2
        assert "plant-a" not in other.engine and not other._queue  # nothing kept here
        await leader.turn(clock())
        assert first.supervision_inbox() == []  # taken in, with what it changed
        assert leader.engine.status("plant-a").last == clock()
        assert "tokyo:bank0" in leader.ports.ports()  # port names carry their site
        await leader.turn(clock())  # nothing taken twice
        assert leader.engine.status("plant-a").last == clock()

    asyncio.run(scenario())


def test_inbox_rows_whose_commit_failed_are_not_taken_twice(stores):
    first, _ = stores
    clock = Clock(time.time())
    first.supervision_inbox_put("tokyo", clock(), handed_over(PortNote("tokyo:p", clock(), True)))

    async def scenario() -> None:
        leader = supervisor(first, clock)
        leader.receiver = "paris"
        await leader.start()
        first.fence = first.take_lease(LEASE, "paris", clock())
        first.fence = Fence(LEASE, 99)  # as if it had been taken over meanwhile
        with pytest.raises(LeaseLost):
            await leader.turn(clock())
        assert len(leader._unsaved) == 1 and leader._inbox_taken
        first.fence = None
        await leader.turn(clock())
        assert first.supervision_inbox() == [] and not leader._inbox_taken

    asyncio.run(scenario())


def test_a_stored_message_and_its_inbox_row_commit_together(stores):
    """In one group commit (PostgreSQL: one statement per kind of row), duplicates
    included: a resent message proves the device alive too."""
    first, _ = stores
    first.receiver = "tokyo"
    device = first.devices()[0]

    async def scenario() -> list[bool]:
        store = AsyncStore(first)
        return list(
            await asyncio.gather(
                *(
                    store.store_message(
                        device.id,
                        1,
                        seq,
                        "report",
                        b"x",
                        {},
                        None,
                        10.0 + n,
                        handover=json.dumps({"n": n}),
                    )
                    for n, seq in enumerate((1, 2, 1))
                )
            )
        )

    assert asyncio.run(scenario()) == [True, True, False]
    handed = []
    for _, text in first.supervision_inbox():
        event = json.loads(text)  # on PostgreSQL one row for the batch: a list
        handed += event if isinstance(event, list) else [event]
    assert handed == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_new_leader_takes_in_the_whole_inbox_before_any_deadline(stores):
    """A takeover finds more rows than one read returns (the calls of every site while
    nobody led): the device whose call is on the last page is not found late."""
    first, second = stores
    device = first.devices()[0]
    called = device.enrolled_at + 3600  # within its deadline
    clock = Clock(called + 600 + 60)  # past the deadline the call moved
    for _ in range(1000):
        second.supervision_inbox_put(
            "tokyo", clock(), handed_over(PortNote("tokyo:p", clock(), None))
        )
    second.supervision_inbox_put("tokyo", called, handed_over(stored(second, called)))
    notes = ListNotifier()

    async def scenario() -> None:
        leader = supervisor(first, clock, notes)
        leader.receiver = "paris"
        await leader.start()
        await leader.turn(clock())

        assert leader.engine.status("plant-a").last == called
        assert first.supervision_inbox() == []

    asyncio.run(scenario())
    assert notes.events == []  # no "late" raised (and resolved) for a call it had


async def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_takeover_rebuilds_from_the_store_and_alerts_once(stores, backend):
    """The leader raises the late alert; it goes away; the other takes over, rebuilds
    its timers and open incident from the store and raises nothing again; a line test
    handed over then resolves the incident, once."""
    first, second = stores
    enrolled = first.devices()[0].enrolled_at
    clock = Clock(enrolled + 3600 + 600 + 1)  # just past its first deadline
    notes = ListNotifier()

    async def scenario() -> None:
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        sup_a, sup_b = supervisor(first, clock, notes), supervisor(second, clock, notes)
        lead_a = Leadership(
            sup_a, lease_for(first, LEASE), AsyncStore(first), "paris", check=0.05, clock=clock
        )
        lead_a.store = sup_a.store
        run_a = asyncio.ensure_future(lead_a.run(stop_a))
        await asyncio.wait_for(lead_a.leading.wait(), 10)
        lead_b = Leadership(sup_b, lease_for(second, LEASE), sup_b.store, "tokyo", check=0.05)
        run_b = asyncio.ensure_future(lead_b.run(stop_b))
        await _wait_for(lambda: [e.change for e in notes.events] == [Change.OPENED])
        await asyncio.sleep(0.2)
        assert not lead_b.leading.is_set()  # one leader at a time
        stop_a.set()  # it goes away (its lease with it)
        await run_a
        await asyncio.wait_for(lead_b.leading.wait(), 10)
        assert second.lease_holder(LEASE)[:2] == ("tokyo", 2)
        sup_a.leading = False  # what a receiver that does not lead does with a call
        sup_a.receiver = "paris"
        sup_a.message_stored(stored(first, clock()))
        await sup_a.handed()
        await _wait_for(lambda: len(notes.events) == 2)
        await asyncio.sleep(0.2)
        stop_b.set()
        await run_b

    asyncio.run(scenario())
    assert [e.change for e in notes.events] == [Change.OPENED, Change.RESOLVED]


def test_a_leader_whose_lease_connection_is_cut_resigns(stores, backend):
    if backend.kind != "postgresql":
        pytest.skip("a file lock has no connection to cut")
    import psycopg

    first, second = stores
    clock = Clock(time.time())

    async def scenario() -> None:
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        lease_a = lease_for(first, LEASE)
        sup_a = supervisor(first, clock)
        lead_a = Leadership(sup_a, lease_a, sup_a.store, "paris", check=0.05)
        run_a = asyncio.ensure_future(lead_a.run(stop_a))
        await asyncio.wait_for(lead_a.leading.wait(), 10)
        sup_b = supervisor(second, clock)
        lead_b = Leadership(sup_b, lease_for(second, LEASE), sup_b.store, "tokyo", check=0.05)
        run_b = asyncio.ensure_future(lead_b.run(stop_b))
        pid = lease_a.pid  # type: ignore[attr-defined]
        with psycopg.connect(backend.location, autocommit=True) as db:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.wait_for(lead_b.leading.wait(), 10)
        await _wait_for(lambda: not lead_a.leading.is_set())
        with pytest.raises(LeaseLost):  # and if it had not noticed: fenced off
            await sup_a.store.save_supervision(SupervisionBatch(outbox=("{}",)))
        stop_a.set()
        stop_b.set()
        await asyncio.gather(run_a, run_b)

    asyncio.run(scenario())


def test_a_paused_holder_loses_an_idle_limited_lease(stores, backend):
    if backend.kind != "postgresql":
        pytest.skip("a file lock is the kernel's: a paused process keeps it")
    first, second = stores
    mine, theirs = lease_for(first, LEASE, idle=1.0), lease_for(second, LEASE, idle=1.0)
    try:
        assert mine.acquire() and not theirs.acquire()
        deadline = time.monotonic() + 10
        while not theirs.acquire():  # `mine` checks nothing: as if paused
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert not mine.held()
    finally:
        mine.release()
        theirs.release()


def test_what_another_receiver_hands_over_wakes_the_leader_at_once(stores, backend):
    """On PostgreSQL the leader is told (NOTIFY) when another receiver has written to
    the inbox: it takes the row in at once, not at its next poll (here a minute)."""
    if backend.kind != "postgresql":
        pytest.skip("SQLite's receivers are one: nobody else writes to its inbox")
    from receiver.events import Events

    first, second = stores
    second.receiver = "tokyo"
    clock = Clock(time.time())
    settings = SupervisionSettings(command_poll=60.0)

    async def scenario() -> float:
        leader = Supervisor(AsyncStore(first), ListNotifier(), settings, clock=clock)
        other = Supervisor(AsyncStore(second), ListNotifier(), settings, clock=clock)
        leader.receiver, other.receiver, other.leading = "paris", "tokyo", False
        paris, tokyo = Events(backend.location, "paris"), Events(backend.location, "tokyo")
        paris.on_inbox, other.poke = leader.wake, tokyo.poke
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(e.run(stop)) for e in (paris, tokyo)]
        await asyncio.wait_for(paris.connected.wait(), 10)
        await asyncio.wait_for(tokyo.connected.wait(), 10)
        tasks.append(asyncio.ensure_future(leader.run(stop)))
        await _wait_for(lambda: leader.started)
        await asyncio.sleep(0.2)  # its first turn done: it waits for the next poll
        note = stored(second, clock())
        began = time.monotonic()
        device = note.device  # as the bank at Tokyo stores a line test
        await other.store.store_message(
            device.id, 1, 1, "line-test", b"x", {}, None, note.at, handover=other.handover(note)
        )
        other.message_stored(note, handed=True)
        await _wait_for(lambda: leader.engine.status("plant-a").last == note.at)
        took = time.monotonic() - began
        stop.set()
        await asyncio.gather(*tasks)
        return took

    took = asyncio.run(scenario())
    assert took < 10.0  # the poll would have taken 60 s


def test_a_wake_up_during_a_turn_is_not_lost(stores):
    """A NOTIFY that arrives while a turn runs, after it read the inbox, is for rows it
    has not seen: the next turn follows at once, not at the next poll (a minute)."""
    first, _ = stores
    clock = Clock(time.time())
    leader = Supervisor(
        AsyncStore(first), ListNotifier(), SupervisionSettings(command_poll=60.0), clock=clock
    )
    leader.receiver = "paris"
    read = leader.store.supervision_inbox
    reads = 0

    async def inbox(limit: int = 1000, after: int = 0) -> list[tuple[int, str]]:
        nonlocal reads
        rows = await read(limit, after)
        reads += 1
        if reads == 1:  # the first turn has read it: a row comes, and its wake-up
            first.supervision_inbox_put("tokyo", clock(), handed_over(stored(first, clock())))
            leader.wake()
        return rows

    leader.store.supervision_inbox = inbox  # type: ignore[method-assign]

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.ensure_future(leader.run(stop))
        await _wait_for(lambda: reads >= 1)
        await _wait_for(lambda: "plant-a" in leader.engine and leader.engine.status("plant-a").last)
        stop.set()
        await running

    asyncio.run(scenario())
    assert first.supervision_inbox() == []
