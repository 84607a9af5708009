"""The agent's status shows the call under way (issue 18): its phase, the seconds so far,
and the bytes sent of the total and the rate while sending."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callhome.client.agent.daemon import CallWatch
from callhome.client.agent.statefile import read_state, write_state
from callhome.client.cli import main
from callhome.client.dialer import CallReport

from ..agent.agentkit import FakeCentre
from ..agent.test_daemon import make_agent


def test_the_watch_publishes_every_change_of_phase_and_sending_at_most_every_few_seconds():
    now = [100.0]
    published: list[dict[str, Any]] = []
    watch = CallWatch(published.append, clock=lambda: now[0], every=2.0)
    watch("opening", port="/dev/ttyS0")
    watch("dialling", number="5550100", port="/dev/ttyS0", profile="usr")
    now[0] += 20
    watch("connected", connect="CONNECT 2400", rate=2400)
    watch("handshake")
    watch("transfer", messages=1)
    for sent in (512, 1024, 1536):
        now[0] += 1.0
        watch("sending", sent=sent, total=4096, rate=230.0)
    assert [(p["phase"], p.get("sent")) for p in published] == [
        ("opening", None),
        ("dialling", None),
        ("training", None),
        ("handshake", None),
        ("sending", None),  # `transfer`: the phase begins
        ("sending", 512),  # the first byte count
        ("sending", 1536),  # 2 s later; 1,024 was not written
    ]
    last = published[-1]
    assert last == {
        "phase": "sending",
        "seconds": 23.0,
        "number": "5550100",
        "line_rate": 2400,
        "sent": 1536,
        "total": 4096,
        "rate": 230.0,
    }
    watch("hanging up")
    assert published[-1]["phase"] == "hanging up" and "sent" not in published[-1]


class SlowCentre(FakeCentre):
    """Reports progress, then waits until the test has read the state file."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()
        self.go_on = asyncio.Event()

    def __call__(self, config: Any, spool: Any, key: bytes, progress: Any = None) -> Any:
        finish = super().__call__(config, spool, key)

        async def call() -> CallReport:
            progress("dialling", number="5550100", port="p", profile="usr")
            progress("connected", connect="CONNECT 2400", rate=2400)
            progress("transfer", messages=1)
            progress("sending", sent=1024, total=4096, rate=230.0)
            self.seen.set()
            await self.go_on.wait()
            return await finish

        return call()


async def test_the_agent_writes_the_call_under_way_to_its_state(tmp_path: Path):
    centre = SlowCentre()
    agent = make_agent(tmp_path, "", centre)
    calling = asyncio.ensure_future(agent.call_once())
    await asyncio.wait_for(centre.seen.wait(), 10)
    during = read_state(agent.config.state)
    assert during is not None
    assert during["call"]["phase"] == "sending"
    assert (during["call"]["sent"], during["call"]["total"]) == (1024, 4096)
    centre.go_on.set()
    report = await calling
    assert report.result == "ok"
    after = read_state(agent.config.state)
    assert after is not None and after["call"] is None


async def test_the_agent_writes_a_call_it_answers_to_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The centre calling back shows as the agent's own calls do (the answering itself
    over a virtual modem: tests/agent/test_answer.py)."""
    from callhome.client.agent import daemon

    seen, go_on = asyncio.Event(), asyncio.Event()

    async def answer_once(*args: Any, connected: Any, progress: Any, **kwargs: Any) -> CallReport:
        progress("answering", caller="5550100")
        connected()
        progress("connected", connect="CONNECT 2400", rate=2400)
        progress("handshake")
        progress("transfer", messages=2)
        progress("sending", sent=1024, total=4096, rate=230.0)
        seen.set()
        await go_on.wait()
        return CallReport(result="ok", handshake_seconds=1.0)

    monkeypatch.setattr(daemon, "answer_once", answer_once)
    agent = make_agent(tmp_path, "", FakeCentre())
    answering = asyncio.ensure_future(agent.answer_once())
    await asyncio.wait_for(seen.wait(), 10)
    during = read_state(agent.config.state)
    assert during is not None
    assert during["call"]["phase"] == "sending" and during["call"]["caller"] == "5550100"
    assert (during["call"]["sent"], during["call"]["total"]) == (1024, 4096)
    go_on.set()
    report = await answering
    assert report is not None and report.result == "ok"
    after = read_state(agent.config.state)
    assert after is not None and after["call"] is None


def test_status_prints_the_call_line(tmp_path: Path):
    agent = make_agent(tmp_path, "", FakeCentre())
    agent.save()
    path = tmp_path / "client.toml"
    state_file = agent.config.state
    state = json.loads(state_file.read_text())
    state["call"] = {
        "phase": "sending",
        "seconds": 23.0,
        "number": "5550100",
        "line_rate": 2400,
        "sent": 1024,
        "total": 4096,
        "rate": 230.0,
    }
    write_state(state_file, state)
    result = CliRunner().invoke(main, ["-c", str(path), "agent", "status"])
    assert result.exit_code == 0, result.output
    line = next(li for li in result.output.splitlines() if li.startswith("call "))
    assert "sending" in line and "1024 B of 4096 B" in line and "(to 5550100)" in line
    assert "0:13 left" in line  # 3,072 bytes at 230 B/s
    del state["call"]["number"]
    state["call"]["caller"] = "5550100"  # the centre called back
    write_state(state_file, state)
    result = CliRunner().invoke(main, ["-c", str(path), "agent", "status"])
    line = next(li for li in result.output.splitlines() if li.startswith("call "))
    assert "1024 B of 4096 B" in line and line.endswith("(from 5550100)")
    state["call"] = None
    write_state(state_file, state)
    result = CliRunner().invoke(main, ["-c", str(path), "agent", "status"])
    assert not [li for li in result.output.splitlines() if li.startswith("call ")]
