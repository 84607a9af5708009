"""Supervision in the receiver: the store, restarts, the outbox, operators' commands."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.incident_events import Change, IncidentEvent
from receiver.store import AsyncStore, SQLiteStore
from receiver.supervision.engine import EngineConfig
from receiver.supervision.notify import ListNotifier
from receiver.supervision.service import Stored, Supervisor, device_time
from receiver.supervision.settings import SupervisionSettings


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def centre(tmp_path):
    folder = tmp_path / "centre"
    result = CliRunner().invoke(main, ["init", str(folder), "--port", "/dev/ttyS0"])
    assert result.exit_code == 0, result.output
    config = folder / "centre.toml"
    for name in ("plant-a", "plant-b"):
        enrolled = cli(
            config, "enroll", name, "--pubkey", key(), "--test-interval", "1h", "--grace", "10m"
        )
        assert enrolled.exit_code == 0, enrolled.output
    return config


def key() -> str:
    import base64

    return base64.b64encode(os.urandom(32)).decode()


def cli(config, *args):
    return CliRunner().invoke(main, ["-c", str(config), *args])


def supervisor(config, clock, notifier=None):
    store = AsyncStore(SQLiteStore(config.parent / "centre.db"))
    return Supervisor(store, notifier or ListNotifier(), SupervisionSettings(), clock=clock)


def device(sup: Supervisor, name: str):
    return next(d for d in sup.store.store.devices() if d.name == name)


async def message(sup, name, clock, **fields):
    sup.message_stored(
        Stored(
            device(sup, name),
            clock(),
            fields.get("port", "bank0"),
            "0146001234",
            fields.get("kind", "line-test"),
            fields.get("device_time"),
        )
    )
    return await sup.turn(clock())


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_restart_across_a_deadline_alerts_once(centre):
    clock = Clock()

    async def first():
        sup = supervisor(centre, clock)
        await sup.start()
        await message(sup, "plant-a", clock)
        await message(sup, "plant-b", clock)
        sup.store.close()

    async def later(expected_changes):
        sup = supervisor(centre, clock)
        await sup.start()
        delivered = await sup.turn(clock())
        sup.store.close()
        assert [(e.device, e.change) for e in delivered] == expected_changes
        return sup

    run(first())
    clock.now += 3600 + 600 - 1  # stopped inside the grace: nothing yet
    run(later([]))
    clock.now += 2  # across deadline and grace while stopped: at start, once
    run(later([("plant-a", Change.OPENED), ("plant-b", Change.OPENED)]))
    run(later([]))
    store = SQLiteStore(centre.parent / "centre.db")
    (row,) = [r for r in store.supervision_rows() if r.device == "plant-a"]
    assert row.state == 3 and row.last_port == "bank0" and row.last_caller == "0146001234"
    store.close()


def test_an_event_the_notifier_could_not_take_waits_in_the_outbox(centre):
    clock = Clock()

    class Flaky(ListNotifier):
        broken = True

        async def notify(self, event: IncidentEvent) -> None:
            if self.broken:
                raise ConnectionError("routing is down")
            await super().notify(event)

    notifier = Flaky()

    async def go():
        sup = supervisor(centre, clock, notifier)
        await sup.start()
        await message(sup, "plant-a", clock, device_time=clock() + 3600)  # skewed
        assert notifier.events == []
        notifier.broken = False
        sup.store.close()
        sup = supervisor(centre, clock, notifier)  # even across a restart
        await sup.start()
        sup.store.close()

    run(go())
    assert [(e.kind, e.change) for e in notifier.events] == [("clock_skew", Change.OPENED)]


def test_operators_commands_reach_the_running_engine(centre):
    clock = Clock()
    notifier = ListNotifier()
    sup = supervisor(centre, clock, notifier)

    async def start():
        await sup.start()
        await message(sup, "plant-a", clock)
        await message(sup, "plant-b", clock)
        clock.now += 4300
        await sup.turn(clock())

    run(start())
    opened = {e.device: e.incident_id for e in notifier.events}
    listing = json.loads(cli(centre, "incidents", "--json").output)
    assert {i["device"] for i in listing} == {"plant-a", "plant-b"}
    acked = cli(centre, "incidents", "ack", str(opened["plant-a"]), "--by", "alice")
    assert acked.exit_code == 0 and "acknowledged" in acked.output
    resolved = cli(centre, "incidents", "resolve", str(opened["plant-b"]), "--note", "swapped")
    assert resolved.exit_code == 0
    again = cli(centre, "incidents", "resolve", str(opened["plant-b"]), "--note", "again")
    assert again.exit_code == 2 and "already resolved" in again.output
    assert cli(centre, "incidents", "ack", "999").exit_code == 2
    tested = cli(centre, "on-test", "plant-b", "--for", "4h", "--json")
    assert tested.exit_code == 0, tested.output
    assert json.loads(tested.output)["supervision"] == "on test"

    async def after():
        delivered = await sup.turn(clock())
        # plant-b calls again: its incident was resolved by hand, nothing more to say
        delivered += await message(sup, "plant-b", clock)
        delivered += await message(sup, "plant-a", clock)
        return delivered

    delivered = run(after())
    assert [(e.device, e.change, e.by) for e in delivered] == [
        ("plant-a", Change.ACKNOWLEDGED, "alice"),
        ("plant-b", Change.RESOLVED, os.environ.get("USER") or "operator"),
        ("plant-a", Change.RESOLVED, None),
    ]
    assert sup.engine.status("plant-b").state.label == "on test"
    sup.store.close()
    shown = cli(centre, "incidents", "show", str(opened["plant-a"]), "--json")
    timeline = [e["what"] for e in json.loads(shown.output)["timeline"]]
    # (the test's clock runs ahead of the command line's: compare as sets)
    assert sorted(timeline) == ["acknowledged", "opened", "restored"]
    text = cli(centre, "incidents", "show", str(opened["plant-a"])).output
    assert "acknowledged by alice" in text
    assert cli(centre, "incidents").output.count("\n") == 1  # header only: none open
    devices = {d["name"]: d for d in json.loads(cli(centre, "devices", "--json").output)}
    assert devices["plant-a"]["supervision"] == "restored"
    assert devices["plant-a"]["paths"]["modem"]["failed"] is False
    assert devices["plant-a"]["next_deadline"] is not None
    assert devices["plant-b"]["on_test_until"] is not None
    assert "on test" in cli(centre, "devices").output


def test_on_test_usage_errors(centre):
    assert cli(centre, "on-test", "plant-a").exit_code == 2
    assert cli(centre, "on-test", "plant-a", "--for", "soon").exit_code == 2
    missing = cli(centre, "on-test", "nobody", "--for", "1h")
    assert missing.exit_code == 2 and "no device" in missing.output


def test_supervision_config_errors_name_file_and_key(centre):
    text = centre.read_text() + '\n[supervision]\nskew_bound = "soon"\n'
    centre.write_text(text)
    result = cli(centre, "devices")
    assert result.exit_code == 2 and "supervision.skew_bound" in result.output
    assert str(centre) in result.output
    centre.write_text(text.replace('"soon"', '"1m"\ngroup_by = ["colour"]'))
    result = cli(centre, "devices")
    assert result.exit_code == 2 and "supervision.group_by[0]" in result.output


def test_device_time_comes_from_line_tests_only():
    import cbor2

    content = cbor2.dumps({"time": 1_800_000_000})
    assert device_time("line-test", content) == 1_800_000_000
    assert device_time("report", content) is None
    assert device_time("line-test", b"\xff") is None


def test_devices_enrolled_or_revoked_while_running_are_taken_in(centre):
    clock = Clock()
    notifier = ListNotifier()
    sup = supervisor(centre, clock, notifier)

    async def before():
        await sup.start()
        clock.now += 4300  # both silent since enrolment: down
        await sup.turn(clock())

    run(before())
    assert cli(centre, "enroll", "plant-c", "--pubkey", key()).exit_code == 0
    assert cli(centre, "revoke", "plant-a").exit_code == 0

    async def after():
        return await sup.turn(clock())

    delivered = run(after())
    assert [(e.device, e.change) for e in delivered] == [("plant-a", Change.RESOLVED)]
    assert sup.engine.status("plant-c").state.label == "new"
    assert sup.engine.status("plant-a").state.label == "retired"
    sup.store.close()


def test_a_devices_customer_reaches_its_incidents_and_routing(centre):
    from pathlib import Path

    from receiver.sun.escalation import matches
    from receiver.sun.model import load_routing

    acme = cli(
        centre,
        "enroll",
        "plant-c",
        "--pubkey",
        key(),
        "--test-interval",
        "1h",
        "--grace",
        "10m",
        "--customer",
        "acme",
    )
    assert acme.exit_code == 0, acme.output
    assert cli(centre, "assign", "plant-a", "--customer", "initech").exit_code == 0
    clock = Clock()
    notifier = ListNotifier()
    sup = supervisor(centre, clock, notifier)

    async def start():
        await sup.start()
        for name in ("plant-a", "plant-b", "plant-c"):
            await message(sup, name, clock)

    run(start())
    # while it runs: the command line's changes are taken in (announce), as enrol's is,
    # a customer cleared included
    assert cli(centre, "assign", "plant-b", "--customer", "globex").exit_code == 0
    assert cli(centre, "assign", "plant-a", "--customer", "").exit_code == 0

    async def silent():
        clock.now += 3600 + 600 + 1
        return await sup.turn(clock())

    delivered = run(silent())
    sup.store.close()
    customers = {e.device: e.attributes.get("customer") for e in delivered}
    assert customers == {"plant-a": None, "plant-b": "globex", "plant-c": "acme"}
    docs = Path(__file__).resolve().parents[3] / "docs"
    routing = load_routing(docs / "follow-the-sun.toml")  # acme's route: "standard"
    acme_route = next(r for r in routing.routes if dict(r.match).get("customer"))
    routed = {e.device: matches(acme_route, e) for e in delivered}
    assert routed == {"plant-a": False, "plant-b": False, "plant-c": True}


def test_a_port_trouble_open_at_restart_resolves_when_the_port_comes_back(centre):
    clock = Clock()
    notifier = ListNotifier()

    async def go():
        sup = supervisor(centre, clock, notifier)
        await sup.start()
        sup.port_state("bank0", True)
        sup.port_state("bank1", True)
        sup.port_state("bank1", False, "no answer to AT")
        await sup.turn(clock())
        sup.store.close()
        sup = supervisor(centre, clock, notifier)
        await sup.start()
        sup.port_state("bank1", True)
        await sup.turn(clock())
        sup.store.close()

    run(go())
    assert [(e.kind, e.change, e.attributes["port"]) for e in notifier.events] == [
        ("port_trouble", Change.OPENED, "bank1"),
        ("port_trouble", Change.RESOLVED, "bank1"),
    ]
    assert "no answer to AT" in notifier.events[0].summary


def test_probe_and_port_settings_are_read(centre):
    centre.write_text(
        centre.read_text()
        + '\n[supervision]\nprobe_device = "centre-probe"\nport_silent_after = 50\n'
        + '[supervision.paths]\nbank1 = "line-b"\n'
    )
    from receiver.config import load_centre_config

    settings = load_centre_config(centre).supervision
    assert (settings.probe, settings.port_silent_after) == ("centre-probe", 50)
    assert settings.path_of("bank1") == "line-b" and settings.path_of("bank0") == "modem"


def test_the_running_task_wakes_for_messages_and_deadlines(centre):
    clock = Clock()
    notifier = ListNotifier()
    store = AsyncStore(SQLiteStore(centre.parent / "centre.db"))
    sup = Supervisor(store, notifier, SupervisionSettings(command_poll=0.05), clock=clock)

    async def go():
        stop = asyncio.Event()
        task = asyncio.ensure_future(sup.run(stop))
        while not sup.started:
            await asyncio.sleep(0.01)
        sup.message_stored(
            Stored(device(sup, "plant-a"), clock(), "bank0", None, "line-test", None)
        )
        for _ in range(200):
            if sup.engine.status("plant-a").state.label == "up":
                break
            await asyncio.sleep(0.01)
        assert sup.engine.status("plant-a").state.label == "up"
        clock.now += 3600 + 600  # the virtual clock jumps past deadline and grace
        for _ in range(200):
            if len(notifier.events) == 2:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    run(go())
    assert sorted(e.device for e in notifier.events) == ["plant-a", "plant-b"]
    store.close()


def test_supervise_sets_a_schedule_and_line_tests_only(centre):
    result = cli(
        centre,
        "supervise",
        "plant-a",
        "--schedule",
        "daily 03:00 Europe/Paris",
        "--line-tests-only",
        "--json",
    )
    assert result.exit_code == 0, result.output
    item = json.loads(result.output)
    assert item["schedule"] == "daily 03:00 Europe/Paris" and item["line_tests_only"] is True
    assert item["next_deadline"].endswith(("01:00:00", "02:00:00"))  # 03:00 Paris in UTC
    clock = Clock()
    sup = supervisor(centre, clock)
    run(sup.start())
    status = sup.engine.status("plant-a")
    assert status.schedule == "daily 03:00 Europe/Paris" and status.line_tests_only
    assert sup.expected_interval("plant-a") == 86400
    sup.store.close()
    back = cli(centre, "supervise", "plant-a", "--interval-only", "--any-message")
    assert back.exit_code == 0 and "expected every 1h" in back.output
    bad = cli(centre, "supervise", "plant-a", "--schedule", "daily 03:00 Mars/Olympus")
    assert bad.exit_code == 2 and "unknown time zone" in bad.output


def test_call_needs_a_number_and_a_policy(centre):
    refused = cli(centre, "call", "plant-a")
    assert refused.exit_code == 2 and "supervise plant-a --number" in refused.output
    assert cli(centre, "supervise", "plant-a", "--number", "5550001").exit_code == 0
    refused = cli(centre, "call", "plant-a")
    assert refused.exit_code == 2 and "policy is never" in refused.output
    configured = cli(centre, "supervise", "plant-a", "--callback", "command", "--json")
    assert json.loads(configured.output)["number"] == "5550001"
    asked = cli(centre, "call", "plant-a")
    assert asked.exit_code == 0 and "callback on 5550001 requested" in asked.output
    store = SQLiteStore(centre.parent / "centre.db")
    assert json.loads(store.supervision_commands(0)[-1][1]) == {"callback": "plant-a"}
    store.close()


def test_a_storm_is_one_incident_and_another_device_is_served_in_the_same_turn(centre):
    clock = Clock()
    notifier = ListNotifier()
    store = AsyncStore(SQLiteStore(centre.parent / "centre.db"))
    settings = SupervisionSettings(engine=EngineConfig(storm_threshold=50, storm_window=60))
    sup = Supervisor(store, notifier, settings, clock=clock)

    async def go():
        await sup.start()
        noisy, quiet = device(sup, "plant-a"), device(sup, "plant-b")
        for k in range(5000):  # queued without a wait: the bank never blocks on it
            sup.message_stored(Stored(noisy, clock() + k * 0.001, "bank0", None, "report", None))
        sup.message_stored(Stored(quiet, clock() + 5, "bank1", None, "line-test", None))
        await sup.turn(clock() + 5)

    run(go())
    assert [(e.kind, e.device) for e in notifier.events] == [("storm", "plant-a")]
    assert sup.engine.status("plant-b").state.label == "up"
    store.close()


def test_supervision_can_be_switched_off(centre):
    from receiver.cli_supervision import supervisor_for
    from receiver.config import load_centre_config

    centre.write_text(centre.read_text() + "\n[supervision]\nenabled = false\n")
    config = load_centre_config(centre)
    assert supervisor_for(config, None) is None  # type: ignore[arg-type]


def test_incident_ids_are_never_reused_across_restarts(centre):
    clock = Clock()
    notifier = ListNotifier()

    async def go():
        sup = supervisor(centre, clock, notifier)
        await sup.start()
        await message(sup, "plant-a", clock, device_time=clock() + 3600)  # skew: opens
        await message(sup, "plant-a", clock, device_time=clock())  # and resolves
        sup.store.close()
        sup = supervisor(centre, clock, notifier)
        await sup.start()
        await message(sup, "plant-b", clock, device_time=clock() + 3600)
        sup.store.close()

    run(go())
    assert [(e.incident_id, e.device, e.change) for e in notifier.events] == [
        (1, "plant-a", Change.OPENED),
        (1, "plant-a", Change.RESOLVED),
        (2, "plant-b", Change.OPENED),
    ]
    store = SQLiteStore(centre.parent / "centre.db")
    assert [(r.id, r.status) for r in store.incident_rows()] == [(2, "open"), (1, "resolved")]
    store.close()


def test_incident_events_reach_follow_the_sun_routing_when_the_centre_has_it(centre):
    import shutil
    from pathlib import Path

    from receiver.cli_supervision import Routed, routing_for, supervisor_for
    from receiver.config import load_centre_config

    config = load_centre_config(centre)
    assert routing_for(config) is None  # none yet: only logged
    docs = Path(__file__).resolve().parents[3] / "docs"
    shutil.copy(docs / "follow-the-sun.toml", centre.parent / "oncall.toml")
    routing = routing_for(config)
    assert routing is not None
    clock = Clock()

    async def go():
        store = AsyncStore(SQLiteStore(centre.parent / "centre.db"))
        routed = Routed(routing, store)
        sup = supervisor_for(config, store, routed.router)
        sup.clock = clock
        async with routed:
            await sup.start()
            clock.now += 3600 + 600  # both enrolled devices silent: down
            delivered = await sup.turn(clock())
        escalations = await store.sun_escalations()
        store.close()
        return delivered, escalations

    delivered, escalations = run(go())
    assert [e.kind for e in delivered] == ["device_down", "device_down"]
    assert {incident for incident, _, _ in escalations} == {e.incident_id for e in delivered}


def test_the_ip_listener_is_a_path_of_its_own_and_its_peer_no_exchange():
    from receiver.supervision.persist import exchange_of

    settings = SupervisionSettings()
    assert (settings.path_of("ip"), settings.path_of("bank3")) == ("ip", "modem")
    assert exchange_of("+33 (1) 46-00-12-34", 6) == "331460"
    assert exchange_of("127.0.0.1:40022", 6) == exchange_of("P", 6) == ""


def test_the_console_reads_and_acts_on_supervision(centre):
    from receiver.supervision.console import StoreSupervision
    from receiver.web.sources import IncidentNotFound
    from receiver.web.storage import ConsoleStore

    clock = Clock()
    sup = supervisor(centre, clock)

    async def go():
        await sup.start()
        await message(sup, "plant-a", clock)
        clock.now += 4300
        await sup.turn(clock())  # both down
        sqlite = SQLiteStore(centre.parent / "centre.db")
        console = StoreSupervision(ConsoleStore(sqlite), sqlite, SupervisionSettings())
        found, total = await console.incidents()
        assert total == 2 and {i.device for i in found} == {"plant-a", "plant-b"}
        assert (await console.incidents(device="plant-a"))[1] == 1
        assert await console.open_by_kind() == {"device_down": 2}
        first = found[-1]
        acked = await console.acknowledge(first.id, "alice", clock())
        assert (acked.state, acked.acknowledged_by) == ("acknowledged", "alice")
        assert [e.what for e in acked.timeline] == ["opened", "acknowledged"]
        resolved = await console.resolve(first.id, "bob", "line fixed", clock())
        assert resolved.state == "resolved" and resolved.timeline[-1].text == "line fixed"
        again = await console.resolve(first.id, "bob", "twice", clock())
        assert again.state == "resolved" and len(again.timeline) == len(resolved.timeline)
        try:
            await console.acknowledge(999, "alice", clock())
        except IncidentNotFound:
            pass
        else:
            raise AssertionError("no incident 999")
        devices = sqlite.devices()
        await console.put_on_test("plant-b", "alice", clock() + 3600, clock())
        states = await console.device_states(devices, clock())
        assert states["plant-a"].state == "down" and states["plant-b"].state == "on test"
        delivered = await sup.turn(clock())  # the running engine takes it all in
        assert [e.change for e in delivered] == [Change.ACKNOWLEDGED, Change.RESOLVED]
        assert sup.engine.status("plant-b").state.label == "on test"
        sqlite.close()
        sup.store.close()

    run(go())


def test_a_burst_of_stored_messages_is_taken_in_by_a_few_turns(centre):
    """A turn costs its trips to the store however much it takes in: under a burst of
    calls, turns start `turn_gap` apart, each taking in what came meanwhile, and every
    message is still taken in."""
    clock = Clock()
    store = AsyncStore(SQLiteStore(centre.parent / "centre.db"))
    sup = Supervisor(store, ListNotifier(), SupervisionSettings(), clock=clock)
    sup.turn_gap = 0.05
    turns: list[float] = []
    real_turn = sup.turn

    async def counted_turn(now: float):
        turns.append(asyncio.get_running_loop().time())
        return await real_turn(now)

    sup.turn = counted_turn  # type: ignore[method-assign]
    plant_a = device(sup, "plant-a")

    async def go():
        stop = asyncio.Event()
        task = asyncio.ensure_future(sup.run(stop))
        while not sup.started:
            await asyncio.sleep(0.005)
        loop = asyncio.get_running_loop()
        began = loop.time()
        turns.clear()
        for index in range(150):  # a message every 2 ms for 0.3 s
            sup.message_stored(Stored(plant_a, clock() + index, "bank0", None, "report", None))
            await asyncio.sleep(0.002)
        while sup._queue:  # every message taken in by some turn
            await asyncio.sleep(0.005)
        elapsed = loop.time() - began
        running = len(turns)  # the last turn, at the stop, comes at once
        stop.set()
        await asyncio.wait_for(task, 5)
        del turns[running:]
        return elapsed

    elapsed = run(go())
    gaps = [b - a for a, b in itertools.pairwise(turns)]
    assert min(gaps) >= 0.05 * 0.9, gaps
    # woken by every message, it would run a turn for each one or two of them
    assert len(turns) <= elapsed / 0.05 + 3, (len(turns), elapsed)
    assert sup.engine.status("plant-a").state.label == "up"
    store.close()
