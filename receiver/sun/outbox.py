"""The asyncio shell of follow-the-sun routing.

`SunRouter` is the supervision engine's `Notifier`: each incident event goes through the
escalation engine, and what it decides (notifications and the escalation state) is
written to the store in one transaction before anything is sent. `Dispatcher` sends
the outbox: at least once, marked when done, retried with the shared backoff; a row
that still fails after the last attempt is reported as a trouble of the centre. A
receiver killed in the middle of a send finds the row unmarked on restart and sends it
again with the same idempotency key, so the far end can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from datetime import timedelta

import structlog

from callhome.backoff import Backoff

from ..incident_events import IncidentEvent
from ..store import AsyncStore, LeaseLost, OutboxItem, OutboxRow, StoreUnavailable
from .escalation import Changes, Escalation, Escalator, handovers_between
from .model import Routing
from .notifiers import DeliveryError, send_command, send_email, send_webhook

log = structlog.get_logger("callhome.sun")
Clock = Callable[[], float]
Trouble = Callable[[OutboxRow, str], None]
HANDOVER_CHECKED = "handover_checked"


def outbox_items(changes: Changes) -> list[OutboxItem]:
    return [
        OutboxItem(
            n.outbox_key,
            n.key,
            n.channel,
            n.address,
            n.recipient,
            n.subject,
            n.body,
            json.dumps(n.payload, sort_keys=True),
        )
        for n in changes.notifications
    ]


def retry_delay(routing: Routing, attempts: int, rng: random.Random) -> float:
    """The wait after failed attempt number `attempts` (1-based): the shared backoff,
    with full jitter so that a centre's whole outbox does not retry in step."""
    backoff = Backoff(routing.delivery.initial, 2.0, routing.delivery.cap, jitter="full", rng=rng)
    delay = 0.0
    for _ in range(attempts):
        delay = backoff.next()
    return delay


class Dispatcher:
    def __init__(
        self,
        routing: Routing,
        store: AsyncStore,
        *,
        clock: Clock = time.time,
        on_trouble: Trouble | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.routing = routing
        self.store = store
        self.clock = clock
        self.on_trouble = on_trouble
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def send(self, row: OutboxRow) -> None:
        item = row.item
        if item.channel == "webhook":
            hook = self.routing.webhooks.get(item.address)
            if hook is None:
                raise DeliveryError(f"no [webhook.{item.address}] in {self.routing.path}")
            await send_webhook(hook, item, self.clock())
        elif item.channel == "email":
            if self.routing.smtp is None:
                raise DeliveryError(f"no [smtp] in {self.routing.path}")
            await send_email(self.routing.smtp, item)
        elif item.channel == "command":
            command = self.routing.commands.get(item.address)
            if command is None:
                raise DeliveryError(f"no [command.{item.address}] in {self.routing.path}")
            await send_command(command, item)
        else:
            raise DeliveryError(f"unknown channel {item.channel!r}")

    async def run_once(self, limit: int = 50) -> int:
        """Send the rows that are due, at most `limit`; returns how many were tried.
        Each row is claimed just before its own send: rows claimed together and sent one
        after another would see their claims run out behind a slow send, and another
        receiver would send them as well. A row taken is claimed, so it is sent, never
        skipped (it would wait out its claim)."""
        tried = 0
        while tried < limit:
            rows = await self.store.outbox_due(
                self.clock(), limit=1, claim=self.routing.delivery.claim
            )
            if not rows:
                break
            (row,) = rows
            tried += 1
            try:
                await self.send(row)
            except DeliveryError as exc:
                attempts = row.attempts + 1
                now = self.clock()
                if attempts >= self.routing.delivery.attempts:
                    await self.store.outbox_attempt(row.id, now, sent=False, error=str(exc))
                    self._trouble(row, str(exc))
                else:
                    retry_at = now + retry_delay(self.routing, attempts, self.rng)
                    await self.store.outbox_attempt(
                        row.id, now, sent=False, error=str(exc), retry_at=retry_at
                    )
                    log.warning(
                        "notification retried",
                        channel=row.item.channel,
                        recipient=row.item.recipient,
                        attempt=attempts,
                        error=str(exc),
                    )
            else:
                await self.store.outbox_attempt(row.id, self.clock(), sent=True)
                log.info(
                    "notification sent",
                    channel=row.item.channel,
                    recipient=row.item.recipient,
                    key=row.item.idempotency_key,
                )
        return tried

    def _trouble(self, row: OutboxRow, error: str) -> None:
        log.error(
            "centre trouble: a notification could not be delivered",
            channel=row.item.channel,
            address=row.item.address,
            recipient=row.item.recipient,
            key=row.item.idempotency_key,
            attempts=row.attempts + 1,
            error=error,
        )
        if self.on_trouble is not None:
            self.on_trouble(row, error)

    async def run(self, stop: asyncio.Event, poll: float = 5.0) -> None:
        while not stop.is_set():
            if await self.run_once():
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()


class SunRouter:
    """The `Notifier` supervision sends incident events to."""

    def __init__(
        self,
        routing: Routing,
        store: AsyncStore,
        *,
        clock: Clock = time.time,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.routing = routing
        self.store = store
        self.clock = clock
        self.dispatcher = dispatcher or Dispatcher(routing, store, clock=clock)
        self.escalator = Escalator(routing)
        self._lock = asyncio.Lock()
        self.leading = True
        """False on a receiver that does not run supervision (several receivers on one
        store): it sends the outbox with the others but takes no escalation step."""
        self._step_wake = asyncio.Event()

    def wake(self) -> None:
        """Step now (this receiver has just taken the lead)."""
        self._step_wake.set()

    async def start(self) -> None:
        """Load the escalations a previous run left (a wait resumes where it was)."""
        async with self._lock:
            rows = await self.store.sun_escalations()
            self.escalator = Escalator(self.routing, [Escalation.from_json(*row) for row in rows])

    async def _commit(
        self, changes: Changes, now: float, state: dict[str, str] | None = None
    ) -> None:
        for skipped in changes.skipped:
            log.info("escalation step skipped: nobody to notify", step=skipped)
        await self.store.sun_commit(
            outbox_items(changes),
            [(e.incident_id, e.policy, e.to_json()) for e in changes.saved],
            changes.deleted,
            now,
            state,
        )
        if changes.notifications:
            self.dispatcher.wake()

    async def notify(self, event: IncidentEvent) -> None:
        async with self._lock:
            now = self.clock()
            await self._commit(self.escalator.handle(event, now), now)

    async def step(self) -> float | None:
        """Run what is due (escalation steps, the hand-over ledger); returns when to come
        back (seconds since the epoch), None: nothing pending but hand-overs."""
        async with self._lock:
            now = self.clock()
            changes = self.escalator.tick(now)
            checked_text = await self.store.sun_state(HANDOVER_CHECKED)
            checked = float(checked_text) if checked_text else now
            missed = handovers_between(self.escalator.schedule, checked, now)
            if missed:  # after a long stop, one note for the latest hand-over is enough
                ledger = self.escalator.ledger(missed[-1], now)
                changes.notifications.extend(ledger.notifications)
            await self._commit(changes, now, {HANDOVER_CHECKED: repr(now)})
            upcoming = handovers_between(
                self.escalator.schedule, now, now + timedelta(days=2).total_seconds()
            )
            due = [t for t in (self.escalator.next_due(),) if t is not None]
            if upcoming:
                due.append(upcoming[0].at.timestamp())
            return min(due) if due else None

    async def run(self, stop: asyncio.Event, poll: float = 60.0) -> None:
        """Step whenever something is due (at least every `poll` seconds), and send."""
        await self.start()
        sender = asyncio.create_task(self.dispatcher.run(stop))
        try:
            while not stop.is_set():
                due = None
                if self.leading:
                    try:
                        due = await self.step()
                    except (LeaseLost, StoreUnavailable) as exc:
                        log.warning("escalation step not taken", error=str(exc))
                wait = poll if due is None else min(poll, max(0.0, due - self.clock()))
                self._step_wake.clear()
                waiters = {
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._step_wake.wait()),
                }
                try:
                    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            stop.set()
            await sender
