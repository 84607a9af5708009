"""The operator console's view of supervision (receiver/web/sources.py `Supervision`):
incidents and their timelines from the store, acknowledge and resolve through the same
operations as the command line, device states from supervision's own, on test."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from receiver.incident_events import Severity
from receiver.store import (
    SUPERVISION_STATE_NAMES,
    Device,
    IncidentRow,
    NotFound,
    Store,
    TimelineRow,
)
from receiver.web import render
from receiver.web.sources import (
    DEVICE_STATES,
    Check,
    DeviceState,
    DeviceSummary,
    Incident,
    IncidentNotFound,
    NoSupervision,
    TimelineEntry,
)
from receiver.web.storage import ConsoleStore

from . import operations, persist
from .engine import DeviceRecord, State
from .incidents import IncidentError
from .settings import SupervisionSettings

STATE_NAMES: dict[State, str] = {
    State.NEW: "never",
    State.UP: "ok",
    State.RESTORED: "ok",
    State.LATE: "late",
    State.DOWN: "down",
    State.ON_TEST: "on test",
    State.RETIRED: "revoked",
}
"""Supervision's states in the console's words (`DEVICE_STATES`)."""
assert set(STATE_NAMES.values()) <= set(DEVICE_STATES)
assert {
    int(state): name for state, name in STATE_NAMES.items() if state is not State.RETIRED
} == SUPERVISION_STATE_NAMES, "the store's SQL names supervision's states as STATE_NAMES"


DUE = frozenset({State.NEW, State.UP, State.RESTORED, State.LATE, State.DOWN})
"""States in which a device has a line-test deadline."""
CHECK_REPORTS = 200
"""A device's latest reports read for its checks (each component's newest among them)."""


def _paths(extra: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    failed = set(extra.get("failed_paths", ()))
    return tuple((str(path), path in failed) for path in sorted(extra.get("paths", {})))


def _line_test(verdict: DeviceState, record: DeviceRecord | None, device: Device) -> Check:
    """The line test as a check: supervision's state and what it knows of the paths."""
    if record is None:
        return Check("line test", verdict.state, device.last_seen, "not yet judged by supervision")
    parts = [f"last message {render.when(record.last)}"] if record.state is not State.NEW else []
    for path, heard in sorted(record.paths.items()):
        failed = " (failed)" if path in record.failed_paths else ""
        parts.append(f"{path}{failed} heard {render.when(heard)}")
    return Check("line test", verdict.state, record.since, "; ".join(parts))


def _incident(row: IncidentRow, timeline: Sequence[TimelineRow] = ()) -> Incident:
    return Incident(
        id=row.id,
        kind=row.kind,
        severity=Severity(row.severity),
        summary=row.summary,
        opened_at=row.opened_at,
        state=row.status,
        device=row.device,
        acknowledged_by=row.acknowledged_by,
        resolved_by=row.resolved_by,
        timeline=tuple(TimelineEntry(t.at, t.what, t.by, t.text) for t in timeline),
    )


class StoreSupervision(NoSupervision):
    """Supervision as the store has it (the running engine writes every change there
    and takes the console's through the same commands as the command line's). Device
    states are supervision's: the overview's counts and the device list in SQL over its
    table (a hundred thousand devices), a device's own page from its row; a device it
    has not judged yet is judged from its last call."""

    supported = True

    def __init__(self, store: ConsoleStore, sync: Store, settings: SupervisionSettings) -> None:
        super().__init__(store, sync)
        self.settings = settings

    async def incidents(
        self, *, open_only: bool = True, device: str | None = None, limit: int = 200
    ) -> tuple[list[Incident], int]:
        status = operations.OPEN if open_only else None
        rows = await self.store.read(self.sync.incident_rows, status=status, limit=10**9)
        matching = [row for row in rows if device is None or row.device == device]
        return [_incident(row) for row in matching[:limit]], len(matching)

    async def incident(self, incident_id: int) -> Incident | None:
        rows = await self.store.read(self.sync.incident_rows, incident_id=incident_id)
        if not rows:
            return None
        timeline = await self.store.read(self.sync.incident_timeline, incident_id)
        return _incident(rows[0], timeline)

    async def open_by_kind(self) -> dict[str, int]:
        rows = await self.store.read(self.sync.incident_rows, status=operations.OPEN, limit=10**9)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.kind] = counts.get(row.kind, 0) + 1
        return counts

    async def _change(
        self, incident_id: int, change: str, who: str, note: str, now: float
    ) -> Incident:
        def apply() -> None:
            try:
                if change == "ack":
                    operations.acknowledge(self.sync, incident_id, who, now)
                else:
                    operations.resolve(self.sync, incident_id, who, now, note)
            except IncidentError:
                pass  # already resolved (by someone else, or the device came back)

        try:
            await self.store.read(apply)
        except NotFound:
            raise IncidentNotFound(incident_id) from None
        found = await self.incident(incident_id)
        if found is None:
            raise IncidentNotFound(incident_id)
        return found

    async def acknowledge(self, incident_id: int, who: str, now: float) -> Incident:
        return await self._change(incident_id, "ack", who, "", now)

    async def resolve(self, incident_id: int, who: str, note: str, now: float) -> Incident:
        return await self._change(incident_id, "resolve", who, note or "resolved", now)

    async def device_states(self, devices: Sequence[Device], now: float) -> dict[str, DeviceState]:
        """Supervision's state of each device (judged from its last call where it kept
        none yet), with its checks: the line test (supervision's state, its paths) and
        each component its reports named, as its latest report left it."""
        judged = await super().device_states(devices, now)
        out: dict[str, DeviceState] = {}
        for device in devices:
            rows = await self.store.read(self.sync.supervision_rows, device.name)
            verdict = judged[device.name]
            record = None
            if rows and rows[0].state is not None:
                record = persist.record_from_row(rows[0])
                state = STATE_NAMES[record.state]
                until = record.test_until if record.state is State.ON_TEST else None
                deadline = None
                if record.state in DUE and record.schedule is None:
                    deadline = record.last + record.interval  # as the device list shows it
                verdict = replace(
                    verdict,
                    state=state,
                    on_test_until=until,
                    next_deadline=deadline,
                    paths=tuple((p, p in record.failed_paths) for p in sorted(record.paths)),
                )
            reports = await self.store.read(
                self.sync.messages, device=device.name, kind="report", limit=CHECK_REPORTS
            )
            checks = [_line_test(verdict, record, device)]
            seen: set[str] = set()
            for report in reports:  # newest first
                if report.component and report.component not in seen:
                    seen.add(report.component)
                    checks.append(
                        Check(
                            report.component,
                            report.state or report.severity or "reported",
                            report.received_at,
                            f"severity {report.severity}" if report.severity else "",
                        )
                    )
            out[device.name] = replace(verdict, checks=tuple(checks))
        return out

    async def summary(self, now: float, limit: int) -> DeviceSummary:
        counts, rows = await self.store.read(self.sync.console_supervision_states, now, limit=limit)
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
            self.sync.console_supervised_devices,
            now,
            state=state or None,
            site=site or None,
            customer=customer or None,
            text=text or None,
            path=path or None,
            sort=sort,
            offset=offset,
            limit=limit,
        )
        page: list[tuple[Device, DeviceState]] = []
        for device, verdict, deadline, extra in rows:
            until = None
            if verdict == "on test":  # rare: its end is in the row's JSON
                found = await self.store.read(self.sync.supervision_rows, device.name)
                if found and found[0].state is not None:
                    until = persist.record_from_row(found[0]).test_until
            page.append(
                (
                    device,
                    DeviceState(
                        device.name,
                        verdict,
                        deadline,
                        on_test_until=until,
                        paths=_paths(json.loads(extra)) if extra else (),
                    ),
                )
            )
        return page, total

    async def put_on_test(self, device: str, who: str, until: float, now: float) -> None:
        def apply() -> None:
            operations.start_test(self.sync, self.settings, device, now, max(1.0, until - now))

        await self.store.read(apply)
