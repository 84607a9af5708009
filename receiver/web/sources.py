"""What the console reads of supervision and asks it to do: incidents (list, show,
acknowledge, resolve with a note), device states, putting a device on test.

Supervision (issue 12) is built in parallel; this module is the seam. `Supervision` is
the interface the pages use; `NoSupervision` is what exists today: no incidents, actions
refused with `Unsupported`, and device states judged only from each device's last call
against its test interval and grace. At merge, an adapter over supervision's store
methods implements `Supervision`, and supervision's `Notifier` fan-out includes the
console's `Live` hub so that pages update as incidents change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from ..incident_events import Severity
from ..store import Device, Store
from .storage import ConsoleStore

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
INCIDENT_STATES = (OPEN, ACKNOWLEDGED, RESOLVED)

DEVICE_STATES = ("ok", "late", "down", "never", "on test", "revoked")
"""Bounded: these are label values of `callhome_devices`."""
TROUBLE = ("late", "down")


class Unsupported(Exception):
    """The action needs supervision, which this receiver does not run (yet)."""


class IncidentNotFound(Exception):
    pass


@dataclass(frozen=True)
class TimelineEntry:
    at: float
    what: str
    """"opened", "updated", "acknowledged", "resolved", "note"."""
    who: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Incident:
    id: int
    kind: str
    severity: Severity
    summary: str
    opened_at: float
    state: str = OPEN
    device: str | None = None
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    timeline: tuple[TimelineEntry, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.state != RESOLVED


@dataclass(frozen=True)
class Check:
    """One supervised check of a device (its line test, a reported component)."""

    name: str
    state: str
    since: float | None = None
    text: str = ""


@dataclass(frozen=True)
class DeviceState:
    device: str
    state: str
    """One of DEVICE_STATES."""
    next_deadline: float | None = None
    checks: tuple[Check, ...] = ()
    on_test_until: float | None = None
    paths: tuple[tuple[str, bool], ...] = ()
    """The paths supervision heard the device on, each with whether it failed."""


@dataclass(frozen=True)
class DeviceSummary:
    """What the overview shows of the devices: counts by state and the troubled ones."""

    counts: dict[str, int]
    troubled: list[DeviceState]
    """Late or down, most overdue first, at most `limit` of them."""
    total_troubled: int

    @classmethod
    def of(
        cls, counts: dict[str, int], troubled: Sequence[tuple[str, str, float | None]]
    ) -> DeviceSummary:
        """From a store's counts by state (states with none may be missing) and its
        troubled rows (name, state, deadline)."""
        full = dict.fromkeys(DEVICE_STATES, 0)
        full.update(counts)
        rows = [DeviceState(name, state, deadline) for name, state, deadline in troubled]
        return cls(full, rows, full["late"] + full["down"])


class Supervision(Protocol):
    """The console's read/act interface onto supervision."""

    supported: bool
    """False: incidents and actions do not exist here (pages say so)."""

    async def incidents(
        self, *, open_only: bool = True, device: str | None = None, limit: int = 200
    ) -> tuple[list[Incident], int]:
        """Newest first, at most `limit`, and how many match in all."""

    async def incident(self, incident_id: int) -> Incident | None: ...

    async def open_by_kind(self) -> dict[str, int]: ...

    async def acknowledge(self, incident_id: int, who: str, now: float) -> Incident:
        """IncidentNotFound, Unsupported."""

    async def resolve(self, incident_id: int, who: str, note: str, now: float) -> Incident:
        """IncidentNotFound, Unsupported."""

    async def device_states(self, devices: Sequence[Device], now: float) -> dict[str, DeviceState]:
        """The state of each of `devices` (by name)."""

    async def summary(self, now: float, limit: int) -> DeviceSummary:
        """Counts of every device by state, and the `limit` most troubled (for the
        overview with a hundred thousand devices: without loading them all)."""

    async def device_page(
        self,
        now: float,
        *,
        state: str,
        site: str,
        text: str,
        sort: str,
        offset: int,
        limit: int,
        path: str = "",
        customer: str = "",
    ) -> tuple[list[tuple[Device, DeviceState]], int]:
        """One page of the device list, filtered and sorted (`CONSOLE_SORTS` keys), and
        how many match in all; `path` (heard on that path, or "failed") only where
        `supported`; `customer`: only that customer's devices."""

    async def put_on_test(self, device: str, who: str, until: float, now: float) -> None:
        """Hold alarms of `device` until `until` (work on site). Unsupported."""


def judge(device: Device, now: float) -> DeviceState:
    """A device's state from its last call alone: what the receiver can tell without
    supervision. Late once its next line test is overdue by more than its grace; down
    once it missed two intervals more."""
    if device.revoked:
        return DeviceState(device.name, "revoked")
    since = device.last_seen if device.last_seen is not None else device.enrolled_at
    deadline = since + device.test_interval + device.grace
    if now <= deadline:
        state = "ok" if device.last_seen is not None else "never"
    elif now <= deadline + 2 * device.test_interval:
        state = "late"
    else:
        state = "down"
    return DeviceState(device.name, state, next_deadline=deadline)


class NoSupervision:
    """What exists before supervision is merged: no incidents; device states from the
    last call only, judged in the database."""

    supported = False

    def __init__(self, store: ConsoleStore, sync: Store) -> None:
        self.store, self.sync = store, sync

    async def incidents(
        self, *, open_only: bool = True, device: str | None = None, limit: int = 200
    ) -> tuple[list[Incident], int]:
        return [], 0

    async def incident(self, incident_id: int) -> Incident | None:
        return None

    async def open_by_kind(self) -> dict[str, int]:
        return {}

    async def acknowledge(self, incident_id: int, who: str, now: float) -> Incident:
        raise Unsupported("incidents need supervision, which this receiver does not run")

    async def resolve(self, incident_id: int, who: str, note: str, now: float) -> Incident:
        raise Unsupported("incidents need supervision, which this receiver does not run")

    async def device_states(self, devices: Sequence[Device], now: float) -> dict[str, DeviceState]:
        return {device.name: judge(device, now) for device in devices}

    async def summary(self, now: float, limit: int) -> DeviceSummary:
        counts, rows = await self.store.read(self.sync.console_device_states, now, limit=limit)
        return DeviceSummary.of(counts, rows)

    async def device_page(
        self,
        now: float,
        *,
        state: str,
        site: str,
        text: str,
        sort: str,
        offset: int,
        limit: int,
        path: str = "",
        customer: str = "",
    ) -> tuple[list[tuple[Device, DeviceState]], int]:
        rows, total = await self.store.read(
            self.sync.console_devices,
            now,
            state=state or None,
            site=site or None,
            customer=customer or None,
            text=text or None,
            sort=sort,
            offset=offset,
            limit=limit,
        )
        return [
            (device, DeviceState(device.name, verdict, deadline))
            for device, verdict, deadline in rows
        ], total

    async def put_on_test(self, device: str, who: str, until: float, now: float) -> None:
        raise Unsupported("putting a device on test needs supervision")


class MemorySupervision(NoSupervision):
    """Incidents held in memory (device states as without supervision, but for those
    put on test): the tests' double and the benchmark's world, and a reference for the
    adapter over supervision's store."""

    supported = True

    def __init__(self, store: ConsoleStore, sync: Store) -> None:
        super().__init__(store, sync)
        self.items: dict[int, Incident] = {}
        self.on_test: dict[str, float] = {}

    def open(
        self,
        incident_id: int,
        kind: str,
        summary: str,
        at: float,
        *,
        device: str | None = None,
        severity: Severity = Severity.MAJOR,
    ) -> Incident:
        incident = Incident(
            incident_id,
            kind,
            severity,
            summary,
            at,
            device=device,
            timeline=(TimelineEntry(at, "opened", None, summary),),
        )
        self.items[incident_id] = incident
        return incident

    def _matching(self, open_only: bool, device: str | None) -> list[Incident]:
        return [
            i
            for i in self.items.values()
            if (i.is_open or not open_only) and (device is None or i.device == device)
        ]

    async def incidents(
        self, *, open_only: bool = True, device: str | None = None, limit: int = 200
    ) -> tuple[list[Incident], int]:
        found = self._matching(open_only, device)
        found.sort(key=lambda i: (-i.opened_at, -i.id))
        return found[:limit], len(found)

    async def incident(self, incident_id: int) -> Incident | None:
        return self.items.get(incident_id)

    async def open_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for incident in self._matching(True, None):
            counts[incident.kind] = counts.get(incident.kind, 0) + 1
        return counts

    def _get(self, incident_id: int) -> Incident:
        incident = self.items.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_id)
        return incident

    async def acknowledge(self, incident_id: int, who: str, now: float) -> Incident:
        incident = self._get(incident_id)
        if incident.state == OPEN:
            incident = replace(
                incident,
                state=ACKNOWLEDGED,
                acknowledged_by=who,
                timeline=(*incident.timeline, TimelineEntry(now, "acknowledged", who)),
            )
            self.items[incident_id] = incident
        return incident

    async def resolve(self, incident_id: int, who: str, note: str, now: float) -> Incident:
        incident = self._get(incident_id)
        if incident.is_open:
            incident = replace(
                incident,
                state=RESOLVED,
                resolved_by=who,
                timeline=(*incident.timeline, TimelineEntry(now, "resolved", who, note)),
            )
            self.items[incident_id] = incident
        return incident

    def _tested(self, state: DeviceState, now: float) -> DeviceState:
        until = self.on_test.get(state.device)
        if until is not None and now < until and state.state != "revoked":
            return replace(state, state="on test", on_test_until=until)
        return state

    async def device_states(self, devices: Sequence[Device], now: float) -> dict[str, DeviceState]:
        return {device.name: self._tested(judge(device, now), now) for device in devices}

    async def device_page(
        self,
        now: float,
        *,
        state: str,
        site: str,
        text: str,
        sort: str,
        offset: int,
        limit: int,
        path: str = "",
        customer: str = "",
    ) -> tuple[list[tuple[Device, DeviceState]], int]:
        rows, total = await super().device_page(
            now,
            state=state,
            site=site,
            text=text,
            sort=sort,
            offset=offset,
            limit=limit,
            customer=customer,
        )
        return [(device, self._tested(verdict, now)) for device, verdict in rows], total

    async def put_on_test(self, device: str, who: str, until: float, now: float) -> None:
        self.on_test[device] = until
