"""Live events between the receivers that share a PostgreSQL store (LISTEN/NOTIFY).

Each receiver publishes what its bank does (a call answered, a device accepted, a
message stored, a call ended, a refusal) and what its supervision decides (incident
events, on the receiver that leads) on one channel; each listens on it and hands what
the *other* receivers published to its console's live feed, so that a console at any
site shows the activity of every site as it happens.

The same channel wakes the receiver that leads supervision when another has written to
the supervision inbox (`poke`, one note however many rows were written meanwhile): it
takes them in at once rather than at its next poll, which stays as the fallback.

Best effort, as the console's own feed is: a note lost while a connection is down
costs a page its live refresh, never a record (the store has everything). A NOTIFY is
sent outside any transaction of the bank's, from a connection of its own, so it never
slows an acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from callhome.backoff import Backoff

from .incident_events import IncidentEvent

log = structlog.get_logger("callhome.events")
CHANNEL = "callhome_events"
BANK_EVENTS = ("answered", "accepted", "refused", "stored", "call")
"""The bank's notes that the console's live feed shows (receiver.web.live)."""
QUEUE = 1000
"""Notes waiting to be sent at most (more: the oldest are dropped, and counted)."""

INBOX = "inbox"
"""The kind of the note that says the supervision inbox has rows (not for consoles)."""

Deliver = Callable[[str, dict[str, Any]], None]


class Events:
    def __init__(self, dsn: str, receiver: str, deliver: Deliver | None = None) -> None:
        self.dsn = dsn
        self.receiver = receiver
        self.deliver = deliver
        """Where the other receivers' notes go (the console's `Live.show`)."""
        self._out: asyncio.Queue[str] = asyncio.Queue(QUEUE)
        self.on_inbox: Callable[[], None] | None = None
        """Told when another receiver pokes (the leader's `Supervisor.wake`)."""
        self._poke = json.dumps({"receiver": receiver, "kind": INBOX, "data": {}})
        self._poked = False
        """A poke waits in the queue: another would tell nothing more."""
        self.dropped = 0
        self.received = 0
        self.connected = asyncio.Event()
        """Set while listening (tests wait on it)."""

    # -- publishing ----------------------------------------------------------------------

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Never blocks, never fails the caller."""
        self._put(json.dumps({"receiver": self.receiver, "kind": kind, "data": data}))

    def poke(self) -> None:
        """Tell the receiver that leads that the supervision inbox has rows for it."""
        if not self._poked:
            self._poked = True
            self._put(self._poke)

    def _put(self, text: str) -> None:
        if self._out.full():
            self.dropped += 1
            with contextlib.suppress(asyncio.QueueEmpty):
                if self._out.get_nowait() == self._poke:
                    self._poked = False
        self._out.put_nowait(text)

    def bank_event(self, what: str, **fields: Any) -> None:
        """The bank's `notify`."""
        if what in BANK_EVENTS:
            self.publish(what, {"port": str(fields.get("port") or "unknown")})

    async def notify(self, event: IncidentEvent) -> None:
        """A supervision notifier (never fails: it goes first in the fan-out)."""
        self.publish(
            "incident",
            {"id": event.incident_id, "change": event.change.value, "kind": event.kind},
        )

    # -- the connection ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Listen and send until `stop`; reconnect with the shared backoff."""
        backoff = Backoff(0.5, 2.0, 30.0, jitter="full")
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff.reset()
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                log.warning("events.disconnected", error=(str(exc).strip() or repr(exc))[:200])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff.next()):
                        await stop.wait()

    async def _session(self, stop: asyncio.Event) -> None:
        async with (
            await psycopg.AsyncConnection.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=5,
                application_name=f"callhome events {self.receiver}"[:63],
            ) as listening,
            await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=5
            ) as sending,
        ):
            await listening.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            tasks = {
                asyncio.ensure_future(self._listen(listening)),
                asyncio.ensure_future(self._send(sending)),
                asyncio.ensure_future(stop.wait()),
            }
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                self.connected.clear()
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error

    async def _listen(self, db: psycopg.AsyncConnection[Any]) -> None:
        async for note in db.notifies():
            try:
                item = json.loads(note.payload)
                sender, kind, data = str(item["receiver"]), str(item["kind"]), dict(item["data"])
            except (ValueError, KeyError, TypeError):
                continue
            if sender == self.receiver:
                continue  # our own: the console here had it first-hand
            if kind == INBOX:
                if self.on_inbox is not None:
                    self.on_inbox()
                continue
            self.received += 1
            if self.deliver is not None:
                self.deliver(kind, {**data, "receiver": sender})

    async def _send(self, db: psycopg.AsyncConnection[Any]) -> None:
        while True:
            text = await self._out.get()
            if text == self._poke:
                self._poked = False  # rows written from now on need a poke of their own
            await db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, text))
