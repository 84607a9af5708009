"""The asyncio shell around the engine and the incidents: one task in `callhome-receiver
run` that sleeps until the engine's next wakeup (woken early by a stored message or an
operator's command), persists every change in one transaction, then hands the
incident events to the notifier from an outbox, so that an alert is neither lost nor
told twice across a restart."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import structlog

from callhome.backoff import Backoff
from receiver.incident_events import IncidentEvent, Notifier
from receiver.store import (
    AsyncStore,
    Device,
    LeaseLost,
    StoreUnavailable,
    SupervisionBatch,
    SupervisionRow,
)

from . import persist
from .callback import CallbackResult, Policy
from .engine import DeviceRecord, Down, Engine, Event, Late, TestEnded, TestStarted
from .incidents import Entry, Incident, Incidents
from .notify import event_from_json, event_to_json
from .ports import PortWatch
from .settings import SupervisionSettings

log = structlog.get_logger("callhome.supervision")
INBOX_PAGE = 1000
"""Inbox rows read at a time; a turn reads every page before it moves any timer."""
TURN_GAP = 0.05
"""Real seconds at least from the start of one turn to the start of the next. A turn
costs five trips to the store however much it takes in; woken by every stored message,
a bank taking a thousand calls a second ran a turn for every six (10 % of its CPU),
with this one for every fifty. A message waits at most this much longer to be seen."""


@dataclass(frozen=True)
class Stored:
    """What the bank tells supervision of a message it stored (authenticated)."""

    device: Device
    at: float
    port: str
    caller: str | None
    kind: str
    device_time: float | None
    path: str | None = None
    """The path the call came by, when the call knows it (else from the port)."""
    callback: bool = False
    """Received on a call the centre made: proves nothing of the device's dial-out."""


def device_time(kind: str, content: bytes) -> float | None:
    """The device's clock in a line test (the only message made at the moment of its
    call: a spooled report's "time" is when it was written, not when it was sent)."""
    if kind != "line-test":
        return None
    try:
        data = cbor2.loads(content)
    except Exception:
        return None
    value = data.get("time") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class PortNote:
    """What the bank tells supervision of one of its ports."""

    port: str
    at: float
    up: bool | None
    """True: ready, False: its modem failed, None: it answered a call."""
    error: str = ""


@dataclass(frozen=True)
class CallbackNote:
    result: CallbackResult
    at: float


Dialler = Callable[[str, str], Awaitable[CallbackResult]]


def handed_over(item: Stored | PortNote) -> str:
    """What a receiver that does not run supervision writes to the supervision inbox."""
    if isinstance(item, PortNote):
        fields: dict[str, object] = {
            "port": item.port,
            "at": item.at,
            "up": item.up,
            "error": item.error,
        }
        return json.dumps({"note": "port", **fields}, sort_keys=True)
    return json.dumps(
        {
            "note": "stored",
            "device": item.device.name,
            "at": item.at,
            "port": item.port,
            "caller": item.caller,
            "kind": item.kind,
            "device_time": item.device_time,
            "path": item.path,
            "callback": item.callback,
        },
        sort_keys=True,
    )


class Supervisor:
    def __init__(
        self,
        store: AsyncStore,
        notifier: Notifier,
        settings: SupervisionSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.settings = settings or SupervisionSettings()
        self.clock = clock
        self.engine = Engine(self.settings.engine)
        self.incidents = Incidents(
            self.settings.grouping, probe=self.settings.probe, device_ids=self.engine.index
        )
        self.ports = PortWatch(self.settings.port_silent_after)
        self._queue: collections.deque[Stored | PortNote | CallbackNote] = collections.deque()
        self.dialler: Dialler | None = None
        """How to call a device back (the bank's `call`), when there is a bank."""
        self._callbacks: dict[str, tuple[Policy, str | None]] = {}
        self._calling: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._contacts: dict[str, tuple[str | None, str | None]] = {}
        self._command_cursor = 0
        self._unsaved: list[SupervisionBatch] = []
        """Batches a failed commit left: written first at the next turn, in order."""
        self.started = False
        self.lateness: Callable[[str, float], None] | None = None
        """Told, for each device found late or down, "late" or "down" and how many
        seconds after its deadline (the console's metrics, when it serves them)."""
        self.receiver: str | None = None
        """Set when several receivers may share the store (`receiver.supervision.leader`):
        the supervisor then reads what the others hand it from the supervision inbox."""
        self.name_ports = False
        """Ports named `receiver:port` (and silent only against their own site's): on a
        PostgreSQL store, where the sites' port names may be the same."""
        self.leading = True
        """False on a receiver that does not run supervision: what the bank tells it
        goes to the supervision inbox, for the receiver that does."""
        self._outgoing: list[str] = []
        self._handing: asyncio.Task[None] | None = None
        self._inbox_taken: set[int] = set()
        """Inbox rows taken in but not yet deleted by a committed batch."""
        self.turn_gap = TURN_GAP
        self.poke: Callable[[], None] | None = None
        """Tells the receiver that leads that the inbox has something for it (on
        PostgreSQL: a NOTIFY, `receiver.events`); without it, the leader finds it at
        its next poll (`command_poll`)."""

    def reset(self) -> None:
        """Forget everything in memory (before leading again: `start` rebuilds it all
        from the store, where the receiver that led meanwhile left it)."""
        self.engine = Engine(self.settings.engine)
        self.incidents = Incidents(
            self.settings.grouping, probe=self.settings.probe, device_ids=self.engine.index
        )
        self.ports = PortWatch(self.settings.port_silent_after, sites=self.name_ports)
        self._queue.clear()
        self._callbacks.clear()
        self._contacts.clear()
        self._unsaved.clear()
        self._inbox_taken.clear()
        self.started = False

    # -- what the bank calls -----------------------------------------------------------------

    def message_stored(self, stored: Stored, *, handed: bool = False) -> None:
        """Never blocks and never fails the caller: the engine runs in its own task, so
        a storm of one device cannot hold up another's acknowledgement. `handed`: the
        store wrote it to the supervision inbox with the message (`handover`)."""
        if handed:
            self.inbox_written()
            return
        self._take(stored)

    def handover(self, stored: Stored) -> str | None:
        """What the store is to write to the supervision inbox in the transaction that
        stores the message (`StoreMessage.handover`), when several receivers may share
        the store: the leader among them included, so that a message acknowledged is
        never only in the memory of a receiver that may die or lose the lease before
        supervision has committed what it changed. None: a supervisor of its own
        (tests, the demo): told in memory."""
        return handed_over(stored) if self.receiver is not None else None

    def inbox_written(self) -> None:
        """Something was committed to the supervision inbox: the leader takes it in at
        once if it is this receiver, else is told (`poke`)."""
        if self.leading:
            self._wake.set()
        elif self.poke is not None:
            self.poke()

    def wake(self) -> None:
        """Another receiver wrote to the inbox (the NOTIFY of `receiver.events`)."""
        if self.leading:
            self._wake.set()

    def port_state(self, port: str, up: bool, error: str = "") -> None:
        self._take(PortNote(self._port_name(port), self.clock(), up, error))

    def port_answered(self, port: str) -> None:
        self._take(PortNote(self._port_name(port), self.clock(), None))

    def _port_name(self, port: str) -> str:
        return f"{self.receiver}:{port}" if self.name_ports and self.receiver else port

    def _take(self, item: Stored | PortNote) -> None:
        if self.leading:
            self._queue.append(item)
            self._wake.set()
            return
        self._outgoing.append(handed_over(item))
        if self._handing is None or self._handing.done():
            self._handing = asyncio.ensure_future(self._hand_over())

    async def _hand_over(self) -> None:
        """Write what the bank told a receiver that does not lead to the supervision
        inbox, in order; the store out of reach: try again (what is not written yet is
        only in memory: see docs/operations.md, "What a crash costs")."""
        backoff = Backoff(0.5, 2.0, 30.0, jitter="full")
        receiver = self.receiver or ""
        while self._outgoing:
            try:
                await self.store.supervision_inbox_put(receiver, self.clock(), self._outgoing[0])
            except StoreUnavailable as exc:
                log.warning("supervision.handover_failed", error=str(exc))
                await asyncio.sleep(backoff.next())
                continue
            self._outgoing.pop(0)
            backoff.reset()
            if not self._outgoing:
                self.inbox_written()

    async def handed(self) -> None:
        """Wait until what was handed over is written (tests; a clean stop)."""
        while self._handing is not None and not self._handing.done():
            await asyncio.wait({self._handing})

    def expected_interval(self, device: str) -> float | None:
        """The interval the centre expects of a device (for its acknowledgement)."""
        return self.engine.expected_interval(device) if device in self.engine else None

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Rebuild every timer from the store; hand over what a previous run committed
        but did not deliver."""
        rows = await self.store.supervision_rows()
        persist.load_rows(self.engine, rows, schedule_lead=self.settings.schedule_lead)
        # ids go on from the highest ever given, a resolved incident's too
        self.incidents = Incidents(
            self.settings.grouping,
            next_id=await self.store.max_incident_id() + 1,
            probe=self.settings.probe,
            device_ids=self.engine.index,  # one index of a million names, not two
        )
        for row in rows:
            self._take_attributes(row)
        open_rows = await self.store.incident_rows(status=("open", "acknowledged"), limit=10**9)
        self.incidents.load(persist.incident_from_row(row) for row in open_rows)
        for incident_row in open_rows:
            if incident_row.kind == "port_trouble":
                self.ports.assume_troubled(incident_row.key.removeprefix("port_trouble:"))
        commands = await self.store.supervision_commands(0)
        self._command_cursor = commands[-1][0] if commands else 0  # already in the store
        await self._deliver()
        self.started = True
        log.info(
            "supervision.started",
            devices=len(self.engine),
            open_incidents=len(open_rows),
            next_wakeup=self.engine.next_wakeup(),
        )

    def _take_attributes(self, row: SupervisionRow) -> None:
        attributes = persist.grouping_attributes(row, self.settings.exchange_digits)
        policy = attributes.pop("callback", None)
        number = attributes.pop("number", None)
        if policy:
            self._callbacks[row.device] = (Policy(policy), number)
        if attributes:
            self.incidents.set_attributes(row.device, attributes)

    def request_callback(self, device: str, *, why: str = "operator") -> bool:
        """Call `device` back (in a task of its own); False if it cannot be."""
        policy, number = self._callbacks.get(device, (Policy.NEVER, None))
        if self.dialler is None or not number or policy is Policy.NEVER:
            log.warning(
                "supervision.callback_impossible",
                device=device,
                policy=policy.value,
                number=bool(number),
                bank=self.dialler is not None,
            )
            return False
        if device in self._calling:
            return True
        dialler = self.dialler

        async def call() -> None:
            try:
                result = await dialler(device, number)
            except Exception as exc:  # the bank's trouble: that port says so itself
                log.error("supervision.callback_failed", device=device, error=repr(exc))
                result = CallbackResult(device, number, None, f"failed: {exc}")
            finally:
                self._calling.pop(device, None)
            self._queue.append(CallbackNote(result, self.clock()))
            self._wake.set()

        log.info("supervision.callback", device=device, why=why)
        self._calling[device] = asyncio.ensure_future(call())
        return True

    async def run(self, stop: asyncio.Event) -> None:
        if not self.started:
            await self.start()
        loop = asyncio.get_running_loop()
        last_turn = -self.turn_gap
        while not stop.is_set():
            wait = last_turn + self.turn_gap - loop.time()
            if wait > 0:  # what comes meanwhile is taken in by the turn after the wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    break
            last_turn = loop.time()
            failed = True
            # cleared before the turn reads the inbox: a wake-up while it runs is for
            # rows it may not have seen, and makes the next wait return at once
            self._wake.clear()
            try:
                await self.turn(self.clock())
                failed = False
            except StoreUnavailable as exc:
                # what was not committed is still in memory: the next turn writes it
                log.error("supervision.store_unavailable", error=str(exc))
            except LeaseLost:
                raise  # another receiver leads now: this one must write nothing more
            except Exception:  # a bug must cost a turn, never supervision or the bank
                log.exception("supervision.internal_error")
            wake = self._next_wakeup()
            delay = self.settings.command_poll
            if wake is not None and not failed:  # after a failure: not in a tight loop
                delay = min(delay, max(0.0, wake - self.clock()))
            if self._queue and not failed:
                continue
            waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        for task in list(self._calling.values()):  # the bank stopped: no port will dial
            task.cancel()
        if self.leading:
            with contextlib.suppress(StoreUnavailable):
                await self.turn(self.clock())

    def _next_wakeup(self) -> float | None:
        wakes = [w for w in (self.engine.next_wakeup(), self.incidents.next_wakeup()) if w]
        return min(wakes) if wakes else None

    async def turn(self, now: float) -> list[IncidentEvent]:
        """Operators' commands, then stored messages, then whatever fell due; commit;
        deliver. Returns the incident events it delivered."""
        out = await self._take_commands(now)
        inbox = await self._take_inbox() if self.receiver is not None else ()
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, PortNote):
                out += self._port(item)
            elif isinstance(item, CallbackNote):
                out += self._called_back(item)
            else:
                out += self._message(item)
        for event in self.engine.advance(now):
            out += self._handle(event)
        out += self.incidents.advance(now)
        await self._commit(out, inbox)
        return await self._deliver()

    async def _take_inbox(self) -> tuple[int, ...]:
        """What the receivers handed over (their stored messages, the others' port
        notes), into the queue; their ids are deleted by the batch that commits what
        they changed. Every page, before the turn moves a timer: a new leader may find
        thousands waiting, and a device whose call is on a later page is not late."""
        taken: list[int] = []
        items: list[Stored | PortNote] = []
        devices: dict[str, Device | None] = {}
        after = 0
        while True:
            page = await self.store.supervision_inbox(INBOX_PAGE, after)
            handed_items: list[dict[str, Any]] = []
            for inbox_id, text in page:
                after = inbox_id
                if inbox_id in self._inbox_taken:
                    continue  # taken by a turn whose commit failed: in `_unsaved`
                taken.append(inbox_id)
                handed = json.loads(text)  # a list: a group commit's messages, in order
                handed_items += handed if isinstance(handed, list) else (handed,)
            # the page's devices in one trip to the store, each once a turn however
            # many calls it made
            names = {str(i["device"]) for i in handed_items if i.get("note") != "port"}
            if names - set(devices):
                devices.update(await self.store.console_devices_named(names - set(devices)))
            for item in handed_items:
                self._take_handed(item, devices, items)
            if len(page) < INBOX_PAGE:
                break
        # all or nothing: a read that failed above left no row marked taken and nothing
        # of them queued; the next turn reads them all again
        self._queue.extend(items)
        self._inbox_taken.update(taken)
        return tuple(taken)

    def _take_handed(
        self,
        item: dict[str, Any],
        devices: dict[str, Device | None],
        into: list[Stored | PortNote],
    ) -> None:
        if item.get("note") == "port":
            into.append(PortNote(str(item["port"]), float(item["at"]), item["up"], item["error"]))
            return
        device = devices[str(item["device"])]
        if device is not None:
            into.append(
                Stored(
                    device,
                    float(item["at"]),
                    str(item["port"]),
                    item["caller"],
                    str(item["kind"]),
                    item["device_time"],
                    item["path"],
                    callback=bool(item["callback"]),
                )
            )

    def _message(self, stored: Stored) -> list[IncidentEvent]:
        device = stored.device
        name = device.name
        if name not in self.engine:
            self.engine.add(
                name, interval=device.test_interval, grace=device.grace, enrolled=device.enrolled_at
            )
            if device.site or device.customer:  # what routes match on
                self.incidents.set_attributes(
                    name, {"site": device.site or "", "customer": device.customer or ""}
                )
        path = stored.path or self.settings.path_of(stored.port)
        attributes = {"port": stored.port}
        exchange = persist.exchange_of(stored.caller or "", self.settings.exchange_digits)
        if exchange:
            attributes["exchange"] = exchange
        if stored.callback:  # we called it: says nothing of its own calls
            self.incidents.record(name, stored.at, "call", "a message on the callback")
            return []
        self.incidents.set_attributes(name, attributes)
        self._contacts[name] = (stored.port, stored.caller)
        events = self.engine.message(
            name, stored.at, path=path, device_time=stored.device_time, kind=stored.kind
        )
        out: list[IncidentEvent] = []
        for event in events:
            out += self._handle(event)
        return out

    def _called_back(self, note: CallbackNote) -> list[IncidentEvent]:
        result = note.result
        log.info(
            "supervision.called_back",
            device=result.device,
            outcome=result.outcome,
            confirmed=result.confirmed,
        )
        if result.device not in self.engine:
            return []
        state = self.engine.status(result.device).state
        return self.incidents.handle_callback(
            result.device, state, result.outcome, result.confirmed, note.at
        )

    def _port(self, note: PortNote) -> list[IncidentEvent]:
        if note.up is None:
            events = self.ports.answered(note.port, note.at)
        else:
            events = self.ports.state(note.port, note.up, note.at, note.error)
        out: list[IncidentEvent] = []
        for event in events:
            log.info(f"supervision.{type(event).__name__.lower()}", port=event.port)
            out += self.incidents.handle_port(event)
        return out

    def _handle(self, event: Event) -> list[IncidentEvent]:
        if not isinstance(event, TestStarted | TestEnded):
            log.info(f"supervision.{type(event).__name__.lower()}", device=event.device)
        if self.lateness is not None and isinstance(event, Late | Down):
            self.lateness("late" if isinstance(event, Late) else "down", event.at - event.deadline)
        if isinstance(event, Late) and self._callbacks.get(event.device, (None,))[0] is Policy.LATE:
            self.request_callback(event.device, why="late")
        return self.incidents.handle(event)

    async def _commit(self, events: list[IncidentEvent], inbox: tuple[int, ...] = ()) -> None:
        records = self.engine.take_dirty()
        incidents, entries = self.incidents.take_dirty()
        if records or incidents or entries or events or inbox:
            self._unsaved.append(self._batch(records, incidents, entries, events, inbox))
        while self._unsaved:
            await self.store.save_supervision(self._unsaved[0])
            self._inbox_taken.difference_update(self._unsaved.pop(0).inbox_done)

    def _batch(
        self,
        records: list[DeviceRecord],
        incidents: list[Incident],
        entries: list[tuple[int, Entry]],
        events: list[IncidentEvent],
        inbox: tuple[int, ...] = (),
    ) -> SupervisionBatch:
        updates = []
        for record in records:
            port, caller = self._contacts.pop(record.name, (None, None))
            updates.append(persist.update_from_record(record, last_port=port, last_caller=caller))
        return SupervisionBatch(
            devices=tuple(updates),
            incidents=tuple(persist.incident_to_row(i) for i in incidents),
            timeline=persist.timeline_rows(entries),
            outbox=tuple(event_to_json(e) for e in events),
            inbox_done=inbox,
        )

    async def _deliver(self) -> list[IncidentEvent]:
        pending = await self.store.supervision_outbox()
        delivered: list[IncidentEvent] = []
        done: list[int] = []
        for outbox_id, text in pending:
            event = event_from_json(text)
            try:
                await self.notifier.notify(event)
            except LeaseLost:
                raise
            except Exception:
                log.exception("supervision.notifier_failed", incident=event.incident_id)
                break  # keep it and those after it, in order, for the next turn
            delivered.append(event)
            done.append(outbox_id)
        if done:
            await self.store.supervision_outbox_done(done)
        return delivered

    async def _take_commands(self, now: float) -> list[IncidentEvent]:
        """Operators' commands (`callhome-receiver incidents ack`, `on-test`, `enroll`,
        `revoke`) were applied to the store by the command line: take their results
        into memory."""
        out: list[IncidentEvent] = []
        commands = await self.store.supervision_commands(self._command_cursor)
        for command_id, text in commands:
            self._command_cursor = command_id
            command = json.loads(text)
            if command.get("reload") == "incident":
                rows = await self.store.incident_rows(incident_id=int(command["id"]))
                if rows:
                    timeline = await self.store.incident_timeline(rows[0].id)
                    self.incidents.replace(persist.incident_from_row(rows[0], timeline))
            elif "callback" in command:
                self.request_callback(str(command["callback"]))
            elif command.get("reload") == "device":
                name = str(command["device"])
                for row in await self.store.supervision_rows(name):
                    if row.revoked_at is not None and name in self.engine:
                        for event in self.engine.retire(name, now):  # its incidents resolve
                            out += self._handle(event)
                        continue
                    self.engine.load(
                        persist.record_from_row(row), schedule_lead=self.settings.schedule_lead
                    )
                    # `assign` may have cleared what routes match on
                    self.incidents.forget_attributes(
                        name, [key for key in ("site", "customer") if not getattr(row, key)]
                    )
                    self._take_attributes(row)
        return out
