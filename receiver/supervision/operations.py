"""What the command line does to supervision while the receiver may be running.

Each change is applied to the store in one transaction, by the same sans-IO code the
engine uses, with the incident events it makes put in the outbox and a command that
tells a running receiver to take the change into memory (and deliver the events);
a receiver that is not running finds both at its start."""

from __future__ import annotations

import json

from receiver.incident_events import IncidentEvent
from receiver.store import NotFound, Store, SupervisionBatch, SupervisionUpdate

from . import persist
from .callback import Policy
from .engine import DailySchedule, DeviceStatus, Engine, State
from .incidents import IncidentError, Incidents
from .notify import event_to_json
from .settings import SupervisionSettings

OPEN = ("open", "acknowledged")


def _incident_book(store: Store, incident_id: int) -> Incidents:
    rows = store.incident_rows(incident_id=incident_id)
    if not rows:
        raise NotFound(f"no incident {incident_id}")
    if rows[0].status == "resolved":
        raise IncidentError(f"incident {incident_id} is already resolved")
    book = Incidents()
    book.load([persist.incident_from_row(rows[0], store.incident_timeline(incident_id))])
    return book


def _save(
    store: Store,
    book: Incidents,
    events: list[IncidentEvent],
    now: float,
    devices: tuple[SupervisionUpdate, ...] = (),
) -> None:
    incidents, entries = book.take_dirty()
    commands = [(now, json.dumps({"reload": "device", "device": u.device})) for u in devices]
    commands += [(now, json.dumps({"reload": "incident", "id": i.id})) for i in incidents]
    store.save_supervision(
        SupervisionBatch(
            devices=devices,
            incidents=tuple(persist.incident_to_row(i) for i in incidents),
            timeline=persist.timeline_rows(entries),
            outbox=tuple(event_to_json(e) for e in events),
            commands=tuple(commands),
        )
    )


def acknowledge(
    store: Store, incident_id: int, by: str, now: float, note: str | None = None
) -> list[IncidentEvent]:
    book = _incident_book(store, incident_id)
    events = book.acknowledge(incident_id, by, now, note)
    _save(store, book, events, now)
    return events


def resolve(store: Store, incident_id: int, by: str, now: float, note: str) -> list[IncidentEvent]:
    book = _incident_book(store, incident_id)
    events = book.resolve(incident_id, by, now, note)
    _save(store, book, events, now)
    return events


def add_note(store: Store, incident_id: int, by: str, now: float, text: str) -> None:
    book = _incident_book(store, incident_id)
    book.note(incident_id, by, now, text)
    _save(store, book, [], now)


def start_test(
    store: Store,
    settings: SupervisionSettings,
    device: str,
    now: float,
    duration: float | None,
) -> DeviceStatus:
    """Put a device on test for `duration` (None: end its test now)."""
    rows = store.supervision_rows(device)
    if not rows:
        raise NotFound(f"no device named {device!r}")
    engine = Engine(settings.engine)
    record = persist.record_from_row(rows[0])
    if record.state is State.RETIRED:
        raise IncidentError(f"{device} is retired (revoked)")
    engine.load(record, schedule_lead=settings.schedule_lead)
    book = Incidents(settings.grouping)
    book.load(
        persist.incident_from_row(row)
        for row in store.incident_rows(status=OPEN, limit=10**9)
        if row.device == device
    )
    if duration is None:
        events = engine.end_test(device, now)
    else:
        events = engine.start_test(device, now, duration)
    out: list[IncidentEvent] = []
    for event in events:
        out += book.handle(event)
    updates = tuple(persist.update_from_record(r) for r in engine.take_dirty())
    _save(store, book, out, now, devices=updates)
    return engine.status(device)


def configure(
    store: Store,
    settings: SupervisionSettings,
    device: str,
    now: float,
    *,
    schedule: DailySchedule | bool | None = False,
    line_tests_only: bool | None = None,
    callback: Policy | None = None,
    number: str | None = None,
) -> tuple[DeviceStatus, dict[str, str]]:
    """Change how a device is supervised (`schedule=None`: back to its interval).
    Returns its status and its attributes (callback policy and number among them)."""
    rows = store.supervision_rows(device)
    if not rows:
        raise NotFound(f"no device named {device!r}")
    attributes: dict[str, str] = json.loads(rows[0].attributes or "{}")
    if callback is not None:
        attributes["callback"] = callback.value
    if number is not None:
        attributes["number"] = number
    engine = Engine(settings.engine)
    engine.load(persist.record_from_row(rows[0]), schedule_lead=settings.schedule_lead)
    engine.configure(device, schedule=schedule, line_tests_only=line_tests_only)
    updates = tuple(
        persist.update_from_record(r, attributes=attributes) for r in engine.take_dirty()
    )
    _save(store, Incidents(), [], now, devices=updates)
    return engine.status(device), attributes


def request_callback(store: Store, device: str, now: float) -> dict[str, str]:
    """Ask the running receiver to call `device` back; returns its attributes."""
    rows = store.supervision_rows(device)
    if not rows:
        raise NotFound(f"no device named {device!r}")
    attributes: dict[str, str] = json.loads(rows[0].attributes or "{}")
    if not attributes.get("number"):
        raise IncidentError(
            f"no number to call {device} on: callhome-receiver supervise {device} --number N"
        )
    if attributes.get("callback", "never") == Policy.NEVER:
        raise IncidentError(
            f"{device}'s callback policy is never: "
            f"callhome-receiver supervise {device} --callback command"
        )
    store.save_supervision(SupervisionBatch(commands=((now, json.dumps({"callback": device})),)))
    return attributes


def statuses(store: Store, settings: SupervisionSettings) -> dict[str, DeviceStatus]:
    """Every device's supervision as the store has it (deadlines computed)."""
    engine = Engine(settings.engine)
    persist.load_rows(engine, store.supervision_rows(), schedule_lead=settings.schedule_lead)
    return {name: engine.status(name) for name in engine.names()}
