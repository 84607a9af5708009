"""Incidents: what the engine's events become for the people; sans-IO.

An alert opens an incident; it is acknowledged by someone, then resolved (by a restore,
by the end of what opened it, or by someone), and every step goes on its timeline. Each
change comes out as one `IncidentEvent` (receiver/incident_events.py), the contract
with follow-the-sun routing: every OPENED is followed by exactly one RESOLVED, and
nothing about an incident follows its RESOLVED.

Common cause, in the spirit of Alertmanager's `group_by`/`group_interval` and inhibit
rules: devices that go late within `group_window` of each other and share a value of a
grouping factor (the same bank port, site, exchange prefix, modem model ...) become one
*outage* incident once there are `group_threshold` of them. Later devices sharing it
join; each member's own down alert is inhibited (a timeline entry instead); members that
recover are ticked off; the outage resolves when all of them have. While it grows it is
announced at most once per `group_interval`.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from receiver.incident_events import Change, IncidentEvent, Severity

from . import engine as e
from .ports import PortDown, PortEvent, PortSilent, PortUp


class Status(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class IncidentError(Exception):
    """An operator's command that cannot apply (no such incident, already resolved)."""


@dataclass(frozen=True)
class Entry:
    """One line of an incident's timeline."""

    at: float
    what: str
    """opened, late, down, restored, recovered, joined, acknowledged, note, resolved,
    test, call, ..."""
    text: str
    by: str | None = None
    device: str | None = None


@dataclass
class Incident:
    id: int
    kind: str
    severity: Severity
    key: str
    """What it is about, so that the same trouble never opens twice at once
    ("device_down:plant-a", "path_failure:plant-a:line-b", "outage:site=lyon")."""
    summary: str
    opened_at: float
    device: str | None = None
    status: Status = Status.OPEN
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    members: dict[str, str] = field(default_factory=dict)
    """For an outage: device -> late | down | recovered."""
    attributes: dict[str, str] = field(default_factory=dict)
    timeline: list[Entry] = field(default_factory=list)
    last_notified: float | None = None
    pending_since: float | None = None
    """An update waiting for `group_interval` to pass (outages only)."""

    @property
    def open(self) -> bool:
        return self.status is not Status.RESOLVED


@dataclass(frozen=True)
class GroupingConfig:
    factors: tuple[str, ...] = ("port", "site", "exchange", "model")
    """The device attributes whose shared values make a common cause."""
    window: float = 600.0
    """Devices going late within this long of each other may be one outage."""
    threshold: int = 10
    """How many devices sharing a value make an outage (0: never group)."""
    interval: float = 60.0
    """At most one notification per outage per this long while it grows."""


def _device_summary(kind: str, device: str, detail: str) -> str:
    return f"{device}: {detail}" if detail else f"{device}: {kind}"


class Incidents:
    """The open incidents and what changes them; see the module's docstring."""

    def __init__(
        self,
        config: GroupingConfig | None = None,
        next_id: int = 1,
        probe: str | None = None,
        device_ids: Mapping[str, int] | None = None,
    ) -> None:
        self.config = config or GroupingConfig()
        self.probe = probe
        """The centre's own test device: its silence puts the bank's inbound path in
        doubt, and other devices' alerts wait inside that incident meanwhile."""
        self._next_id = next_id
        self._open: dict[int, Incident] = {}
        self._by_key: dict[str, int] = {}
        self._member_of: dict[str, int] = {}
        self._candidates: dict[tuple[str, str], dict[str, float]] = {}
        self._own_ids: dict[str, int] | None = None
        if device_ids is None:
            device_ids = self._own_ids = {}
        self._ids: Mapping[str, int] = device_ids
        """Device -> number (the engine's own index when shared: no second one)."""
        self._columns: dict[str, array[int]] = {}
        """Attribute -> per device number, the id of its value in `_values` (0: none):
        a million devices' sites cost 4 bytes each, not a dict each."""
        self._values: list[str] = [""]
        self._value_ids: dict[str, int] = {}
        self._loose: dict[str, dict[str, str]] = {}
        """Attributes of devices `_ids` does not number."""
        self._dirty: dict[int, Incident] = {}
        self._new_entries: list[tuple[int, Entry]] = []

    # -- state -----------------------------------------------------------------------------

    def load(self, incidents: Iterable[Incident]) -> None:
        """Take the open incidents as the store kept them (at start)."""
        for incident in incidents:
            if not incident.open:
                continue
            self._open[incident.id] = incident
            self._by_key[incident.key] = incident.id
            for device, status in incident.members.items():
                if status != "recovered":
                    self._member_of[device] = incident.id
            self._next_id = max(self._next_id, incident.id + 1)

    @property
    def next_id(self) -> int:
        """The id the next incident gets (at start: one more than the store's highest,
        resolved ones included)."""
        return self._next_id

    def replace(self, incident: Incident) -> None:
        """Take an incident as the store now has it (an operator changed it there)."""
        old = self._open.pop(incident.id, None)
        if old is not None:
            if self._by_key.get(old.key) == old.id:
                del self._by_key[old.key]
            for device in old.members:
                if self._member_of.get(device) == old.id:
                    del self._member_of[device]
        self.load([incident])

    def set_attributes(self, device: str, attributes: Mapping[str, str]) -> None:
        """What grouping and routing match on (site, port, exchange, model, customer)."""
        number = self._ids.get(device)
        if number is None and self._own_ids is not None:
            number = self._own_ids[device] = len(self._own_ids)
        if number is None:
            loose = self._loose.setdefault(device, {})
            loose.update({k: v for k, v in attributes.items() if v})
            return
        for key, value in attributes.items():
            if not value:
                continue
            value_id = self._value_ids.get(value)
            if value_id is None:
                value_id = self._value_ids[value] = len(self._values)
                self._values.append(value)
            column = self._columns.setdefault(key, array("I"))
            if len(column) <= number:
                column.frombytes(bytes(4 * (number + 1 - len(column))))  # 0: no value
            column[number] = value_id

    def forget_attributes(self, device: str, keys: Iterable[str]) -> None:
        """Drop `keys` of a device's attributes (an operator cleared its site or
        customer): `set_attributes` takes an empty value as none given."""
        number = self._ids.get(device)
        if number is None:
            for key in keys:
                self._loose.get(device, {}).pop(key, None)
            return
        for key in keys:
            column = self._columns.get(key)
            if column is not None and number < len(column):
                column[number] = 0  # no value

    def attributes(self, device: str) -> dict[str, str]:
        number = self._ids.get(device)
        if number is None:
            return dict(self._loose.get(device, {}))
        return {
            key: self._values[column[number]]
            for key, column in self._columns.items()
            if number < len(column) and column[number]
        }

    def open_incidents(self) -> list[Incident]:
        return sorted(self._open.values(), key=lambda i: i.id)

    def get(self, incident_id: int) -> Incident | None:
        return self._open.get(incident_id)

    def take_dirty(self) -> tuple[list[Incident], list[tuple[int, Entry]]]:
        """The incidents changed and the timeline entries added since the last call."""
        dirty, self._dirty = list(self._dirty.values()), {}
        entries, self._new_entries = self._new_entries, []
        return dirty, entries

    # -- engine events ---------------------------------------------------------------------

    def handle(self, event: e.Event) -> list[IncidentEvent]:
        out: list[IncidentEvent] = []
        device, now = event.device, event.at
        if isinstance(event, e.Late):
            self._late(device, now, out)
        elif isinstance(event, e.LateCleared):
            self._resolve_key(
                f"dial_out_broken:{device}", now, "restored", "called out by itself", out
            )
            self._recovered(device, now, "called inside its grace", out)
        elif isinstance(event, e.Down) and device == self.probe:
            self._open_incident(
                "inbound_path",
                Severity.CRITICAL,
                "inbound_path",
                f"the bank's inbound path is in doubt: the centre's test device {device} "
                "has not got through",
                now,
                out,
                device=device,
            )
        elif isinstance(event, e.Down) and f"dial_out_broken:{device}" in self._by_key:
            broken = self._open[self._by_key[f"dial_out_broken:{device}"]]
            self._entry(broken, Entry(now, "down", "grace over: not down, it answers callbacks"))
        elif isinstance(event, e.Down):
            outage = self._member(device) or self._inbound_incident()
            if outage is not None and device not in outage.members:
                self._join(outage, device, now)
            if outage is not None:
                outage.members[device] = "down"
                self._entry(
                    outage,
                    Entry(now, "down", "down (inhibited: part of the outage)", device=device),
                )
                self._touch(outage, now, out)
            else:
                last = "never heard" if event.last_seen is None else "silent"
                paths = f" on every path ({', '.join(event.paths)})" if len(event.paths) > 1 else ""
                self._open_incident(
                    "device_down",
                    Severity.CRITICAL,
                    f"device_down:{device}",
                    _device_summary("device_down", device, f"down ({last}{paths})"),
                    now,
                    out,
                    device=device,
                )
        elif isinstance(event, e.Restored) and device == self.probe:
            inbound = self._inbound_incident()
            if inbound is not None:
                self._resolve(inbound, now, "restored", "the test device got through", None, out)
                for member, status in sorted(inbound.members.items()):
                    if status == "down":  # the inbound path works: these are their own
                        out += self._reopened_down(member, now)
        elif isinstance(event, e.Restored):
            self._resolve_key(f"device_down:{device}", now, "restored", "called again", out)
            self._resolve_key(
                f"dial_out_broken:{device}", now, "restored", "called out by itself", out
            )
            self._recovered(device, now, "restored", out)
        elif isinstance(event, e.PathFailed):
            working = ", ".join(event.working) or "none"
            self._open_incident(
                "path_failure",
                Severity.MINOR,
                f"path_failure:{device}:{event.path}",
                f"{device}: path {event.path} silent (still heard on {working})",
                now,
                out,
                device=device,
                extra={"path": event.path},
            )
        elif isinstance(event, e.PathRestored):
            key = f"path_failure:{device}:{event.path}"
            self._resolve_key(key, now, "restored", f"heard again on {event.path}", out)
        elif isinstance(event, e.SkewDetected):
            self._open_incident(
                "clock_skew",
                Severity.MINOR,
                f"clock_skew:{device}",
                f"{device}: clock off by {event.skew:+.0f} s",
                now,
                out,
                device=device,
            )
        elif isinstance(event, e.SkewCleared):
            self._resolve_key(
                f"clock_skew:{device}",
                now,
                "restored",
                f"clock within bound ({event.skew:+.0f} s)",
                out,
            )
        elif isinstance(event, e.StormStarted):
            self._open_incident(
                "storm",
                Severity.MAJOR,
                f"storm:{device}",
                f"{device}: storm of messages ({event.messages} in {event.window:g} s; all stored)",
                now,
                out,
                device=device,
            )
        elif isinstance(event, e.StormEnded):
            self._resolve_key(
                f"storm:{device}", now, "restored", f"quiet again ({event.messages} messages)", out
            )
        elif isinstance(event, e.TestStarted):
            self.record(device, now, "test", "on test (maintenance) from now")
        elif isinstance(event, e.TestEnded):
            missed = ", its deadline passed meanwhile" if event.missed else ""
            self.record(
                device,
                now,
                "test",
                f"test ended: {event.messages} messages{missed}; resumed {event.state.label}",
            )
        elif isinstance(event, e.Retired):
            for incident in self._device_incidents(device):
                self._resolve(incident, now, "resolved", "device retired", None, out)
            self._recovered(device, now, "retired", out)
        return out

    def _inbound_incident(self) -> Incident | None:
        incident_id = self._by_key.get("inbound_path")
        return None if incident_id is None else self._open[incident_id]

    def _reopened_down(self, device: str, now: float) -> list[IncidentEvent]:
        out: list[IncidentEvent] = []
        self._open_incident(
            "device_down",
            Severity.CRITICAL,
            f"device_down:{device}",
            f"{device}: down (silent while the inbound path was in doubt, and since)",
            now,
            out,
            device=device,
        )
        return out

    def handle_callback(
        self, device: str, state: e.State, outcome: str, confirmed: bool, now: float
    ) -> list[IncidentEvent]:
        """The centre called `device` back: answered and got through (`confirmed`),
        or the dial's outcome ("no answer", "busy", ...)."""
        out: list[IncidentEvent] = []
        if not confirmed:
            text = f"callback: {outcome}" + (
                ", confirms it is down" if state is e.State.DOWN else ""
            )
            self.record(device, now, "callback", text)
            return out
        if state not in (e.State.LATE, e.State.DOWN):
            self.record(device, now, "callback", "answered a callback")
            return out
        self.record(device, now, "callback", "answered a callback but does not call out")
        self._resolve_key(
            f"device_down:{device}", now, "resolved", "not down: its dial-out is broken", out
        )
        self._open_incident(
            "dial_out_broken",
            Severity.MAJOR,
            f"dial_out_broken:{device}",
            f"{device}: dial-out broken (answers a callback, does not call out)",
            now,
            out,
            device=device,
        )
        return out

    def handle_port(self, event: PortEvent) -> list[IncidentEvent]:
        """The centre's own ports (receiver/supervision/ports.py)."""
        out: list[IncidentEvent] = []
        key = f"port_trouble:{event.port}"
        if isinstance(event, PortDown):
            self._open_incident(
                "port_trouble",
                Severity.MAJOR,
                key,
                f"bank port {event.port}: its modem stopped answering ({event.error})",
                event.at,
                out,
                extra={"port": event.port},
            )
        elif isinstance(event, PortSilent):
            self._open_incident(
                "port_trouble",
                Severity.MAJOR,
                key,
                f"bank port {event.port}: answered nothing while the others answered "
                f"{event.others} calls",
                event.at,
                out,
                extra={"port": event.port},
            )
        elif isinstance(event, PortUp):
            self._resolve_key(key, event.at, "restored", "answering again", out)
        return out

    def record(self, device: str, now: float, what: str, text: str) -> None:
        """A timeline entry on every open incident of `device` (a call, a test) with no
        notification."""
        for incident in self._device_incidents(device):
            self._entry(incident, Entry(now, what, text, device=device))
        outage = self._member(device)
        if outage is not None:
            self._entry(outage, Entry(now, what, text, device=device))

    # -- operators -------------------------------------------------------------------------

    def acknowledge(
        self, incident_id: int, by: str, now: float, note: str | None = None
    ) -> list[IncidentEvent]:
        incident = self._require(incident_id)
        if incident.status is Status.ACKNOWLEDGED:
            return []
        incident.status = Status.ACKNOWLEDGED
        incident.acknowledged_at, incident.acknowledged_by = now, by
        self._entry(incident, Entry(now, "acknowledged", note or "acknowledged", by=by))
        return [self._event(incident, Change.ACKNOWLEDGED, now, by=by)]

    def resolve(self, incident_id: int, by: str, now: float, note: str) -> list[IncidentEvent]:
        incident = self._require(incident_id)
        out: list[IncidentEvent] = []
        self._resolve(incident, now, "resolved", note or "resolved by hand", by, out)
        return out

    def note(self, incident_id: int, by: str, now: float, text: str) -> None:
        self._entry(self._require(incident_id), Entry(now, "note", text, by=by))

    def _require(self, incident_id: int) -> Incident:
        incident = self._open.get(incident_id)
        if incident is None:
            raise IncidentError(f"no open incident {incident_id}")
        return incident

    # -- time ------------------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        pending = [
            (i.last_notified or i.opened_at) + self.config.interval
            for i in self._open.values()
            if i.pending_since is not None
        ]
        return min(pending) if pending else None

    def advance(self, now: float) -> list[IncidentEvent]:
        out: list[IncidentEvent] = []
        for incident in list(self._open.values()):
            if incident.pending_since is None:
                continue
            if now >= (incident.last_notified or incident.opened_at) + self.config.interval:
                self._announce(incident, now, out)
        return out

    # -- internals -------------------------------------------------------------------------

    def _late(self, device: str, now: float, out: list[IncidentEvent]) -> None:
        config = self.config
        outage = self._member(device)
        if outage is not None:
            outage.members[device] = "late"
            self._entry(outage, Entry(now, "late", "late again", device=device))
            self._touch(outage, now, out)
            return
        attributes = self.attributes(device)
        if config.threshold <= 0:
            return
        for factor in config.factors:
            value = attributes.get(factor)
            if not value:
                continue
            key = f"outage:{factor}={value}"
            existing = self._by_key.get(key)
            if existing is not None:
                outage = self._open[existing]
                self._join(outage, device, now)
                self._touch(outage, now, out)
                return
            candidates = self._candidates.setdefault((factor, value), {})
            for name, since in list(candidates.items()):
                if since < now - config.window or name in self._member_of:
                    del candidates[name]
            candidates[device] = now
            if len(candidates) >= config.threshold:
                members = list(candidates)
                del self._candidates[(factor, value)]
                outage = self._open_incident(
                    "outage",
                    Severity.CRITICAL,
                    key,
                    "",
                    now,
                    None,
                    extra={factor: value, "factor": factor},
                )
                for name in members:
                    self._join(outage, name, now)
                outage.summary = self._outage_summary(outage)
                outage.last_notified = now
                out.append(self._event(outage, Change.OPENED, now))
                return

    def _join(self, outage: Incident, device: str, now: float) -> None:
        outage.members[device] = "late"
        self._member_of[device] = outage.id
        for candidates in self._candidates.values():
            candidates.pop(device, None)
        self._entry(outage, Entry(now, "joined", "late", device=device))

    def _recovered(self, device: str, now: float, how: str, out: list[IncidentEvent]) -> None:
        for candidates in self._candidates.values():
            candidates.pop(device, None)
        outage = self._member(device)
        if outage is None:
            return
        del self._member_of[device]
        outage.members[device] = "recovered"
        self._entry(outage, Entry(now, "recovered", how, device=device))
        if outage.kind != "inbound_path" and all(
            status == "recovered" for status in outage.members.values()
        ):
            self._resolve(outage, now, "restored", "every device recovered", None, out)
        else:
            self._touch(outage, now, out)

    def _member(self, device: str) -> Incident | None:
        incident_id = self._member_of.get(device)
        return None if incident_id is None else self._open.get(incident_id)

    def _device_incidents(self, device: str) -> list[Incident]:
        return [i for i in self._open.values() if i.device == device]

    def _outage_summary(self, outage: Incident) -> str:
        factor = outage.attributes.get("factor", "")
        value = outage.attributes.get(factor, "")
        counts: dict[str, int] = {}
        for status in outage.members.values():
            counts[status] = counts.get(status, 0) + 1
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"outage: {len(outage.members)} devices sharing {factor}={value} ({detail})"

    def _touch(self, outage: Incident, now: float, out: list[IncidentEvent]) -> None:
        """An outage changed: announce it now, or when `interval` has passed."""
        outage.summary = self._outage_summary(outage)
        self._dirty[outage.id] = outage
        if outage.pending_since is None:
            outage.pending_since = now
        last = outage.last_notified if outage.last_notified is not None else outage.opened_at
        if now >= last + self.config.interval:
            self._announce(outage, now, out)

    def _announce(self, outage: Incident, now: float, out: list[IncidentEvent]) -> None:
        outage.pending_since = None
        outage.last_notified = now
        self._dirty[outage.id] = outage
        out.append(self._event(outage, Change.UPDATED, now))

    def _open_incident(
        self,
        kind: str,
        severity: Severity,
        key: str,
        summary: str,
        now: float,
        out: list[IncidentEvent] | None,
        *,
        device: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Incident:
        existing = self._by_key.get(key)
        if existing is not None:  # the same trouble again while open: one more entry
            incident = self._open[existing]
            self._entry(incident, Entry(now, "again", summary, device=device))
            return incident
        attributes = self.attributes(device) if device else {}
        attributes.update(extra or {})
        incident = Incident(
            id=self._next_id,
            kind=kind,
            severity=severity,
            key=key,
            summary=summary,
            opened_at=now,
            device=device,
            attributes=attributes,
        )
        self._next_id += 1
        self._open[incident.id] = incident
        self._by_key[key] = incident.id
        self._entry(incident, Entry(now, "opened", summary or kind, device=device))
        if out is not None:
            incident.last_notified = now
            out.append(self._event(incident, Change.OPENED, now))
        return incident

    def _resolve_key(
        self, key: str, now: float, what: str, text: str, out: list[IncidentEvent]
    ) -> None:
        incident_id = self._by_key.get(key)
        if incident_id is not None:
            self._resolve(self._open[incident_id], now, what, text, None, out)

    def _resolve(
        self,
        incident: Incident,
        now: float,
        what: str,
        text: str,
        by: str | None,
        out: list[IncidentEvent],
    ) -> None:
        incident.status = Status.RESOLVED
        incident.resolved_at, incident.resolved_by = now, by
        incident.pending_since = None
        self._entry(incident, Entry(now, what, text, by=by))
        del self._open[incident.id]
        if self._by_key.get(incident.key) == incident.id:
            del self._by_key[incident.key]
        for device in incident.members:
            if self._member_of.get(device) == incident.id:
                del self._member_of[device]
        out.append(self._event(incident, Change.RESOLVED, now, by=by))

    def _entry(self, incident: Incident, entry: Entry) -> None:
        incident.timeline.append(entry)
        self._new_entries.append((incident.id, entry))
        self._dirty[incident.id] = incident

    def _event(
        self, incident: Incident, change: Change, now: float, by: str | None = None
    ) -> IncidentEvent:
        attributes = dict(incident.attributes)
        if incident.members:
            attributes["members"] = str(len(incident.members))
        return IncidentEvent(
            incident_id=incident.id,
            change=change,
            kind=incident.kind,
            severity=incident.severity,
            summary=incident.summary,
            at=now,
            opened_at=incident.opened_at,
            device=incident.device,
            by=by,
            attributes=attributes,
        )
