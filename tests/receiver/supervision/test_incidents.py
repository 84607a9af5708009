"""Incidents from the engine's events: pairing, timelines, storms, common cause."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.incident_events import Change, IncidentEvent, Severity
from receiver.supervision import engine as e
from receiver.supervision.engine import Engine, EngineConfig
from receiver.supervision.incidents import GroupingConfig, IncidentError, Incidents, Status

T0 = 1_800_000_000.0


def drive(engine: Engine, book: Incidents, until: float) -> list[IncidentEvent]:
    out: list[IncidentEvent] = []
    while True:
        wakes = [w for w in (engine.next_wakeup(), book.next_wakeup()) if w is not None]
        if not wakes or min(wakes) > until:
            return out
        now = min(wakes)
        for event in engine.advance(now):
            out += book.handle(event)
        out += book.advance(now)


def feed(book: Incidents, events: list[e.Event]) -> list[IncidentEvent]:
    out: list[IncidentEvent] = []
    for event in events:
        out += book.handle(event)
    return out


def test_down_opens_restore_resolves_with_a_restored_entry():
    engine, book = Engine(), Incidents()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    book.set_attributes("a", {"site": "lyon", "customer": "acme"})
    (opened,) = drive(engine, book, T0 + 200)
    assert (opened.change, opened.kind, opened.severity) == (
        Change.OPENED,
        "device_down",
        Severity.CRITICAL,
    )
    assert opened.device == "a" and opened.attributes["customer"] == "acme"
    book.record("a", T0 + 250, "call", "call 17 on bank0: failed")
    (acked,) = book.acknowledge(opened.incident_id, "alice", T0 + 260, "on it")
    assert acked.change is Change.ACKNOWLEDGED and acked.by == "alice"
    assert book.acknowledge(opened.incident_id, "bob", T0 + 261) == []
    (resolved,) = feed(book, engine.message("a", T0 + 300))
    assert resolved.change is Change.RESOLVED and resolved.incident_id == opened.incident_id
    incidents, entries = book.take_dirty()
    (incident,) = incidents
    assert incident.status is Status.RESOLVED and incident.acknowledged_by == "alice"
    assert [entry.what for _, entry in entries] == [
        "opened",
        "call",
        "acknowledged",
        "restored",
    ]
    assert book.open_incidents() == []


def test_operators_resolve_by_hand_and_cannot_touch_a_resolved_incident():
    engine, book = Engine(), Incidents()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    (opened,) = drive(engine, book, T0 + 200)
    (resolved,) = book.resolve(opened.incident_id, "bob", T0 + 300, "line replaced")
    assert resolved.by == "bob"
    with pytest.raises(IncidentError):
        book.acknowledge(opened.incident_id, "alice", T0 + 301)
    assert feed(book, engine.message("a", T0 + 400)) == []  # nothing left to resolve


def test_path_failure_is_minor_and_names_the_path_down_is_critical():
    engine, book = Engine(), Incidents()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    feed(book, engine.message("a", T0, path="modem"))
    feed(book, engine.message("a", T0 + 1, path="ip"))
    out = drive(engine, book, T0 + 90) + feed(book, engine.message("a", T0 + 90, path="ip"))
    out += drive(engine, book, T0 + 150)
    (failure,) = out
    assert (failure.kind, failure.severity) == ("path_failure", Severity.MINOR)
    assert "path modem silent" in failure.summary and "ip" in failure.summary
    out = drive(engine, book, T0 + 1000)
    assert [(ev.kind, ev.change) for ev in out] == [("device_down", Change.OPENED)]


def test_a_storm_is_one_incident_that_clears_itself():
    engine = Engine(EngineConfig(storm_threshold=10, storm_window=60, storm_quiet=300))
    book = Incidents()
    engine.add("noisy", interval=86400, grace=10, enrolled=T0)
    out = []
    for k in range(1000):
        out += feed(book, engine.message("noisy", T0 + k * 0.1))
    assert [(ev.kind, ev.change) for ev in out] == [("storm", Change.OPENED)]
    out = drive(engine, book, T0 + 1000)
    assert [(ev.kind, ev.change) for ev in out] == [("storm", Change.RESOLVED)]


def test_skew_opens_and_clears():
    engine, book = Engine(EngineConfig(skew_bound=30)), Incidents()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    (opened,) = feed(book, engine.message("a", T0, device_time=T0 + 3600))
    assert opened.kind == "clock_skew" and "+3600" in opened.summary
    (resolved,) = feed(book, engine.message("a", T0 + 5, device_time=T0 + 5))
    assert resolved.change is Change.RESOLVED


def outage(count: int, spread: float, *, threshold: int = 10):
    engine = Engine()
    book = Incidents(GroupingConfig(window=600, threshold=threshold, interval=60))
    for k in range(count):
        name = f"d{k:04d}"
        engine.add(name, interval=3600, grace=900, enrolled=T0)
        engine.message(name, T0 + spread * k / count)  # they go silent spread over `spread`
        book.set_attributes(name, {"port": "bank3", "site": f"site{k}"})
    engine.add("elsewhere", interval=3600, grace=900, enrolled=T0)
    book.set_attributes("elsewhere", {"port": "bank1"})
    return engine, book


def test_a_common_cause_outage_is_one_incident_announced_at_most_once_a_minute():
    engine, book = outage(1000, 600)
    out = drive(engine, book, T0 + 3600 + 600 + 900 + 600)
    ids = {ev.incident_id for ev in out if ev.kind == "outage"}
    assert len(ids) == 1
    assert [ev.kind for ev in out if ev.kind != "outage"] == ["device_down"]  # "elsewhere"
    times = [ev.at for ev in out if ev.kind == "outage"]
    assert all(b - a >= 60 for a, b in itertools.pairwise(times))
    assert out[0].change is Change.OPENED and out[0].kind == "outage"
    (incident,) = [i for i in book.open_incidents() if i.kind == "outage"]
    assert len(incident.members) == 1000 and set(incident.members.values()) == {"down"}
    assert "1000 devices sharing port=bank3" in incident.summary
    # devices come back one by one: ticked off inside it, then it resolves once
    out = []
    for k in range(1000):
        out += feed(book, engine.message(f"d{k:04d}", T0 + 7000 + k))
        out += drive(engine, book, T0 + 7000 + k)
    assert [ev.change for ev in out if ev.change is not Change.UPDATED] == [Change.RESOLVED]
    times = [ev.at for ev in out]
    assert all(b - a >= 60 for a, b in itertools.pairwise(times[:-1]))


def test_few_late_devices_are_not_an_outage():
    engine, book = outage(9, 60)
    out = drive(engine, book, T0 + 10000)
    assert {ev.kind for ev in out} == {"device_down"} and len(out) == 10


def test_late_devices_far_apart_are_not_an_outage():
    engine, book = outage(20, 20 * 700)  # one every 700 s: never 10 within 600 s
    out = drive(engine, book, T0 + 40000)
    assert {ev.kind for ev in out} == {"device_down"}


def test_open_incidents_survive_a_restart():
    engine, book = outage(10, 10)
    drive(engine, book, T0 + 3700)
    (incident,) = book.open_incidents()
    fresh = Incidents(book.config)
    fresh.load(book.open_incidents())
    out = feed(fresh, [e.LateCleared(name, T0 + 3800) for name in incident.members])
    assert [ev.change for ev in out][-1] is Change.RESOLVED


# -- property: every open paired with exactly one resolve, in order ------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "msg",
                    "msg-b",
                    "skewed",
                    "wait",
                    "test",
                    "ack",
                    "resolve",
                    "burst",
                    "callback-ok",
                    "callback-no",
                    "port-down",
                    "port-up",
                    "answered",
                ]
            ),
            st.sampled_from(["a", "b", "c"]),
            st.floats(0, 400),
        ),
        max_size=50,
    )
)
def test_every_open_is_paired_with_exactly_one_resolve_in_order(steps):
    from receiver.supervision.ports import PortWatch

    engine = Engine(EngineConfig(skew_bound=30, storm_threshold=5, storm_window=10))
    book = Incidents(GroupingConfig(threshold=2, window=300, interval=60), probe="c")
    ports = PortWatch(silent_after=3)
    for name in "abc":
        engine.add(name, interval=100, grace=30, enrolled=T0)
        book.set_attributes(name, {"site": "one"})
    now = T0
    out: list[IncidentEvent] = []
    for action, name, dt in steps:
        now += dt
        out += drive(engine, book, now)
        if action in ("msg", "msg-b", "skewed"):
            path = "b" if action == "msg-b" else "a"
            skew = 100 if action == "skewed" else 0
            out += feed(book, engine.message(name, now, path=path, device_time=now + skew))
        elif action == "burst":
            for k in range(7):
                out += feed(book, engine.message(name, now + k * 0.01))
        elif action == "test":
            out += feed(book, engine.start_test(name, now, dt + 1))
        elif action.startswith("callback"):
            state = engine.status(name).state
            ok = action == "callback-ok"
            out += book.handle_callback(name, state, "answered" if ok else "busy", ok, now)
        elif action.startswith("port"):
            for port_event in ports.state(f"bank-{name}", action == "port-up", now):
                out += book.handle_port(port_event)
        elif action == "answered":
            for port_event in ports.answered(f"bank-{name}", now):
                out += book.handle_port(port_event)
        elif book.open_incidents():
            target = book.open_incidents()[0].id
            if action == "ack":
                out += book.acknowledge(target, "op", now)
            elif action == "resolve":
                out += book.resolve(target, "op", now, "done")
    out += drive(engine, book, now + 10_000)
    history: dict[int, list[Change]] = {}
    for event in out:
        history.setdefault(event.incident_id, []).append(event.change)
    for changes in history.values():
        assert changes[0] is Change.OPENED
        assert changes.count(Change.OPENED) == 1
        assert changes.count(Change.RESOLVED) <= 1
        if Change.RESOLVED in changes:
            assert changes[-1] is Change.RESOLVED
    still_open = {i.id for i in book.open_incidents()}
    for incident_id, changes in history.items():
        assert (Change.RESOLVED in changes) == (incident_id not in still_open)


# -- the centre supervises itself ------------------------------------------------------------


def test_a_bank_port_that_stops_answering_or_goes_quiet_is_a_trouble():
    from receiver.supervision.ports import PortWatch

    watch, book = PortWatch(silent_after=5), Incidents()
    out = []
    for port in ("bank0", "bank1", "bank2"):
        out += [book.handle_port(ev) for ev in watch.state(port, True, T0)]
    out = []
    for ev in watch.state("bank2", False, T0 + 1, "no answer to AT"):
        out += book.handle_port(ev)
    assert [(ev.kind, ev.severity, ev.change) for ev in out] == [
        ("port_trouble", Severity.MAJOR, Change.OPENED)
    ]
    assert watch.state("bank2", False, T0 + 2) == []  # still down: nothing new
    for ev in watch.state("bank2", True, T0 + 60):
        out += book.handle_port(ev)
    assert out[-1].change is Change.RESOLVED
    out = []
    for k in range(10):  # bank0 answers every call: bank1 and bank2 never do
        for ev in watch.answered("bank0", T0 + 100 + k):
            out += book.handle_port(ev)
    assert sorted(ev.summary.split(":")[0] for ev in out) == ["bank port bank1", "bank port bank2"]
    assert "answered nothing while the others answered 5 calls" in out[0].summary
    for ev in watch.answered("bank1", T0 + 200):
        out += book.handle_port(ev)
    assert out[-1].change is Change.RESOLVED and out[-1].attributes["port"] == "bank1"


def test_the_centres_own_test_device_puts_the_inbound_path_in_doubt_first():
    engine = Engine()
    book = Incidents(GroupingConfig(threshold=0), probe="probe")
    engine.add("probe", interval=300, grace=60, enrolled=T0)
    for name in ("a", "b"):
        engine.add(name, interval=600, grace=60, enrolled=T0)
    out = drive(engine, book, T0 + 700)
    assert [(ev.kind, ev.change) for ev in out] == [
        ("inbound_path", Change.OPENED),  # the probe at +360, before the devices at +660
        ("inbound_path", Change.UPDATED),  # they wait inside it, not paged one by one
    ]
    assert "inbound path is in doubt" in out[0].summary
    out = feed(book, engine.message("a", T0 + 800))  # a gets through: ticked off
    out += feed(book, engine.message("probe", T0 + 900))
    assert [(ev.kind, ev.change, ev.device) for ev in out if ev.change is not Change.UPDATED] == [
        ("inbound_path", Change.RESOLVED, "probe"),
        ("device_down", Change.OPENED, "b"),  # the path works: b is down on its own
    ]


def test_a_callback_tells_dial_out_broken_from_down():
    engine, book = Engine(), Incidents()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    (_opened,) = drive(engine, book, T0 + 200)
    assert book.handle_callback("a", e.State.DOWN, "no answer", False, T0 + 210) == []
    (incident,) = book.open_incidents()
    assert incident.timeline[-1].text == "callback: no answer, confirms it is down"
    out = book.handle_callback("a", e.State.DOWN, "answered", True, T0 + 220)
    assert [(ev.kind, ev.change) for ev in out] == [
        ("device_down", Change.RESOLVED),
        ("dial_out_broken", Change.OPENED),
    ]
    out = feed(book, engine.message("a", T0 + 300))  # it calls out by itself again
    assert [(ev.kind, ev.change) for ev in out] == [("dial_out_broken", Change.RESOLVED)]


def test_a_late_device_found_dial_out_broken_is_not_paged_as_down():
    engine, book = Engine(), Incidents()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    assert drive(engine, book, T0 + 101) == []  # late
    (opened,) = book.handle_callback("a", e.State.LATE, "answered", True, T0 + 102)
    assert opened.kind == "dial_out_broken"
    assert drive(engine, book, T0 + 1000) == []  # the grace ends: no device_down


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["msg", "msg-b", "skewed", "wait", "ack", "resolve", "restart", "test"]
            ),
            st.sampled_from(["a", "b"]),
            st.floats(0, 400),
        ),
        max_size=40,
    )
)
def test_restarts_through_the_stored_rows_neither_lose_nor_repeat_an_event(steps):
    """The same sequence with and without restarts (engine records and incidents
    through the store's row types) tells the notifier exactly the same."""
    from receiver.supervision import persist

    def fresh():
        engine = Engine(EngineConfig(skew_bound=30))
        for name in "ab":
            engine.add(name, interval=100, grace=30, enrolled=T0)
        return engine, Incidents(GroupingConfig(threshold=0))

    def restart(engine, book):
        # the store gives the next id: one more than the highest ever (resolved too)
        again, book2 = Engine(engine.config), Incidents(book.config, next_id=book.next_id)
        for name in engine.names():
            update = persist.update_from_record(engine.record(name))
            row = persist.SupervisionRow(
                name,
                1,
                100.0,
                30.0,
                T0,
                None,
                None,
                update.state,
                update.since,
                update.last,
                update.line_tests_only,
                update.schedule,
                update.extra,
                None,
                None,
                None,
            )
            persist.load_rows(again, [row], schedule_lead=3600)
        rows = [persist.incident_to_row(i) for i in book.open_incidents()]
        book2.load(persist.incident_from_row(row) for row in rows)
        return again, book2

    streams = []
    for with_restarts in (False, True):
        engine, book = fresh()
        now, out = T0, []
        for action, name, dt in steps:
            now += dt
            out += drive(engine, book, now)
            if action == "restart" and with_restarts:
                engine, book = restart(engine, book)
            elif action.startswith("msg") or action == "skewed":
                skew = 100 if action == "skewed" else 0
                path = "b" if action == "msg-b" else "a"
                out += feed(book, engine.message(name, now, path=path, device_time=now + skew))
            elif action == "test":
                out += feed(book, engine.start_test(name, now, dt + 1))
            elif action in ("ack", "resolve") and book.open_incidents():
                target = book.open_incidents()[0].id
                if action == "ack":
                    out += book.acknowledge(target, "op", now)
                else:
                    out += book.resolve(target, "op", now, "done")
        out += drive(engine, book, now + 10_000)
        streams.append([(ev.incident_id, ev.change, ev.kind, ev.at) for ev in out])
    assert streams[0] == streams[1]


def test_attributes_share_the_engines_index_and_keep_devices_it_does_not_number():
    engine = Engine()
    engine.add("a", interval=100, grace=10, enrolled=T0)
    book = Incidents(device_ids=engine.index)
    book.set_attributes("a", {"site": "lyon", "port": "bank1"})
    book.set_attributes("a", {"port": "bank2", "model": ""})
    engine.add("b", interval=100, grace=10, enrolled=T0)  # numbered after the book was made
    book.set_attributes("b", {"site": "lyon"})
    book.set_attributes("stranger", {"site": "paris"})
    assert book.attributes("a") == {"site": "lyon", "port": "bank2"}
    assert book.attributes("b") == {"site": "lyon"}
    assert book.attributes("stranger") == {"site": "paris"}
    assert book.attributes("nobody") == {}
    book.forget_attributes("a", ["site", "customer"])  # a numbered device, and one not
    book.forget_attributes("stranger", ["site"])
    assert book.attributes("a") == {"port": "bank2"}
    assert book.attributes("stranger") == {}
