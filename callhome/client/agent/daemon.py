"""The agent's thin asyncio shell: collect on schedule, feed the engine and the policy,
queue what they say in the spool, and call when the policy says so (one call at a
time, holding the modem lock, through the ordinary dialer).

Every message enters the spool before any call, and leaves it only when the centre
acknowledges it: a crash at any point (kill -9 mid-call included) loses nothing, and the
centre's (epoch, seq) deduplication makes sure nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from modem_drivers.hayes import ModemError

from ...wire.messages import (
    Kind,
    agent_event_content,
    agent_inventory_content,
    agent_line_test_content,
    agent_throttled_content,
)
from ..config import ClientConfig
from ..progress import PHASES
from ..spool import Spool
from . import inventory, sdnotify, textfile
from .answer import answer_once
from .checks import CheckEvent, Engine
from .config import AgentConfig, CheckConfig
from .modemlock import modem_lock
from .policy import CallPlan, CallPolicy
from .running import collect
from .statefile import read_state, write_state

if TYPE_CHECKING:
    # the dialer (the protocol, pyca/cryptography: about 7 MB) is imported when a call
    # starts: an idle agent does without it (tests/agent/test_footprint.py)
    from ..dialer import CallReport

log = structlog.get_logger("callhome.agent")

CHECKS_KEY = "agent.checks"
"""The spool's state value that holds the check states reported, as JSON."""

INVENTORY_KEY = "agent.inventory"
"""The spool's state value that holds the inventory's progress (next, acked, pending)."""

ANSWER_GAP = 0.5
"""Real seconds the modem stays free between two answering windows."""

PUBLISH_EVERY = 2.0
"""Real seconds between two writes of a call's progress to the state file (a change of
phase is written at once)."""

Progress = Callable[..., None]
Caller = Callable[[ClientConfig, Spool, bytes, Progress], Awaitable["CallReport"]]


async def _dial(config: ClientConfig, spool: Spool, key: bytes, progress: Progress) -> CallReport:
    from ..dialer import call_centre

    return await call_centre(config, spool, key, progress=progress)


class CallWatch:
    """The `progress` callback of the agent's calls, placed or answered: what `agent
    status` shows of the call under way (phase, seconds so far, the number called or the
    caller, bytes sent of the total and the rate while sending). It hands a copy to
    `publish` at every change of phase (and when the byte counts appear or go) and,
    while the phase lasts, at most every `every` seconds of `clock`."""

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = PUBLISH_EVERY,
    ) -> None:
        self.publish = publish
        self.clock = clock
        self.every = every
        self.started = clock()
        self._published = float("-inf")
        self._keys: set[str] = set()
        self.state: dict[str, Any] = {"phase": "starting", "seconds": 0.0}

    def __call__(self, step: str, **fields: Any) -> None:
        now = self.clock()
        state = self.state
        phase = PHASES.get(step)
        changed = phase is not None and phase != state["phase"]
        if phase is not None:
            state["phase"] = phase
        if step == "dialling":
            state["number"] = fields.get("number")
        elif step == "answering":
            state["caller"] = fields.get("caller")  # None: the line gave no caller ID
        elif step == "connected":
            state["line_rate"] = fields.get("rate")
        if step == "sending":
            for key in ("sent", "total", "rate"):
                state[key] = fields.get(key)
        elif step in ("transfer", "hanging up"):
            for key in ("sent", "total", "rate"):
                state.pop(key, None)
        state["seconds"] = round(now - self.started, 1)
        # a new phase, or the first byte count of one, is shown at once
        if changed or set(state) != self._keys or now - self._published >= self.every:
            self._published, self._keys = now, set(state)
            self.publish(dict(state))


@dataclass
class Clock:
    """The agent's time: wall-clock seconds, running `1 / scale` times faster when the
    config scales time (the demo and tests). Persisted times are in this time."""

    scale: float = 1.0
    origin_wall: float = 0.0
    origin_mono: float = 0.0

    def __post_init__(self) -> None:
        self.origin_wall = self.origin_wall or time.time()
        self.origin_mono = self.origin_mono or time.monotonic()

    def now(self) -> float:
        return self.origin_wall + (time.monotonic() - self.origin_mono) / self.scale

    def real(self, seconds: float) -> float:
        return max(0.0, seconds) * self.scale


class Agent:
    def __init__(
        self,
        client: ClientConfig,
        config: AgentConfig,
        private_key: bytes,
        *,
        caller: Caller = _dial,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.private_key = private_key
        self.caller = caller
        self.clock = clock or Clock(config.time_scale)
        self.spool = Spool(client.spool)
        self.engine = Engine()
        saved = read_state(config.state) or {}
        # the states kept with the events in the spool are the ones the centre was told;
        # the state file (written just after) is only read when the spool has none (a
        # spool from before they were kept there)
        checks = saved.get("checks", [])
        with contextlib.suppress(TypeError, ValueError):
            checks = json.loads(self.spool.value(CHECKS_KEY) or "null") or checks
        for item in checks:
            with contextlib.suppress(KeyError, ValueError, TypeError):
                self.engine.load(item)
        self._checks_saved = json.dumps(self._reported())
        now = self.clock.now()
        last_test = saved.get("last_test")
        self.policy = CallPolicy(
            config.policy,
            rng or random.Random(),
            now=now,
            last_test=float(last_test) if isinstance(last_test, int | float) else None,
            pending=bool(self.spool.queued()),
        )
        interval = saved.get("test_interval")
        if isinstance(interval, int | float) and interval != config.policy.test_interval:
            self.policy.adopt_interval(float(interval), now)
        self.last_call: dict[str, Any] | None = saved.get("last_call")
        self.rng = rng or random.Random()
        self.inventory: dict[str, Any] = saved.get("inventory") or {}
        with contextlib.suppress(TypeError, ValueError):
            self.inventory = json.loads(self.spool.value(INVENTORY_KEY) or "null") or self.inventory
        self.version = inventory.agent_version()
        if config.inventory_interval and (
            self.inventory.get("version") != self.version or "next" not in self.inventory
        ):
            # first run or an upgrade: an inventory rides with the next call; after that
            # the weekly one falls at a random moment, so a fleet spreads over the week
            self.inventory["next"] = now
        self.calls = 0
        self.call: dict[str, Any] | None = None
        """The call under way, as its `CallWatch` last published it."""
        self.wake = asyncio.Event()
        self.stopping = False
        """Set by `run` when it stops, before it cancels its loops: a loop whose
        cancellation was lost (Python 3.11's `wait_for` can turn one into a timeout, and
        a call's clean-up may swallow one) still ends, at its next turn."""
        self.modem_wanted = asyncio.Event()
        self.seen: dict[str, set[str]] = {}
        """The checks each collector reported last time (UNKNOWN all if it hangs)."""
        self.started = now

    # -- collection ---------------------------------------------------------------------

    async def collect_once(self, check: CheckConfig) -> list[CheckEvent]:
        readings = await collect(
            check.collector,
            self.clock.real(check.deadline),
            name=check.name,
            checks=self.seen.get(check.name, ()),
        )
        self.seen[check.name] = {r.check for r in readings}
        now = self.clock.now()
        events = self.engine.observe(now, readings, check.rule)
        if events:
            self._queue_events(events, now)
            self.save()
        else:
            self._keep_checks()
            self.export()  # the values move even when the states do not
        return events

    def _keep_checks(self) -> None:
        """The engine's states and flap windows, when a collection changed them without
        an event (a flapping check's window moves with every result; a `for` runs): a
        restart then goes on where this run stopped. A steady check changes nothing,
        and costs no write."""
        checks = json.dumps(self._reported())
        if checks != self._checks_saved:
            self.spool.enqueue_many([], {CHECKS_KEY: checks})
            self._checks_saved = checks

    def _queue_events(self, events: list[CheckEvent], now: float) -> None:
        """The events that pass the throttle enter the spool in one transaction with the
        check states they leave behind (`CHECKS_KEY`): a crash before it commits loses
        the events and the new states alike (the next collection finds the change
        again), a crash after it keeps both (a restart does not report it again)."""
        admitted = []
        for event in events:
            if self.policy.admit(event, now):
                admitted.append(event)
            else:
                log.info("agent.throttled", check=event.check)
        messages = [self._event_message(event) for event in admitted]
        checks = json.dumps(self._reported())
        seqs = self.spool.enqueue_many(messages, {CHECKS_KEY: checks})
        self._checks_saved = checks
        for event, seq in zip(admitted, seqs, strict=True):
            log.info(
                "agent.event",
                check=event.check,
                change=event.type.value,
                state=event.state.name,
                seq=seq,
            )
        if admitted:
            self.wake.set()

    def _reported(self) -> list[dict[str, Any]]:
        """What the centre has been told (or will be: it is queued) of each check, with
        what the engine needs to go on from there (its flap window: a check flapping
        when the agent stopped is still flapping when it starts again)."""
        return self.engine.snapshot()

    @staticmethod
    def _event_message(event: CheckEvent) -> tuple[Kind, dict[str, Any], str]:
        content = agent_event_content(
            check=event.check,
            event=event.type.value,
            state=event.state.name,
            previous=event.previous.name,
            since=event.since,
            time=event.time,
            text=event.text,
            value=event.value,
            unit=event.unit,
        )
        summary = f"{event.check} {event.previous.name}->{event.state.name}"
        if event.type.value != "change":
            summary = f"{event.check} {event.type.value} ({event.state.name})"
        return Kind.REPORT, content, summary

    async def _collect_loop(self, check: CheckConfig) -> None:
        while not self.stopping:
            await self.collect_once(check)
            await asyncio.sleep(self.clock.real(check.interval))

    # -- calls --------------------------------------------------------------------------

    async def call_once(self) -> CallReport:
        """One call now, carrying the line test and summaries the policy asks for."""
        self.modem_wanted.set()  # an answering window gives the modem up
        try:
            return await self._call_once()
        finally:
            self.modem_wanted.clear()

    async def _call_once(self) -> CallReport:
        packages = await self._packages(self.clock.now())  # before the modem is taken
        async with modem_lock(self.client.spool, "callhome agent", wait=None):
            now = self.clock.now()
            plan = self.policy.plan(now)
            self._queue_plan(plan, now)
            self._queue_inventory(now, packages)
            queued = len(self.spool.queued())
            if not queued:
                from ..dialer import CallReport

                # what made the call due went with the previous call: no call for nothing
                self.policy.finished(now, True, plan)
                return CallReport(result="ok", detail="nothing to send")
            log.info("agent.calling", line_test=plan.line_test, queued=queued)
            watch = CallWatch(self._publish_call)
            try:
                report = await self.caller(self.client, self.spool, self.private_key, watch)
            finally:
                if self.call is not None:
                    self.call = None
                    self.save()
        self._after_call(report, plan)
        return report

    def _after_call(self, report: CallReport, plan: CallPlan) -> None:
        now = self.clock.now()
        self._settle_inventory()
        if report.test_interval and self.policy.adopt_interval(float(report.test_interval), now):
            log.info(
                "agent.interval_adopted",
                test_interval=report.test_interval,
                next_test=round(self.policy.next_test - now),
            )
        ok = report.result == "ok" and not report.undelivered
        self.policy.finished(now, ok, plan)
        self.calls += 1
        self.last_call = {
            "time": now,
            "result": report.result,
            "detail": report.detail,
            "line_test": plan.line_test,
            "delivered": len(report.acknowledged) + len(report.duplicates),
        }
        log.info("agent.called", result=report.result, next_call=round(self.policy.due() - now))
        self.save()

    # -- answering the centre -----------------------------------------------------------

    async def answer_once(self) -> CallReport | None:
        """One answering window: if the centre calls, answer, send what is queued and a
        line test."""
        plans: list[CallPlan] = []
        tests: list[int] = []

        def connected() -> None:
            now = self.clock.now()
            plan = self.policy.plan(now)
            plan = CallPlan(line_test=True, summaries=plan.summaries)  # the centre asked
            tests.extend(self._queue_plan(plan, now))
            plans.append(plan)

        watches: list[CallWatch] = []

        def progress(step: str, **fields: Any) -> None:
            # the call's time counts from the ring answered, not from the window's start
            if not watches:
                watches.append(CallWatch(self._publish_call))
            watches[0](step, **fields)

        # at least a real second: every window opens the port and checks the modem (one
        # AT after the first window's full set-up); a call of ours that falls due ends
        # the window at once (`modem_wanted`)
        window = max(self.clock.real(self.config.answer_window), 1.0)
        async with modem_lock(self.client.spool, "callhome agent (answering)", wait=None):
            try:
                report = await answer_once(
                    self.client,
                    self.spool,
                    self.private_key,
                    numbers=self.config.answer_numbers or self.client.numbers,
                    require_caller_id=self.config.answer_require_caller_id,
                    rings=self.config.answer_rings,
                    window=window,
                    interrupt=self.modem_wanted,
                    connected=connected,
                    progress=progress,
                )
            finally:
                if self.call is not None:
                    self.call = None
                    self.save()
        if report is not None and plans and report.handshake_seconds is None:
            # answered, but the caller never proved it holds the centre's key (the Noise
            # handshake authenticates the centre; caller ID only filters): nothing left
            # the spool, and the caller must not make us call out either, so the line
            # test it asked for is taken back and no retry is scheduled
            log.warning("agent.caller_not_centre", result=report.result, detail=report.detail)
            for seq in tests:
                self.spool.withdraw(seq)
            self.policy.abandoned()
        elif report is not None and plans:
            self._after_call(report, plans[0])
        elif plans:
            self.policy.finished(self.clock.now(), False, plans[0])
        return report

    @property
    def answering(self) -> bool:
        """Whether the agent answers the centre: on unless the config says `answer =
        false`, and only with a modem (a device that calls over IP only has none)."""
        return self.config.answer and bool(self.client.ports)

    async def _answer_loop(self) -> None:
        while not self.stopping:
            if self.modem_wanted.is_set() or self.policy.due() <= self.clock.now():
                await asyncio.sleep(ANSWER_GAP)  # a call of ours is starting
                continue
            try:
                await self.answer_once()
            except (ModemError, OSError) as exc:
                log.warning("agent.answer_failed", error=str(exc))
                await asyncio.sleep(self.clock.real(self.config.answer_window))
            # the modem is free for a moment: a person's command (polling every 0.2 s)
            # or our own call gets it here
            await asyncio.sleep(ANSWER_GAP)

    def _queue_plan(self, plan: CallPlan, now: float) -> list[int]:
        """Queues what `plan` asks for; returns the seq of a line test it queued."""
        for item in plan.summaries:
            self.spool.enqueue(
                Kind.REPORT,
                agent_throttled_content(**item),
                f"{item['check']} throttled ({item['held']} held back)",
            )
        if plan.line_test and not any(m.kind is Kind.LINE_TEST for m in self.spool.queued()):
            from ..dialer import line_test_content

            content = agent_line_test_content(line_test_content(self.spool), self.engine.summary())
            return [self.spool.enqueue(Kind.LINE_TEST, content, "line test")]
        return []

    def _inventory_due(self, now: float) -> bool:
        return bool(self.config.inventory_interval) and now >= self.inventory.get("next", now + 1)

    async def _packages(self, now: float) -> dict[str, str]:
        """The `package/` items of an inventory due now (none when none is)."""
        if not self._inventory_due(now) or not self.config.inventory_packages:
            return {}
        installed = await inventory.installed_packages(timeout=self.config.deadline)
        return inventory.select_packages(installed, self.config.inventory_packages)

    def _queue_inventory(self, now: float, packages: dict[str, str]) -> None:
        if not self._inventory_due(now):
            return
        acknowledged = self.inventory.get("acked") or {}
        current = inventory.gather(version=self.version, packages=packages)
        changed, removed = inventory.difference(acknowledged, current)
        self.inventory["next"] = now + self.config.inventory_interval * self.rng.uniform(0.9, 1.1)
        self.inventory["version"] = self.version
        messages = []
        if changed or removed:
            content = agent_inventory_content(changed, removed, full=not acknowledged, time=now)
            messages.append((Kind.INVENTORY, content, f"inventory ({len(changed)} changed)"))

        def progress(seqs: list[int]) -> dict[str, str]:
            if seqs:
                self.inventory["pending"] = {"seq": seqs[0], "changed": changed, "removed": removed}
            return {INVENTORY_KEY: json.dumps(self.inventory)}

        # the message and the inventory's progress in one transaction (see `_queue_events`)
        self.spool.enqueue_many(messages, progress)

    def _settle_inventory(self) -> None:
        """An inventory the centre acknowledged becomes what the next one is compared to."""
        pending = self.inventory.get("pending")
        if not pending:
            return
        waiting = {m.seq for m in self.spool.queued(include_rejected=True)}
        if pending["seq"] in waiting:
            return
        acknowledged = dict(self.inventory.get("acked") or {})
        acknowledged.update(pending["changed"])
        for item in pending["removed"]:
            acknowledged.pop(item, None)
        self.inventory["acked"] = acknowledged
        self.inventory["pending"] = None
        self.spool.enqueue_many([], {INVENTORY_KEY: json.dumps(self.inventory)})

    async def _call_loop(self) -> None:
        while not self.stopping:
            self.wake.clear()
            delay = self.policy.due() - self.clock.now()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.clock.real(delay))
                continue
            await self.call_once()

    # -- state --------------------------------------------------------------------------

    def _publish_call(self, progress: dict[str, Any]) -> None:
        self.call = progress
        self.save()

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "updated": self.clock.now(),
            "started": self.started,
            "call": self.call,
            "last_call": self.last_call,
            "next_call": self.policy.due(),
            "next_test": self.policy.next_test,
            "last_test": self.policy.last_test,
            "test_interval": self.policy.test_interval,
            "calls": self.calls,
            "inventory": self.inventory,
            "checks": [
                {
                    "check": s.check,
                    "state": s.reported.name,
                    "since": s.reported_since,
                    "flapping": s.flapping,
                    "value": s.value,
                    "unit": s.unit,
                    "text": s.text,
                    "last_seen": s.last_seen,
                }
                for s in sorted(self.engine.checks.values(), key=lambda s: s.check)
            ],
        }

    def save(self) -> None:
        status = self.status()
        try:
            write_state(self.config.state, status)
        except OSError as exc:
            log.warning("agent.state_unwritable", path=str(self.config.state), error=exc.strerror)
        self.export(status)

    def export(self, status: dict[str, Any] | None = None) -> None:
        """The check states for node_exporter's textfile collector, when configured."""
        if self.config.textfile is None:
            return
        text = textfile.render(status or self.status(), self.spool.count())
        try:
            textfile.write(self.config.textfile, text)
        except OSError as exc:
            log.warning(
                "agent.textfile_unwritable", path=str(self.config.textfile), error=exc.strerror
            )

    # -- the whole --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._collect_loop(check)) for check in self.config.checks
        ]
        tasks.append(asyncio.create_task(self._call_loop()))
        if self.answering:
            tasks.append(asyncio.create_task(self._answer_loop()))
        watchdog = sdnotify.watchdog_interval()
        if watchdog is not None:
            tasks.append(asyncio.create_task(self._watchdog(watchdog)))
        self.save()
        sdnotify.notify("READY=1\nSTATUS=watching " + f"{len(self.config.checks)} checks")
        log.info("agent.started", checks=len(self.config.checks), next_call=self.policy.due())
        stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
        tasks.append(stopping)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    task.result()  # a loop that ended by an error: raise it
        finally:
            sdnotify.notify("STOPPING=1")
            self.stopping = True
            self.wake.set()  # the call loop's wait ends even if its cancellation is lost
            for task in [*tasks]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for check in self.config.checks:
                closer = getattr(check.collector, "close", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await closer()
            self.save()
            self.spool.close()

    async def _watchdog(self, every: float) -> None:
        while not self.stopping:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(every)
