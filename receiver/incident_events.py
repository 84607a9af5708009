"""What supervision tells the people: one event per change of an incident.

The supervision engine (issue 12) produces these; follow-the-sun routing (issue 13)
consumes them through `Notifier`. Neither side imports the other: this module is the
whole contract between them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Change(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    """Something was added to an open incident (a device joined an outage, a note)."""
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


@dataclass(frozen=True)
class IncidentEvent:
    """One change of one incident, as the routing and the notifiers see it.

    `kind` names what the incident is about ("device_down", "path_failure",
    "clock_skew", "storm", "outage", "port_trouble", "inbound_path", "dial_out_broken",
    "check"); `attributes` carries what routes match on (customer, site, product, and
    the device's own). Times are seconds since the epoch, given by the engine's clock.
    """

    incident_id: int
    change: Change
    kind: str
    severity: Severity
    summary: str
    at: float
    opened_at: float
    device: str | None = None
    by: str | None = None
    """Who acknowledged or resolved it (an operator's name), when a person did."""
    attributes: Mapping[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    """Where incident events go. Must not block the caller for long: queue, then send."""

    async def notify(self, event: IncidentEvent) -> None: ...
