"""Routes and escalation in simulated time: nothing here sleeps or reads a clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.incident_events import Change, IncidentEvent, Severity
from receiver.sun.escalation import (
    RETAIN,
    Escalation,
    Escalator,
    handovers_between,
    policies_for,
)
from receiver.sun.links import verify_token
from receiver.sun.model import Routing, Step
from receiver.sun.schedule import Schedule


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[arg-type,misc]


def event(
    incident: int,
    change: Change = Change.OPENED,
    severity: Severity = Severity.MAJOR,
    at: float = 0.0,
    kind: str = "device_down",
    by: str | None = None,
    **attributes: str,
) -> IncidentEvent:
    return IncidentEvent(
        incident_id=incident,
        change=change,
        kind=kind,
        severity=severity,
        summary=f"incident {incident} summary",
        at=at,
        opened_at=at,
        device="pump-7",
        by=by,
        attributes={"site": "lyon", **attributes},
    )


def recipients(changes: object) -> set[str]:
    return {n.recipient for n in changes.notifications}  # type: ignore[attr-defined]


def test_routes_first_match_wins_unless_continue(example: Routing) -> None:
    assert policies_for(example, event(1, severity=Severity.CRITICAL)) == ["urgent"]
    assert policies_for(example, event(1, customer="acme")) == ["standard"]
    assert policies_for(example, event(1, customer="acme", kind="outage")) == ["urgent"]
    assert policies_for(example, event(1, customer="other")) == ["standard"]  # the default
    # `continue`: the acme route goes on to the routes after it
    routes = (example.routes[1], example.routes[0])
    both = dataclasses.replace(example, routes=routes)
    critical_acme = event(1, severity=Severity.CRITICAL, customer="acme")
    assert policies_for(both, critical_acme) == ["standard", "urgent"]


def test_opened_at_0859_and_0901_in_tokyo_go_to_the_right_centre(example: Routing) -> None:
    # Monday 2026-06-01 09:00 in Tokyo is Sunday 2026-05-31 24:00 UTC
    before, after = ts(2026, 5, 31, 23, 59), ts(2026, 6, 1, 0, 1)
    early = Escalator(example).handle(event(1, at=before), before)
    late = Escalator(example).handle(event(2, at=after), after)
    # before the opening: New York keeps the weekend watch, and its on-call is paged
    assert recipients(early) == {"centre:newyork", "person:carol"}  # 19:59 in New York
    assert recipients(late) == {"centre:tokyo", "person:kenji"}
    # a minor incident at 08:59 waits the minute for Tokyo instead of paging New York
    held = Escalator(example)
    assert held.handle(event(3, severity=Severity.MINOR, at=before), before).notifications == []
    assert held.next_due() == ts(2026, 6, 1)
    assert recipients(held.tick(ts(2026, 6, 1))) == {"centre:tokyo", "person:kenji"}


def test_steps_wait_repeat_and_an_ack_stops_them_all(example: Routing) -> None:
    start = ts(2026, 6, 2, 8)  # Tuesday, Paris has the watch
    engine = Escalator(example)
    first = engine.handle(event(5, severity=Severity.CRITICAL, at=start), start)
    assert recipients(first) == {"centre:paris", "person:bruno"}
    assert engine.next_due() == start + 300
    assert engine.tick(start + 299).notifications == []
    second = engine.tick(start + 300)
    assert recipients(second) == {"person:bruno", "person:erin"}  # roster:paris-oncall + erin
    assert {n.key for n in second.notifications} == {
        f"incident-5@{int(start)}/urgent/round-1-step-2/person:bruno",
        f"incident-5@{int(start)}/urgent/round-1-step-2/person:erin",
    }
    assert engine.next_due() == start + 900
    third = engine.tick(start + 900)  # round 2 starts over
    assert {n.key.split("/")[2] for n in third.notifications} == {"round-2-step-1"}
    ack = engine.handle(
        event(5, Change.ACKNOWLEDGED, Severity.CRITICAL, start + 901, by="alice"), start + 901
    )
    assert engine.next_due() is None
    assert recipients(ack) == {"centre:paris", "person:bruno", "person:erin"}
    assert all("acknowledged by alice" in n.subject for n in ack.notifications)
    assert engine.tick(start + 86400).notifications == []
    resolved = engine.handle(event(5, Change.RESOLVED, Severity.CRITICAL, start + 999), start + 999)
    assert recipients(resolved) == recipients(ack)
    assert engine.next_due() == start + 999 + RETAIN
    # the same OPENED again (a replay) is not escalated again; a week later it is forgotten
    assert engine.handle(event(5, severity=Severity.CRITICAL, at=start), start + 1000).saved == []
    assert engine.tick(start + 999 + RETAIN).deleted == [(5, "urgent")]
    assert engine.escalations == {}


def test_a_policy_gives_up_after_its_rounds(example: Routing) -> None:
    start = ts(2026, 6, 2, 8)
    engine = Escalator(example)
    engine.handle(event(6, at=start), start)  # standard: 2 rounds of 2 steps
    sent = 1
    while engine.next_due() is not None:
        assert engine.tick(engine.next_due() or 0).notifications
        sent += 1
    assert sent == 4


def test_restart_during_a_wait_resumes_it_with_the_same_keys(example: Routing) -> None:
    start = ts(2026, 6, 2, 8)
    straight = Escalator(example)
    straight.handle(event(7, severity=Severity.CRITICAL, at=start), start)
    expected = straight.tick(start + 300)
    interrupted = Escalator(example)
    interrupted.handle(event(7, severity=Severity.CRITICAL, at=start), start)
    saved = [(e.incident_id, e.policy, e.to_json()) for e in interrupted.escalations.values()]
    # the receiver dies 2 minutes into the 5-minute wait and comes back 10 minutes later
    restarted = Escalator(example, [Escalation.from_json(*row) for row in saved])
    assert restarted.next_due() == start + 300
    assert restarted.tick(start + 120).notifications == []
    resumed = restarted.tick(start + 300)
    assert [n.outbox_key for n in resumed.notifications] == [
        n.outbox_key for n in expected.notifications
    ]
    # the same OPENED event again (the engine restarted too) does not start over
    assert restarted.handle(event(7, severity=Severity.CRITICAL, at=start), start).saved == []


def test_a_step_with_nobody_is_skipped_without_waiting(example: Routing) -> None:
    policy = example.policies["urgent"]
    empty = dataclasses.replace(example.people["erin"], email=())
    steps = (Step(("person:ghost",), 3600.0), *policy.steps[1:])
    routing = dataclasses.replace(
        example,
        people={**example.people, "ghost": empty},
        policies={**example.policies, "urgent": dataclasses.replace(policy, steps=steps)},
    )
    start = ts(2026, 6, 2, 8)
    changes = Escalator(routing).handle(event(8, severity=Severity.CRITICAL, at=start), start)
    assert recipients(changes) == {"person:bruno", "person:erin"}  # step 2 at once
    assert changes.skipped == ["incident 8 round-1-step-1"]


def test_every_page_says_what_where_since_and_how_to_ack(example: Routing) -> None:
    start = ts(2026, 6, 2, 8)
    changes = Escalator(example).handle(event(9, at=start, customer="acme"), start)
    page = next(n for n in changes.notifications if n.recipient == "centre:paris")
    assert page.channel == "email" and page.address == "noc-paris@example.com"
    assert "incident 9 summary" in page.subject and "MAJOR" in page.subject
    assert "device pump-7" in page.body and "customer acme" in page.body
    assert "Since: 2026-06-02 08:00:00 UTC (2026-06-02 10:00 paris)" in page.body
    assert "callhome-receiver incidents ack 9" in page.body
    token = page.payload["ack_url"].split("token=", 1)[1]
    assert example.link_secret is not None
    assert verify_token(example.link_secret, token, start + 60, "ack").incident_id == 9
    webhook = next(n for n in changes.notifications if n.channel == "webhook")
    assert webhook.address == "paris-chat" and webhook.payload["incident_id"] == 9


def test_the_handover_ledger_tells_the_incoming_centre_what_is_open(example: Routing) -> None:
    start = ts(2026, 6, 2, 8)  # Paris
    engine = Escalator(example)
    engine.handle(event(10, at=start), start)
    engine.handle(event(11, severity=Severity.CRITICAL, at=start), start)
    engine.handle(event(11, Change.ACKNOWLEDGED, Severity.CRITICAL, start + 60, by="bruno"), start)
    handovers = handovers_between(Schedule(example), start, ts(2026, 6, 2, 23))
    assert [h.incoming.name for h in handovers if h.incoming] == ["newyork"]
    ledger = engine.ledger(handovers[0], handovers[0].at.timestamp())
    note = next(n for n in ledger.notifications if n.channel == "email")
    assert note.address == "noc-ny@example.com"
    assert "newyork takes the watch from paris at 2026-06-02 12:00:00 UTC" in note.body
    assert "incident 10" in note.body and "had it: centre:paris, person:bruno" in note.body
    assert "incident 11" in note.body and "acknowledged by bruno" in note.body
    assert Escalator(example).ledger(handovers[0], start).notifications == []


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(1, 3), st.sampled_from(list(Severity))),
        st.tuples(st.sampled_from(["ack", "update", "resolve"]), st.integers(1, 3)),
        st.tuples(st.just("tick"), st.integers(0, 4 * 3600)),
        st.tuples(st.just("restart")),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 14 * 86400), OPS)
@example(  # an ack after the resolve, then the same id opened anew: a new incident
    0,
    [
        ("open", 1, Severity.CRITICAL),
        ("resolve", 1),
        ("tick", 1),
        ("ack", 1),
        ("open", 1, Severity.CRITICAL),
    ],
)
def test_escalation_invariants_in_any_order(example: Routing, offset: int, ops: list) -> None:  # type: ignore[type-arg]
    now = ts(2026, 3, 2) + offset  # two weeks around the US change of 8 March
    steady = Escalator(example)
    restarted = Escalator(example)
    seen: set[str] = set()
    acknowledged: set[int] = set()
    severities: dict[int, Severity] = {}
    for op in ops:
        if op[0] == "restart":
            rows = [(e.incident_id, e.policy, e.to_json()) for e in restarted.escalations.values()]
            restarted = Escalator(example, [Escalation.from_json(*row) for row in rows])
            continue
        if op[0] == "tick":
            now += op[1]
            outputs = [steady.tick(now), restarted.tick(now)]
        else:
            incident = op[1]
            if op[0] == "open":
                severities.setdefault(incident, op[2])
            change = {
                "open": Change.OPENED,
                "ack": Change.ACKNOWLEDGED,
                "update": Change.UPDATED,
                "resolve": Change.RESOLVED,
            }[op[0]]
            happened = event(incident, change, severities.get(incident, Severity.MAJOR), now)
            outputs = [steady.handle(happened, now), restarted.handle(happened, now)]
            if change is Change.ACKNOWLEDGED and any(
                e.incident_id == incident and not e.resolved for e in steady.escalations.values()
            ):  # an acknowledgement of a resolved incident acknowledges nothing
                acknowledged.add(incident)
            if change is Change.RESOLVED:
                acknowledged.discard(incident)
                severities.pop(incident, None)
        # a restart changes nothing of what is sent
        assert [n.outbox_key for n in outputs[0].notifications] == [
            n.outbox_key for n in outputs[1].notifications
        ]
        for notification in outputs[0].notifications:
            incident = int(notification.key.split("@")[0].removeprefix("incident-"))
            step = notification.key.split("/")[2]
            # an acknowledgement stops every pending step at once
            assert not (incident in acknowledged and step.startswith("round-")), notification.key
            # each escalation step reaches each recipient once (a repeated ack or update
            # event gives the same key again, which the outbox keeps once)
            if step.startswith("round-"):
                assert notification.outbox_key not in seen
                seen.add(notification.outbox_key)
        due = steady.next_due()
        assert due is None or due > now or op[0] != "tick"
        assert steady.next_due() == restarted.next_due()


def test_centres_tells_every_centre(example: Routing) -> None:
    policy = dataclasses.replace(example.policies["standard"], steps=(Step(("centres",), 0.0),))
    routing = dataclasses.replace(example, policies={**example.policies, "standard": policy})
    start = ts(2026, 6, 2, 8)
    changes = Escalator(routing).handle(event(12, at=start), start)
    assert recipients(changes) == {"centre:tokyo", "centre:paris", "centre:newyork"}
