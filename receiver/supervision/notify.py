"""Notifiers: where incident events go. Routing (issue 13) brings the real ones."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import structlog

from receiver.incident_events import Change, IncidentEvent, Notifier, Severity

log = structlog.get_logger("callhome.supervision")


class LoggingNotifier:
    """Logs every incident event (the default until routing plugs in)."""

    async def notify(self, event: IncidentEvent) -> None:
        log.warning(
            f"incident.{event.change.value}",
            incident=event.incident_id,
            kind=event.kind,
            severity=event.severity.value,
            device=event.device,
            summary=event.summary,
            by=event.by,
        )


class ListNotifier:
    """Keeps what it is given (tests, the demo)."""

    def __init__(self) -> None:
        self.events: list[IncidentEvent] = []

    async def notify(self, event: IncidentEvent) -> None:
        self.events.append(event)


def event_to_json(event: IncidentEvent) -> str:
    data: dict[str, Any] = asdict(event)
    data["change"] = event.change.value
    data["severity"] = event.severity.value
    data["attributes"] = dict(event.attributes)
    return json.dumps(data, sort_keys=True)


def event_from_json(text: str) -> IncidentEvent:
    data = json.loads(text)
    data["change"] = Change(data["change"])
    data["severity"] = Severity(data["severity"])
    return IncidentEvent(**data)


class FanOut:
    """Several notifiers, in order: each event to every one. One that fails stops the
    event there (it stays in supervision's outbox and is given again, to all: the ones
    before it must take a repeat, as the console's live hub does)."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = notifiers

    async def notify(self, event: IncidentEvent) -> None:
        for notifier in self.notifiers:
            await notifier.notify(event)
