"""Routes and escalation policies: incident events in, notifications out. Sans-IO: every
call takes `now` (seconds since the epoch) and returns what to send; the shell persists
the state (`Escalation.to_json`) and the notifications in one transaction, then sends.

- Routing: the route tree, like Alertmanager's: the first matching route wins unless it
  says `continue`; a matching route with matching children goes to the first child that
  matches; a route without a policy inherits its parent's; nothing matches: the default.
- A policy runs its steps in order, waiting `wait` after each, and the whole list
  `repeat` times while nobody acknowledges. A step with nobody to notify is skipped at
  once (its wait is not served). Held severities (`hold`) do not page out of hours: they
  start when business hours next begin at any centre.
- An acknowledgement stops every pending step of the incident at once; an update, the
  acknowledgement and the resolution are sent to everyone the incident reached.
- Idempotency: every notification has a key per (incident, step, recipient); a step
  that runs again after a restart produces the same keys, and the outbox sends it once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..incident_events import Change, IncidentEvent, Severity
from . import links
from .localtime import to_local
from .model import Contact, Route, Routing
from .schedule import Handover, Schedule, on_call, utc

ACK_COMMAND = "callhome-receiver incidents ack {id}"
RETAIN = 7 * 86400.0
"""How long a resolved incident is remembered (a replayed OPENED is ignored)."""


@dataclass(frozen=True)
class Recipient:
    name: str
    """ "centre:paris", "person:alice"."""
    contact: Contact


@dataclass(frozen=True)
class Notification:
    """One message to one address. `key` is the idempotency key (per incident, step and
    recipient) the receiver sees; the outbox keeps one row per (key, channel, address)."""

    key: str
    recipient: str
    channel: str
    """ "email", "webhook" or "command"."""
    address: str
    """The e-mail address, or the name of the webhook or command."""
    subject: str
    body: str
    payload: dict[str, Any]

    @property
    def outbox_key(self) -> str:
        return f"{self.key}|{self.channel}|{self.address}"


def event_to_json(event: IncidentEvent) -> dict[str, Any]:
    return {
        "incident_id": event.incident_id,
        "change": event.change.value,
        "kind": event.kind,
        "severity": event.severity.value,
        "summary": event.summary,
        "at": event.at,
        "opened_at": event.opened_at,
        "device": event.device,
        "by": event.by,
        "attributes": dict(event.attributes),
    }


def event_from_json(data: dict[str, Any]) -> IncidentEvent:
    return IncidentEvent(
        incident_id=int(data["incident_id"]),
        change=Change(data["change"]),
        kind=str(data["kind"]),
        severity=Severity(data["severity"]),
        summary=str(data["summary"]),
        at=float(data["at"]),
        opened_at=float(data["opened_at"]),
        device=data.get("device"),
        by=data.get("by"),
        attributes=dict(data.get("attributes") or {}),
    )


@dataclass
class Escalation:
    """One incident going through one policy: the state that survives a restart."""

    incident_id: int
    policy: str
    event: IncidentEvent
    step: int = 0
    round: int = 0
    due: float | None = None
    """When the next step runs; None: nothing pending (acknowledged or exhausted)."""
    held: bool = False
    acknowledged_by: str | None = None
    notified: list[str] = field(default_factory=list)
    """Recipients the incident reached, in order (who had it)."""
    centre: str | None = None
    """The centre on duty when it last escalated."""
    resolved: bool = False
    """Kept a while after the resolution, so that the same OPENED event replayed is not
    escalated again (see `RETAIN`)."""

    @property
    def key(self) -> tuple[int, str]:
        return self.incident_id, self.policy

    def to_json(self) -> str:
        return json.dumps(
            {
                "event": event_to_json(self.event),
                "step": self.step,
                "round": self.round,
                "due": self.due,
                "held": self.held,
                "acknowledged_by": self.acknowledged_by,
                "notified": self.notified,
                "centre": self.centre,
                "resolved": self.resolved,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, incident_id: int, policy: str, text: str) -> Escalation:
        data = json.loads(text)
        return cls(
            incident_id,
            policy,
            event_from_json(data["event"]),
            int(data["step"]),
            int(data["round"]),
            None if data["due"] is None else float(data["due"]),
            bool(data["held"]),
            data.get("acknowledged_by"),
            list(data.get("notified") or []),
            data.get("centre"),
            bool(data.get("resolved", False)),
        )


# -- routing ------------------------------------------------------------------------------


def _value(event: IncidentEvent, key: str) -> str | None:
    if key == "severity":
        return event.severity.value
    if key == "kind":
        return event.kind
    if key == "device":
        return event.device or event.attributes.get("device")
    return event.attributes.get(key)


def matches(route: Route, event: IncidentEvent) -> bool:
    return all(_value(event, key) in values for key, values in route.match)


def _walk(routes: Iterable[Route], event: IncidentEvent, inherited: str | None) -> list[str]:
    chosen: list[str] = []
    for route in routes:
        if not matches(route, event):
            continue
        policy = route.policy or inherited
        below = _walk(route.routes, event, policy)
        chosen.extend(below or ([policy] if policy else []))
        if not route.cont:
            break
    return chosen


def policies_for(routing: Routing, event: IncidentEvent) -> list[str]:
    """The policies an incident goes through, in order, each once."""
    chosen = _walk(routing.routes, event, routing.default_policy)
    if not chosen and routing.default_policy:
        chosen = [routing.default_policy]
    return list(dict.fromkeys(chosen))


# -- messages -----------------------------------------------------------------------------


def _stamp(at: float) -> str:
    return utc(at).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(
    routing: Routing,
    event: IncidentEvent,
    *,
    key: str,
    recipient: str,
    step: str,
    now: float,
    centre: str | None,
) -> tuple[str, str, dict[str, Any]]:
    """(subject, body, JSON payload): what happened, where, since when, how to ack."""
    where = ", ".join(
        f"{name} {value}"
        for name, value in [("device", event.device), *sorted(event.attributes.items())]
        if value
    )
    verb = {
        Change.OPENED: "",
        Change.UPDATED: "update: ",
        Change.ACKNOWLEDGED: f"acknowledged by {event.by or 'someone'}: ",
        Change.RESOLVED: f"resolved{f' by {event.by}' if event.by else ''}: ",
    }[event.change]
    subject = (
        f"[callhome] {verb}{event.severity.value.upper()} {event.kind}: {event.summary} "
        f"(incident {event.incident_id})"
    )
    link = None
    if routing.ack_url and routing.link_secret and event.change in (Change.OPENED, Change.UPDATED):
        link = links.ack_url(
            routing.ack_url, routing.link_secret, event.incident_id, now, routing.link_ttl
        )
    local = ""
    if centre is not None:
        try:
            site = routing.site(centre)
            local = f" ({to_local(utc(event.opened_at), site.zone):%Y-%m-%d %H:%M} {site.name})"
        except KeyError:
            pass
    lines = [
        f"What:  {event.summary} ({event.kind}, {event.severity.value}, {event.change.value})",
        f"Where: {where or 'the centre itself'}",
        f"Since: {_stamp(event.opened_at)}{local}",
    ]
    if event.change in (Change.OPENED, Change.UPDATED):
        lines.append(f"Ack:   {ACK_COMMAND.format(id=event.incident_id)}")
        if link:
            lines.append(f"       or open {link}")
    lines.append(f"(incident {event.incident_id}, step {step}, for {recipient})")
    payload = {
        **event_to_json(event),
        "step": step,
        "recipient": recipient,
        "idempotency_key": key,
        "on_duty": centre,
        "ack_command": ACK_COMMAND.format(id=event.incident_id),
        "ack_url": link,
        "text": "\n".join(lines),
    }
    return subject, "\n".join(lines) + "\n", payload


def notifications_for(
    recipient: Recipient, key: str, subject: str, body: str, payload: dict[str, Any]
) -> list[Notification]:
    contact = recipient.contact
    out = [
        Notification(key, recipient.name, "email", address, subject, body, payload)
        for address in contact.email
    ]
    if contact.webhook:
        out.append(
            Notification(key, recipient.name, "webhook", contact.webhook, subject, body, payload)
        )
    if contact.command:
        out.append(
            Notification(key, recipient.name, "command", contact.command, subject, body, payload)
        )
    return out


# -- the engine ---------------------------------------------------------------------------


@dataclass
class Changes:
    notifications: list[Notification] = field(default_factory=list)
    saved: list[Escalation] = field(default_factory=list)
    deleted: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Steps skipped because they had nobody to notify (for the log)."""


class Escalator:
    def __init__(self, routing: Routing, escalations: Iterable[Escalation] = ()) -> None:
        self.routing = routing
        self.schedule = Schedule(routing)
        self.escalations: dict[tuple[int, str], Escalation] = {e.key: e for e in escalations}

    # who a target means now
    def recipients(self, targets: Iterable[str], now: float) -> list[Recipient]:
        at = utc(now)
        found: dict[str, Recipient] = {}
        people = self.routing.people

        def person(name: str | None) -> None:
            if name is not None and name in people:
                found.setdefault(f"person:{name}", Recipient(f"person:{name}", people[name]))

        for target in targets:
            kind, _, name = target.partition(":")
            if kind == "centre":
                site = self.schedule.on_duty(at)
                if site is not None:
                    found.setdefault(
                        f"centre:{site.name}", Recipient(f"centre:{site.name}", site.contact)
                    )
            elif kind == "centres":  # every centre sees all activity
                for site in self.routing.sites:
                    found.setdefault(
                        f"centre:{site.name}", Recipient(f"centre:{site.name}", site.contact)
                    )
            elif kind == "oncall":
                roster = self.schedule.roster_of(self.schedule.on_duty(at))
                person(on_call(roster, at) if roster else None)
            elif kind == "roster":
                person(on_call(self.routing.rosters[name], at))
            elif kind == "person":
                person(name)
            elif kind == "group":
                for member in self.routing.groups.get(name, ()):
                    person(member)
        return [r for r in found.values() if not r.contact.empty]

    def _send(
        self,
        changes: Changes,
        escalation: Escalation,
        event: IncidentEvent,
        recipients: Iterable[Recipient],
        step: str,
        now: float,
    ) -> None:
        for recipient in recipients:
            key = (
                f"incident-{event.incident_id}@{int(event.opened_at)}/{escalation.policy}/"
                f"{step}/{recipient.name}"
            )
            subject, body, payload = render(
                self.routing,
                event,
                key=key,
                recipient=recipient.name,
                step=step,
                now=now,
                centre=escalation.centre,
            )
            changes.notifications.extend(notifications_for(recipient, key, subject, body, payload))

    def handle(self, event: IncidentEvent, now: float) -> Changes:
        changes = Changes()
        mine = [e for e in self.escalations.values() if e.incident_id == event.incident_id]
        if event.change is Change.OPENED:
            if (
                mine
                and all(e.resolved for e in mine)
                and event.opened_at > max(e.event.opened_at for e in mine)
            ):
                for old in mine:  # the same id opened anew: forget the resolved one
                    del self.escalations[old.key]
                    changes.deleted.append(old.key)
            elif mine:
                return changes  # the same event again (a restart of the engine)
            watch = self.schedule.watch(utc(now))
            for name in policies_for(self.routing, event):
                policy = self.routing.policies[name]
                escalation = Escalation(event.incident_id, name, event, due=now)
                escalation.centre = watch.site.name if watch.site else None
                if event.severity in policy.hold and not watch.open:
                    opening = self.schedule.next_opening(utc(now))
                    if opening is not None:
                        escalation.due, escalation.held = opening.timestamp(), True
                self.escalations[escalation.key] = escalation
                changes.saved.append(escalation)
            self._tick(now, changes)
            return changes
        for escalation in mine:
            if escalation.resolved:
                continue
            escalation.event = event
            reached = [
                Recipient(name, self._contact(name))
                for name in escalation.notified
                if not self._contact(name).empty
            ]
            step = {
                Change.UPDATED: f"update-{int(event.at * 1000)}",
                Change.ACKNOWLEDGED: "acknowledged",
                Change.RESOLVED: "resolved",
            }[event.change]
            self._send(changes, escalation, event, reached, step, now)
            if event.change is Change.ACKNOWLEDGED:
                escalation.due, escalation.held = None, False
                escalation.acknowledged_by = event.by or "someone"
            if event.change is Change.RESOLVED:
                escalation.due, escalation.held, escalation.resolved = None, False, True
            changes.saved.append(escalation)
        return changes

    def _contact(self, name: str) -> Contact:
        kind, _, rest = name.partition(":")
        if kind == "person":
            return self.routing.people.get(rest, Contact())
        try:
            return self.routing.site(rest).contact
        except KeyError:
            return Contact()

    def next_due(self) -> float | None:
        pending = [e.due for e in self.escalations.values() if e.due is not None]
        pending += [e.event.at + RETAIN for e in self.escalations.values() if e.resolved]
        return min(pending) if pending else None

    def tick(self, now: float) -> Changes:
        changes = Changes()
        self._tick(now, changes)
        return changes

    def _tick(self, now: float, changes: Changes) -> None:
        for escalation in list(self.escalations.values()):
            if escalation.resolved and escalation.event.at + RETAIN <= now:
                del self.escalations[escalation.key]
                changes.deleted.append(escalation.key)
                continue
            if escalation.due is None or escalation.due > now:
                continue
            policy = self.routing.policies.get(escalation.policy)
            if policy is None:  # the policy left the routing file: nothing more to do
                escalation.due = None
                changes.saved.append(escalation)
                continue
            escalation.held = False
            watch = self.schedule.watch(utc(now))
            escalation.centre = watch.site.name if watch.site else escalation.centre
            # bounded: a full set of rounds with nobody anywhere ends the loop
            for _ in range(len(policy.steps) * policy.repeat):
                if escalation.due is None or escalation.due > now:
                    break
                step = policy.steps[escalation.step]
                label = f"round-{escalation.round + 1}-step-{escalation.step + 1}"
                recipients = self.recipients(step.targets, now)
                if recipients:
                    self._send(changes, escalation, escalation.event, recipients, label, now)
                    for recipient in recipients:
                        if recipient.name not in escalation.notified:
                            escalation.notified.append(recipient.name)
                    escalation.due = now + step.wait
                else:
                    changes.skipped.append(f"incident {escalation.incident_id} {label}")
                escalation.step += 1
                if escalation.step == len(policy.steps):
                    escalation.step, escalation.round = 0, escalation.round + 1
                    if escalation.round >= policy.repeat:
                        escalation.due = None
            changes.saved.append(escalation)

    def ledger(self, handover: Handover, now: float) -> Changes:
        """The hand-over note for the incoming centre: every open incident and who had
        it. Nothing open: nothing sent."""
        changes = Changes()
        incoming = handover.incoming
        open_ones = [e for e in self.escalations.values() if not e.resolved]
        if incoming is None or incoming.contact.empty or not open_ones:
            return changes
        outgoing = handover.outgoing.name if handover.outgoing else "nobody"
        rows = []
        incidents = []
        for escalation in sorted(open_ones, key=lambda e: e.incident_id):
            event = escalation.event
            state = (
                f"acknowledged by {escalation.acknowledged_by}"
                if escalation.acknowledged_by
                else "held until business hours"
                if escalation.held
                else "escalating"
                if escalation.due is not None
                else "not acknowledged, escalation exhausted"
            )
            had = ", ".join(escalation.notified) or "nobody yet"
            rows.append(
                f"- incident {event.incident_id} [{event.severity.value}] {event.summary} "
                f"since {_stamp(event.opened_at)}; {state}; had it: {had}"
            )
            incidents.append(
                {
                    "incident_id": event.incident_id,
                    "policy": escalation.policy,
                    "severity": event.severity.value,
                    "summary": event.summary,
                    "opened_at": event.opened_at,
                    "state": state,
                    "notified": list(escalation.notified),
                }
            )
        stamp = handover.at.strftime("%Y-%m-%dT%H:%MZ")
        key = f"handover-{stamp}/centre:{incoming.name}"
        subject = (
            f"[callhome] hand-over {outgoing} -> {incoming.name}: {len(rows)} open incident(s)"
        )
        body = (
            f"{incoming.name} takes the watch from {outgoing} at {_stamp(handover.at.timestamp())}."
            "\nOpen:\n" + "\n".join(rows) + "\n"
        )
        payload = {
            "handover": stamp,
            "from": outgoing,
            "to": incoming.name,
            "incidents": incidents,
            "idempotency_key": key,
            "text": body,
        }
        changes.notifications.extend(
            notifications_for(
                Recipient(f"centre:{incoming.name}", incoming.contact), key, subject, body, payload
            )
        )
        return changes


def handovers_between(schedule: Schedule, start: float, end: float) -> list[Handover]:
    if end <= start:
        return []
    return [h for h in schedule.handovers(utc(start), utc(end)) if h.at > utc(start)]
