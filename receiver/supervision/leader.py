"""Supervision on exactly one of the receivers that share a store.

Each receiver runs `Leadership.run`: it tries the lease (`receiver.leases`: an advisory
lock on PostgreSQL, a file lock beside a SQLite store) every `check` seconds. The one
that gets it bumps the lease's epoch in the store (the fence: from then on, a write of
supervision by an earlier holder raises `LeaseLost`), rebuilds supervision from the
store (`Supervisor.reset` then `start`: every timer, open incident and escalation), and
leads until it stops or its lease is gone. Every receiver's bank writes what a stored
message tells supervision to the supervision inbox in the message's own transaction
(the leader's too: nothing acknowledged is only in one receiver's memory); the others
hand over their ports' notes there too. The leader reads it all at every turn, woken
by a NOTIFY on PostgreSQL (`receiver.events`), else at its poll.

A leader that dies loses its lease with its connection to the database (at once for a
killed process; a paused one loses it after `idle` seconds without a check): the next
receiver to try takes over within `check` seconds of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from ..leases import LeaderLease
from ..store import AsyncStore, LeaseLost, StoreUnavailable
from ..sun.outbox import SunRouter
from .service import Supervisor

log = structlog.get_logger("callhome.supervision")
LEASE = "supervisor"
"""The name of supervision's lease (and of its row in `receiver_leases`)."""


class Leadership:
    def __init__(
        self,
        supervisor: Supervisor,
        lease: LeaderLease,
        store: AsyncStore,
        receiver: str,
        *,
        router: SunRouter | None = None,
        check: float = 2.0,
        clock: Callable[[], float] = time.time,
        name_ports: bool = False,
    ) -> None:
        self.supervisor = supervisor
        self.lease = lease
        self.store = store
        self.receiver = receiver
        self.router = router
        self.check = check
        self.clock = clock
        supervisor.receiver = receiver
        supervisor.name_ports = name_ports
        supervisor.leading = False
        if router is not None:
            router.leading = False
        self.leading = asyncio.Event()
        """Set while this receiver runs supervision (tests wait on it)."""
        self.terms = 0
        """How many times this receiver has taken the lead."""

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if await self._try():
                    await self._lead(stop)
                if not stop.is_set():
                    await _wait(stop, self.check)
        finally:
            self.lease.release()
            with contextlib.suppress(TimeoutError):  # the database may be out of reach
                async with asyncio.timeout(5.0):
                    await self.supervisor.handed()

    async def _try(self) -> bool:
        try:
            return await asyncio.to_thread(self.lease.acquire)
        except StoreUnavailable as exc:
            log.warning("supervision.lease_unavailable", error=str(exc))
            return False

    async def _lead(self, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        heartbeat = asyncio.ensure_future(self._heartbeat(lost))
        try:
            await self._lead_while(stop, lost)
        finally:
            heartbeat.cancel()
            self.lease.release()

    async def _heartbeat(self, lost: asyncio.Event) -> None:
        """Check the lease every `check` seconds from the moment it was taken (on
        PostgreSQL, a check is what keeps an idle-limited lease)."""
        while True:
            await asyncio.sleep(self.check)
            if not await asyncio.to_thread(self.lease.held):
                lost.set()
                return

    async def _lead_while(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        supervisor = self.supervisor
        try:
            fence = await self.store.take_lease(LEASE, self.receiver, self.clock())
            self.store.store.fence = fence
            supervisor.reset()
            await supervisor.start()  # every timer rebuilt from the store
            if self.router is not None:
                await self.router.start()  # the escalations as the last leader left them
        except (StoreUnavailable, LeaseLost) as exc:
            log.warning("supervision.cannot_lead", error=str(exc))
            return
        if lost.is_set():
            log.warning("supervision.lease_lost", receiver=self.receiver, while_="starting")
            return
        supervisor.leading = True
        if self.router is not None:
            self.router.leading = True
            self.router.wake()
        self.terms += 1
        self.leading.set()
        log.info("supervision.leading", receiver=self.receiver, epoch=fence.epoch)
        resign = asyncio.Event()
        task = asyncio.ensure_future(supervisor.run(resign))
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
        try:
            await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            if self.router is not None:
                self.router.leading = False
            resign.set()  # a last turn: committed only while the fence still holds
            await asyncio.wait({task}, timeout=10.0)
            supervisor.leading = False
            self.leading.clear()
        error = task.exception() if task.done() and not task.cancelled() else None
        if stop.is_set() and not lost.is_set() and error is None:
            log.info("supervision.resigned", receiver=self.receiver, why="stopping")
        elif isinstance(error, LeaseLost) or lost.is_set():
            log.warning("supervision.resigned", receiver=self.receiver, why="lease lost")
        else:
            log.error("supervision.resigned", receiver=self.receiver, error=repr(error))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
