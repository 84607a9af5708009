"""The agent answers the centre: caller ID checked, then the ordinary client session
(the device is still the initiator) with what is queued and a line test."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

import cbor2

from benchmarks.linesim import Centre
from callhome.client.agent.answer import caller_allowed
from callhome.client.agent.config import load_agent_config
from callhome.client.agent.daemon import Agent
from callhome.client.agent.modemlock import modem_lock
from callhome.client.agent.statefile import write_state
from callhome.client.config import load_client_config
from callhome.client.dialer import call_centre
from callhome.client.spool import Spool
from callhome.keys import encode_key, public_of, write_private_key
from callhome.link import modem_timings, run_session, transfer_config
from callhome.wire.events import Event
from callhome.wire.messages import Kind
from callhome.wire.session import ServerSession
from modem_drivers.hayes import HayesModem, ModemError
from modem_drivers.hayes import modem as modem_module
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner

SCALE = 0.05


def test_caller_id_is_checked_against_the_centres_numbers() -> None:
    numbers = ["9,0123 555 0100", "5550200"]
    assert caller_allowed("01235550100", numbers, require=True)
    assert caller_allowed("5550100", numbers, require=True)  # no area code on the line
    assert caller_allowed("+44 5550200", numbers, require=True)
    assert not caller_allowed("5550666", numbers, require=True)
    assert not caller_allowed("00", numbers, require=False)  # too short to prove anything
    assert caller_allowed(None, numbers, require=False)  # no caller ID on this line
    assert not caller_allowed(None, numbers, require=True)


def _answering_agent(
    tmp_path: Path,
    centre_public: bytes,
    url: str,
    agent_lines: str,
    device_key: Any,
    *,
    calls: str = "",
    rng: random.Random | None = None,
) -> Agent:
    """An agent on the device modem at `url` whose own line test is not due, so that
    only what the test drives happens."""
    (tmp_path / "client.toml").write_text(
        f'[device]\nname = "dev"\nkey = "device.key"\nspool = "spool.db"\n'
        f'[centre]\npublic_key = "{encode_key(centre_public)}"\nnumbers = ["5550100"]\n'
        f'[modem]\nports = ["{url}"]\ntime_scale = {SCALE}\n{calls}'
        f"[agent]\n{agent_lines}inventory_interval = 0\n"
    )
    Spool(tmp_path / "spool.db", create=True).close()
    client = load_client_config(tmp_path / "client.toml")
    config = load_agent_config(tmp_path / "client.toml", client.spool)
    write_state(config.state, {"last_test": 2e9})  # no test of its own falls due
    if rng is None:
        return Agent(client, config, device_key)
    return Agent(client, config, device_key, rng=rng)


async def test_the_centre_calls_and_the_agent_answers_with_its_queue_and_a_line_test(
    tmp_path: Path,
) -> None:
    network = PhoneNetwork()
    network.add_modem("centre", "usr", number="5550100")
    network.add_modem("dev", "usr", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    urls = {
        name: (await runner.expose(name, "pty", path=str(tmp_path / f"{name}.pty"))).url
        for name in ("centre", "dev")
    }
    centre = Centre()
    device_key = write_private_key(tmp_path / "device.key")
    centre.enroll(public_of(device_key), "dev")
    agent = _answering_agent(
        tmp_path,
        centre.public,
        urls["dev"],
        "answer = true\nanswer_require_caller_id = true\n",
        device_key,
        rng=random.Random(1),
    )
    agent.spool.enqueue(Kind.REPORT, {"severity": "warning", "component": "psu2"}, "psu2")
    agent.policy.call_by = None  # the queued report waits: the centre will call
    published: list[dict[str, object]] = []
    publish = agent._publish_call

    def record(progress: dict[str, object]) -> None:
        published.append(progress)
        publish(progress)

    agent._publish_call = record  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.ensure_future(agent.run(stop))
    modem = await HayesModem.open(urls["centre"], timings=modem_timings(SCALE))
    try:
        await asyncio.sleep(1.0)  # the agent's modem is waiting for a call
        outcome = await modem.dial("5550001")
        assert outcome.connected and outcome.call is not None
        call = outcome.call
        loop = asyncio.get_running_loop()
        session = ServerSession(
            static_private=centre.static_private, config=transfer_config(call.record.rate, SCALE)
        )
        session.start(loop.time())

        async def handle(event: Event) -> None:
            centre.handle(session, event, loop.time())

        ended = await asyncio.wait_for(run_session(call, session, handle), 60)
        # the device hangs up once it has our answers: usually before our linger ends
        assert ended in ("closed", "carrier lost") and session.complete, ended
        if call.open:
            await call.hangup()
        # between answering windows a person's command gets the modem
        async with modem_lock(agent.client.spool, "callhome", wait=10):
            pass
    finally:
        await modem.close()
        stop.set()
        await task
        await runner.stop()
    kinds = sorted(
        cbor2.loads(content).get("component", "line test") for content in centre.stored.values()
    )
    assert kinds == ["line test", "psu2"]
    [test] = [cbor2.loads(c) for c in centre.stored.values() if "health" in cbor2.loads(c)]
    assert test["health"] == "no checks"
    spool = Spool(tmp_path / "spool.db")
    assert spool.queued() == []
    spool.close()
    assert agent.last_call is not None and agent.last_call["line_test"]
    # `agent status` showed the answered call as it went, and shows none after it
    phases = [p["phase"] for p in published]
    assert phases[:3] == ["answering", "training", "handshake"] and "sending" in phases
    assert {p["caller"] for p in published} == {"5550100"}
    assert agent.call is None


async def test_a_caller_that_is_not_the_centre_gets_nothing_and_makes_the_agent_call_nobody(
    tmp_path: Path,
) -> None:
    """Caller ID can be forged: the centre is whoever completes the Noise handshake with
    the centre's key. An impostor calling from the centre's number is answered, hears
    only HS1 (sealed to the centre's key), and leaves behind no message sent, no line
    test queued, no call-out scheduled."""
    network = PhoneNetwork()
    network.add_modem("impostor", "usr", number="5550100")  # the centre's number
    network.add_modem("dev", "usr", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    urls = {
        name: (await runner.expose(name, "pty", path=str(tmp_path / f"{name}.pty"))).url
        for name in ("impostor", "dev")
    }
    centre = Centre()
    device_key = write_private_key(tmp_path / "device.key")
    (tmp_path / "client.toml").write_text(
        f'[device]\nname = "dev"\nkey = "device.key"\nspool = "spool.db"\n'
        f'[centre]\npublic_key = "{encode_key(centre.public)}"\nnumbers = ["5550100"]\n'
        f'[modem]\nports = ["{urls["dev"]}"]\ntime_scale = {SCALE}\n'
        "[agent]\ninventory_interval = 0\n"  # answering is the default
    )
    Spool(tmp_path / "spool.db", create=True).close()
    client = load_client_config(tmp_path / "client.toml")
    config = load_agent_config(tmp_path / "client.toml", client.spool)
    assert config.answer
    write_state(config.state, {"last_test": 2e9})
    agent = Agent(client, config, device_key, rng=random.Random(1))
    report_seq = agent.spool.enqueue(Kind.REPORT, {"severity": "warning", "component": "x"}, "x")
    agent.policy.call_by = None
    answered: list[object] = []
    real_answer = agent.answer_once

    async def answer_once() -> object:
        report = await real_answer()
        if report is not None:
            answered.append(report)
        return report

    agent.answer_once = answer_once  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.ensure_future(agent.run(stop))
    modem = await HayesModem.open(urls["impostor"], timings=modem_timings(SCALE))
    try:
        await asyncio.sleep(1.0)
        outcome = await modem.dial("5550001")
        assert outcome.connected and outcome.call is not None
        call = outcome.call
        loop = asyncio.get_running_loop()
        # a centre of its own making: a key that is not the one the device knows
        impostor = ServerSession(
            static_private=Centre().static_private,
            config=transfer_config(call.record.rate, SCALE),
        )
        impostor.start(loop.time())

        async def ignore(event: Event) -> None:
            return None

        await asyncio.wait_for(run_session(call, impostor, ignore), 60)
        if call.open:
            await call.hangup()
        deadline = loop.time() + 60
        while not answered and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await modem.close()
        stop.set()
        await task
        await runner.stop()
    assert answered, "the agent never answered"
    spool = Spool(tmp_path / "spool.db")
    assert [m.seq for m in spool.queued(include_rejected=True)] == [report_seq]
    spool.close()
    assert agent.last_call is None  # not counted as a call
    assert agent.policy.retry_at is None and agent.policy.call_by is None


async def test_answering_windows_in_a_row_set_the_modem_up_once(tmp_path: Path) -> None:
    """Issue 18: a modem this process set up moments ago, with nothing gone wrong since,
    is checked with one `AT` at the next window; a modem that lost its settings, or a
    port that went away, is set up in full again."""
    modem_module._RECENT_SETUPS.clear()
    network = PhoneNetwork()
    network.add_modem("dev", "usr", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    url = (await runner.expose("dev", "pty", path=str(tmp_path / "dev.pty"))).url
    agent = _answering_agent(
        tmp_path,
        Centre().public,
        url,
        'answer_window = "1s"\n',
        write_private_key(tmp_path / "device.key"),
        calls="[calls]\nattempts = 1\n",
    )

    async def window() -> bytes:
        """What the modem received during one answering window (nobody calls)."""
        before = len(received)
        assert await agent.answer_once() is None
        return b"".join(received[before:])

    received: list[bytes] = []
    dte_input = runner.dte_input

    def record(exposure: Any, data: bytes) -> None:
        received.append(data)
        dte_input(exposure, data)

    runner.dte_input = record  # type: ignore[method-assign]
    try:
        first = await window()
        assert first.count(b"AT") > 5  # ATZ, ATI, every setting
        assert await window() == b"AT\r"  # the one check, no set-up
        # a call of its own between two windows (nobody answers it) sets nothing up
        before = len(received)
        agent.spool.enqueue(Kind.REPORT, {"severity": "warning", "component": "psu2"}, "psu2")
        report = await call_centre(agent.client, agent.spool, agent.private_key)
        assert report.result != "ok"
        dialled = b"".join(received[before:])
        # one AT, the dial (busy: no modem has that number), the hang-up: no ATZ, no ATI
        assert dialled.startswith(b"AT\rATD5550100\r") and b"ATZ" not in dialled
        assert await window() == b"AT\r"
        runner.apply_fault("reset", "dev")  # power cut: its settings are gone
        assert (await window()).count(b"AT") > 5
        assert await window() == b"AT\r"
        # the port goes away while the modem waits for a call: a lost port forgets it
        vanishing = asyncio.ensure_future(window())
        await asyncio.sleep(0.3)
        await runner.vanish("dev")
        with contextlib.suppress(ModemError, OSError):
            await vanishing
        await runner.reappear("dev")
        assert (await window()).count(b"AT") > 5
    finally:
        agent.spool.close()
        await runner.stop()
        modem_module._RECENT_SETUPS.clear()
