"""The daemon over simulated collectors in scaled time (1 agent second = 1 ms)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from callhome.client.agent import sdnotify
from callhome.client.agent.collectors.simulated import SimulatedCollector, parse_line
from callhome.client.agent.config import load_agent_config
from callhome.client.agent.daemon import Agent
from callhome.client.agent.modemlock import ModemBusy, modem_lock
from callhome.client.agent.statefile import read_state
from callhome.client.config import load_client_config
from callhome.client.spool import Spool

from .agentkit import FakeCentre, write_config

SCALE = 0.001


def make_agent(tmp_path: Path, agent: str, centre: FakeCentre) -> Agent:
    path = write_config(tmp_path, f"[agent]\ntime_scale = {SCALE}\n" + agent)
    client = load_client_config(path)
    return Agent(
        client,
        load_agent_config(path, client.spool),
        b"k" * 32,
        caller=centre,
        rng=random.Random(1),
    )


async def run_until(agent: Agent, done: Callable[[], bool], limit: float = 10.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    while not done() and not task.done() and loop.time() < give_up:
        await asyncio.sleep(0.005)
    stop.set()
    await task
    assert done(), "the agent did not get there in time"


MIRROR = """
0s md/md0 OK clean [UU]
30s md/md0 CRITICAL degraded [U_]
200s md/md0 OK clean [UU]
"""


async def test_a_degraded_mirror_calls_at_once_and_the_recovery_rides_with_the_next_call(
    tmp_path: Path,
) -> None:
    (tmp_path / "mirror.txt").write_text(MIRROR)
    centre = FakeCentre()
    agent = make_agent(
        tmp_path,
        'catch_up_delay = "10m"\ntest_interval = "1h"\ntest_spread = 0\n'
        '[[check]]\nkind = "simulated"\nname = "md"\nscript = "mirror.txt"\ninterval = "10s"\n',
        centre,
    )
    agent.policy.last_test = agent.clock.now()  # tested just now: nothing else calls
    agent.policy.next_test = agent.clock.now() + 400

    def recovered_and_carried() -> bool:
        return any(e["state"] == "OK" for e in centre.events())

    await run_until(agent, recovered_and_carried)
    first = centre.calls[0]
    [content] = [c for kind, c in first if kind == "report"]
    assert {kind for kind, _ in first} == {"report", "inventory"}  # the first rides along
    assert (content["check"], content["previous"], content["state"]) == ("md/md0", "OK", "CRITICAL")
    assert content["v"] == 1 and content["severity"] == "critical"
    # the recovery did not call by itself: the line test call carried it
    last = centre.calls[-1]
    assert {kind for kind, _ in last} == {"report", "line-test"}
    [test] = [c for kind, c in last if kind == "line-test"]
    assert test["health"] == "2 checks: 2 OK"  # md/md0 and the collector itself
    state = read_state(agent.config.state)
    assert state is not None and state["checks"][0]["state"] == "OK"


async def test_a_hung_collector_is_reported_unknown_when_it_lasts(tmp_path: Path) -> None:
    (tmp_path / "hang.txt").write_text("0s ipmi OK fine\n20s hang on\n")
    centre = FakeCentre()
    agent = make_agent(
        tmp_path,
        '[[check]]\nkind = "simulated"\nname = "ipmi"\nscript = "hang.txt"\n'
        'interval = "10s"\ndeadline = "5s"\nunknown_after = "60s"\n',
        centre,
    )
    await run_until(agent, lambda: any(e["state"] == "UNKNOWN" for e in centre.events()))
    await run_until(
        agent, lambda: len([e for e in centre.events() if e["state"] == "UNKNOWN"]) == 2
    )
    unknown = {e["check"]: e for e in centre.events() if e["state"] == "UNKNOWN"}
    # the collector itself, and the check it used to report: neither keeps a stale OK
    assert set(unknown) == {"collector/ipmi", "ipmi"}
    assert "within" in unknown["collector/ipmi"]["text"]


async def test_a_failed_call_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("0s md/md0 CRITICAL degraded\n")
    centre = FakeCentre(failures=2)
    agent = make_agent(
        tmp_path,
        'retry_delay = "30s"\n[[check]]\nkind = "simulated"\nscript = "m.txt"\ninterval = "10s"\n',
        centre,
    )

    await run_until(agent, lambda: len(centre.calls) >= 3)
    assert all(any(c.get("state") == "CRITICAL" for _, c in call) for call in centre.calls[:3])
    spool = Spool(tmp_path / "spool.db")
    assert spool.queued() == []  # the event left the spool only once acknowledged
    spool.close()


async def test_a_restart_does_not_report_a_known_state_again(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("0s md/md0 CRITICAL degraded\n")
    centre = FakeCentre()
    check = '[[check]]\nkind = "simulated"\nscript = "m.txt"\ninterval = "10s"\n'
    agent = make_agent(tmp_path, check, centre)
    await run_until(agent, lambda: bool(centre.events()))
    again = make_agent(tmp_path, check, FakeCentre())
    assert again.engine.checks["md/md0"].reported.name == "CRITICAL"
    assert again.policy.last_test is not None or again.policy.next_test > 0


async def test_the_modem_lock_makes_a_person_wait_then_names_the_holder(tmp_path: Path) -> None:
    spool = tmp_path / "spool.db"
    async with modem_lock(spool, "callhome agent", wait=None):
        with pytest.raises(ModemBusy, match=r"callhome agent \(pid \d+\) holds the modem"):
            async with modem_lock(spool, "callhome", wait=0.05, poll=0.01):
                pass
    async with modem_lock(spool, "callhome", wait=0.05):
        pass


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": address})
        assert server.recv(100) == b"READY=1"
    assert not sdnotify.notify("READY=1", {})
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert sdnotify.watchdog_interval({}) is None


async def test_a_crash_between_the_spool_and_the_state_file_reports_a_change_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check states the centre was told are committed with the events: a crash just
    after that commit (before the state file is written) does not make a restarted
    agent report the change a second time."""
    from callhome.client.agent import daemon

    (tmp_path / "m.txt").write_text("0s md/md0 OK clean\n")
    check = '[[check]]\nkind = "simulated"\nscript = "m.txt"\ninterval = "10s"\n'
    agent = make_agent(tmp_path, check, FakeCentre())
    assert await agent.collect_once(agent.config.checks[0]) == []
    agent.save()  # the state file knows md0 is OK
    collector = agent.config.checks[0].collector
    assert isinstance(collector, SimulatedCollector)
    step = parse_line("md/md0 CRITICAL degraded", timed=False)
    assert step is not None
    collector.apply(step)
    monkeypatch.setattr(daemon, "write_state", lambda *a: None)  # killed before it writes
    [event] = await agent.collect_once(agent.config.checks[0])
    assert event.state.name == "CRITICAL"
    agent.spool.close()
    monkeypatch.undo()
    assert {c["state"] for c in read_state(agent.config.state)["checks"]} == {"OK"}  # type: ignore[index]
    (tmp_path / "m.txt").write_text("0s md/md0 CRITICAL degraded\n")  # still degraded
    restarted = make_agent(tmp_path, check, FakeCentre())
    assert await restarted.collect_once(restarted.config.checks[0]) == []
    assert [m.summary for m in restarted.spool.queued()] == ["md/md0 OK->CRITICAL"]  # once
    restarted.spool.close()


async def test_a_check_flapping_when_the_agent_stops_is_still_flapping_after_a_restart(
    tmp_path: Path,
) -> None:
    """The flap window is kept in the spool with the states: a restarted agent neither
    says "stable again" on the strength of its first few results nor "flapping" a
    second time, and says "stable" once, when the check has settled."""
    (tmp_path / "m.txt").write_text("0s fan1 OK 2000 rpm\n")
    check = '[[check]]\nkind = "simulated"\nscript = "m.txt"\ninterval = "10s"\n'

    async def results(agent: Agent, states: list[str]) -> list[str]:
        collector = agent.config.checks[0].collector
        assert isinstance(collector, SimulatedCollector)
        events = []
        for state in states:
            step = parse_line(f"fan1 {state} fan", timed=False)
            assert step is not None
            collector.apply(step)
            events += await agent.collect_once(agent.config.checks[0])
        return [e.type.value for e in events]

    agent = make_agent(tmp_path, check, FakeCentre())
    assert (await results(agent, ["OK", "CRITICAL"] * 6))[-1] == "flapping"
    assert await results(agent, ["OK", "CRITICAL"]) == []  # the window moves, no event
    window = list(agent.engine.checks["fan1"].history)
    agent.spool.close()

    restarted = make_agent(tmp_path, check, FakeCentre())
    status = restarted.engine.checks["fan1"]
    assert status.flapping and list(status.history) == window
    assert await results(restarted, ["OK", "CRITICAL"] * 4) == []  # no second "flapping"
    restarted.spool.close()

    again = make_agent(tmp_path, check, FakeCentre())
    assert again.engine.checks["fan1"].flapping
    settled = await results(again, ["OK"] * 21)
    assert settled == ["stable"]  # once, and only when settled
    summaries = [m.summary for m in again.spool.queued()]
    assert [s for s in summaries if "flapping" in s or "stable" in s] == [
        "fan1 flapping (CRITICAL)",
        "fan1 stable (OK)",
    ]
    again.spool.close()


async def test_stop_ends_the_agent_even_when_a_call_swallows_its_cancellation(
    tmp_path: Path,
) -> None:
    """The demo once hung at its end: one agent went on calling every few seconds after
    the stop, its call loop's cancellation lost (Python 3.11's `wait_for` can turn one
    into a timeout; a call's clean-up can swallow one). The loops also look at a flag."""
    centre = FakeCentre()
    agent = make_agent(tmp_path, 'test_interval = "1h"\ntest_spread = 0\n', centre)
    calls = 0

    async def stubborn_call() -> None:
        nonlocal calls
        calls += 1
        agent.policy.last_test = agent.clock.now()  # the next one is due at once again
        agent.policy.next_test = agent.clock.now()
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            pass  # the cancellation lost somewhere in the call

    agent.call_once = stubborn_call  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    while calls < 2:
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 2.0)
    stopped_at = calls
    await asyncio.sleep(0.1)
    assert calls == stopped_at
