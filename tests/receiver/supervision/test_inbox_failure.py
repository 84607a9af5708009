"""A turn that fails while it reads the supervision inbox (a store read fails mid-way:
`console_device` or the next page) neither skips the rows it had started on nor leaves
them in the inbox for ever. Before, the rows were marked taken as they were read: a
blip mid-turn made a stored, acknowledged report invisible to supervision (a false
late, then down) and left its row to be taken again, with its old time, at takeover."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from receiver.store import AsyncStore, StoreUnavailable
from receiver.supervision.notify import ListNotifier
from receiver.supervision.service import Stored, Supervisor, handed_over
from receiver.supervision.settings import SupervisionSettings

from ..pgtest import (  # noqa: F401 - the fixtures
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FlakyStore(AsyncStore):
    """The inbox's device lookup fails once when it includes one name (a database blip
    mid-turn)."""

    def __init__(self, store, fail_for: str) -> None:
        super().__init__(store)
        self.fail_for = fail_for
        self.failed = False

    async def console_devices_named(self, names):
        if self.fail_for in names:
            self.fail_for = None
            self.failed = True
            raise StoreUnavailable("the database went away for a moment")
        return await super().console_devices_named(names)


@pytest.mark.parametrize("one_row", [True, False], ids=["pg-group-row", "row-per-message"])
def test_a_turn_failing_mid_inbox_loses_no_stored_message(backend, one_row):
    store = backend.open(create=True)
    for name in ("plant-a", "plant-b"):
        store.enroll(name, os.urandom(32), test_interval=3600.0, grace=600.0, site="paris")
    devices = {d.name: d for d in store.devices()}
    called = max(d.enrolled_at for d in devices.values()) + 3600  # within the deadline
    clock = Clock(called + 60)  # before the deadline, as when the bank acknowledged
    notes = ListNotifier()
    handed = [
        handed_over(Stored(devices[n], called, "bank0", "0146001234", "line-test", called))
        for n in ("plant-a", "plant-b")
    ]
    if one_row:  # what a PostgreSQL group commit writes: one row, a JSON list
        store.supervision_inbox_put("tokyo", called, "[" + ",".join(handed) + "]")
    else:  # SQLite / one by one: a row per message
        for text in handed:
            store.supervision_inbox_put("tokyo", called, text)

    async def scenario() -> None:
        flaky = FlakyStore(store, fail_for="plant-b")
        leader = Supervisor(
            flaky,
            notes,
            SupervisionSettings(command_poll=0.05),
            clock=clock,
        )
        leader.receiver = "paris"
        await leader.start()
        with pytest.raises(StoreUnavailable):  # run() logs it and tries again later
            await leader.turn(clock())
        assert flaky.failed
        clock.now = called + 600 + 60  # the next turns, past the old deadline
        await leader.turn(clock())
        await leader.turn(clock())
        # plant-b's report was stored and acknowledged at `called`: supervision must know
        assert leader.engine.status("plant-b").last == called, "plant-b's message skipped"
        assert store.supervision_inbox() == [], "inbox rows left for ever (re-taken at takeover)"

    try:
        asyncio.run(scenario())
    finally:
        store.close()
    late = [e for e in notes.events if "plant-b" in json.dumps(str(e))]
    assert late == [], f"false alert for a device whose call was stored: {late}"
