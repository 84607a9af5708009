"""Between the sans-IO engine and incidents and the store's rows (JSON for the rare
parts, so that a million ordinary devices load from plain columns)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from receiver.incident_events import Severity
from receiver.store import IncidentRow, SupervisionRow, SupervisionUpdate, TimelineRow

from .engine import DeviceRecord, Engine, State
from .incidents import Entry, Incident, Status


def record_from_row(row: SupervisionRow) -> DeviceRecord:
    """The engine's record of a device; a revoked device is retired."""
    if row.state is None or row.since is None or row.last is None:
        record = DeviceRecord(
            row.device, row.test_interval, row.grace, since=row.enrolled_at, last=row.enrolled_at
        )
    else:
        record = DeviceRecord(
            row.device,
            row.test_interval,
            row.grace,
            state=State(row.state),
            since=row.since,
            last=row.last,
            line_tests_only=bool(row.line_tests_only),
            schedule=row.schedule,
        )
        if row.extra:
            _apply_extra(record, json.loads(row.extra))
    if row.revoked_at is not None and record.state is not State.RETIRED:
        record.state, record.since = State.RETIRED, row.revoked_at
        record.test_until = None
        record.storm_last = None
        record.paths, record.failed_paths = {}, set()
    return record


def load_rows(engine: Engine, rows: Iterable[SupervisionRow], *, schedule_lead: float) -> int:
    """Load every device into `engine`: the plain ones in bulk (no record objects)."""
    plain: list[tuple[str, float, float, int, float, float, bool]] = []
    count = 0
    on_test = State.ON_TEST
    for row in rows:
        count += 1
        state, since, last = row.state, row.since, row.last
        if (
            state is not None
            and since is not None
            and last is not None
            and row.extra is None
            and row.schedule is None
            and row.revoked_at is None
            and state != on_test
            and row.device not in engine
        ):
            plain.append(
                (
                    row.device,
                    row.test_interval,
                    row.grace,
                    state,
                    since,
                    last,
                    bool(row.line_tests_only),
                )
            )
        else:
            engine.load(record_from_row(row), schedule_lead=schedule_lead)
    engine.load_plain_many(plain)
    return count


def _apply_extra(record: DeviceRecord, extra: dict[str, Any]) -> None:
    record.paths = {str(k): float(v) for k, v in extra.get("paths", {}).items()}
    record.failed_paths = set(extra.get("failed_paths", ()))
    record.skewed = bool(extra.get("skewed", False))
    test = extra.get("test")
    if test:
        record.test_started = test["started"]
        record.test_until = test["until"]
        record.test_messages = test["messages"]
        record.test_missed = test["missed"]
        record.test_resume = State(test["resume"])
        record.test_resume_since = test["resume_since"]
    storm = extra.get("storm")
    if storm:
        record.storm_last, record.storm_messages = storm


def update_from_record(
    record: DeviceRecord,
    *,
    last_port: str | None = None,
    last_caller: str | None = None,
    attributes: dict[str, str] | None = None,
) -> SupervisionUpdate:
    extra: dict[str, Any] = {}
    if record.paths:
        extra["paths"] = record.paths
    if record.failed_paths:
        extra["failed_paths"] = sorted(record.failed_paths)
    if record.skewed:
        extra["skewed"] = True
    if record.test_until is not None:
        extra["test"] = {
            "started": record.test_started,
            "until": record.test_until,
            "messages": record.test_messages,
            "missed": record.test_missed,
            "resume": int(record.test_resume),
            "resume_since": record.test_resume_since,
        }
    if record.storm_last is not None:
        extra["storm"] = [record.storm_last, record.storm_messages]
    return SupervisionUpdate(
        device=record.name,
        state=int(record.state),
        since=record.since,
        last=record.last,
        line_tests_only=record.line_tests_only,
        schedule=record.schedule,
        extra=json.dumps(extra, sort_keys=True) if extra else None,
        last_port=last_port,
        last_caller=last_caller,
        attributes=json.dumps(attributes, sort_keys=True) if attributes else None,
    )


def incident_to_row(incident: Incident) -> IncidentRow:
    return IncidentRow(
        id=incident.id,
        kind=incident.kind,
        severity=incident.severity.value,
        key=incident.key,
        summary=incident.summary,
        device=incident.device,
        status=incident.status.value,
        opened_at=incident.opened_at,
        acknowledged_at=incident.acknowledged_at,
        acknowledged_by=incident.acknowledged_by,
        resolved_at=incident.resolved_at,
        resolved_by=incident.resolved_by,
        members=json.dumps(incident.members, sort_keys=True),
        attributes=json.dumps(incident.attributes, sort_keys=True),
        last_notified=incident.last_notified,
        pending_since=incident.pending_since,
    )


def incident_from_row(row: IncidentRow, timeline: list[TimelineRow] | None = None) -> Incident:
    return Incident(
        id=row.id,
        kind=row.kind,
        severity=Severity(row.severity),
        key=row.key,
        summary=row.summary,
        opened_at=row.opened_at,
        device=row.device,
        status=Status(row.status),
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        members=json.loads(row.members),
        attributes=json.loads(row.attributes),
        timeline=[Entry(t.at, t.what, t.text, t.by, t.device) for t in timeline or ()],
        last_notified=row.last_notified,
        pending_since=row.pending_since,
    )


def timeline_rows(entries: list[tuple[int, Entry]]) -> tuple[TimelineRow, ...]:
    return tuple(
        TimelineRow(incident_id, e.at, e.what, e.text, e.by, e.device) for incident_id, e in entries
    )


def grouping_attributes(row: SupervisionRow, exchange_digits: int) -> dict[str, str]:
    """What outages are grouped by and routes match on, from what the store kept."""
    attributes: dict[str, str] = json.loads(row.attributes) if row.attributes else {}
    if row.site:
        attributes["site"] = row.site
    if row.customer:
        attributes["customer"] = row.customer
    if row.last_port:
        attributes["port"] = row.last_port
    exchange = exchange_of(row.last_caller or "", exchange_digits)
    if exchange:
        attributes["exchange"] = exchange
    return attributes


def exchange_of(caller: str, digits: int) -> str:
    """The exchange prefix of a caller ID (its first `digits` digits); "" for what is
    not a phone number (an IP peer's address, "P" for private)."""
    if not caller or any(not (c.isdigit() or c in "+-() ") for c in caller):
        return ""
    return "".join(c for c in caller if c.isdigit())[:digits]
