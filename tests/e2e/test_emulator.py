"""Issue 8: the whole path with software Hayes emulators (the virtual network's
`emulator` profile: tcpser-like) on the client, on the bank, and on both."""

from __future__ import annotations

import json
import os

import pytest

from callhome import exitcodes

from .system import CENTRE_NUMBER, System

PLACEMENTS = {
    "client": ("emulator", ["usr", "generic"]),
    "bank": ("generic", ["emulator", "emulator"]),
    "both": ("emulator", ["emulator", "emulator"]),
}


@pytest.fixture(params=sorted(PLACEMENTS))
async def placed(request, tmp_path):
    client_profile, bank_profiles = PLACEMENTS[request.param]
    system = System(tmp_path)
    await system.start(bank=2, profiles=bank_profiles)
    await system.start_receiver()
    yield system, client_profile
    await system.stop()


async def test_line_test_report_busy_no_answer_and_failover(placed, tmp_path):
    system, profile = placed
    client = await system.add_client("plant-e", "5550031", profile=profile, attempts=1)
    result = await client.cli("line-test")
    assert result.code == 0, result
    sent = await client.cli("send", "--severity", "error", "--component", "psu", "--state", "x")
    assert sent.code == 0, sent
    assert len(await system.reports("--kind", "report")) == 1

    # every bank line busy: the busy outcome, however the modem reports it
    for name in ("bank0", "bank1"):
        system.network.line(name).off_hook = True
    busy = await client.cli("line-test")
    assert busy.code == exitcodes.BUSY, busy
    for name in ("bank0", "bank1"):
        system.network.line(name).off_hook = False

    # a number that rings and rings: no answer
    system.network.add_modem("silent", "generic", number="5550999")
    system.network.modem("silent").settings.s[0] = 0  # never auto-answers
    config = client.config.read_text().replace(f'"{CENTRE_NUMBER}"', '"5550999"')
    client.config.write_text(config)
    no_answer = await client.cli("line-test", timeout=300)
    assert no_answer.code == exitcodes.NO_ANSWER, no_answer

    # failover: the first number unanswered, the second is the centre
    client.config.write_text(config.replace('"5550999"', f'"5550999", "{CENTRE_NUMBER}"'))
    failover = await client.cli("line-test", "--json", timeout=300)
    assert failover.code == 0, failover
    attempts = [(a["number"], a["result"]) for a in json.loads(failover.out)["attempts"]]
    assert attempts == [("5550999", "no answer"), (CENTRE_NUMBER, "connected")]
    await system.wait_for("call.ended", count=3)
    # busy and unanswered calls never reached the bank: three calls, all completed
    assert [c["outcome"] for c in await system.calls()] == ["completed"] * 3


async def test_cut_call_resumed_then_ten_calls_back_to_back(placed, tmp_path):
    system, profile = placed
    client = await system.add_client("plant-f", "5550032", profile=profile, attempts=1)
    big = {"severity": "error", "component": "raid0", "log": os.urandom(6000).hex()}
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps(big))
    system.network.set_next_call("plant-f", drop_after_bytes=6000)
    first = await client.cli("send", "--file", str(report_file))
    assert first.code == exitcodes.NO_CARRIER, first
    for attempt in range(10):  # no gap between calls
        result = await client.cli("line-test")
        assert result.code == 0, (attempt, result)
    stored = await system.reports("--kind", "report")
    assert len(stored) == 1 and stored[0]["content"]["log"] == big["log"]
    assert await client.queue() == []
    await system.wait_for("call.ended", count=11)
    accepted = [e for e in system.events() if e.get("event") == "call.accepted"]
    assert accepted[1]["resume"] == 1  # the first line test resumed the partial copy
    outcomes = [c["outcome"] for c in await system.calls()]
    assert outcomes == ["completed"] * 10 + ["dropped"], outcomes
