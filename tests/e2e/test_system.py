"""End to end: the real CLIs as subprocesses, over ptys of the virtual network."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3

from callhome import exitcodes


async def test_line_test_success(system):
    client = await system.add_client("plant-a", "5550001")
    result = await client.cli("line-test")
    assert result.code == 0, result
    out = result.out
    for step in (
        "dialling 5550100",
        "ringing, training",
        "connected: CONNECT",
        "handshake",
        "transfer",
    ):
        assert step in out, step
    for row in (
        "time to CONNECT",
        "line",
        "handshake",
        "bytes",
        "data phase",
        "on the line",
        "clock skew",
        "result           ok",
    ):
        assert row in out, row
    assert "acknowledged by the centre" in out
    stored = await system.reports("--device", "plant-a")
    assert [r["kind"] for r in stored] == ["line-test"]
    # the client is done when the centre acknowledged; the centre records the call after
    await system.wait_for("call.ended", device="plant-a")
    calls = await system.calls()
    assert calls[0]["device"] == "plant-a" and calls[0]["outcome"] == "completed"
    # the bank answers on the first ring, before a usr line's caller ID (issue 18;
    # test_bank.py checks that it is recorded with [bank] wait_for_caller_id)
    assert calls[0]["caller_id"] is None
    as_json = await client.cli("line-test", "--json")
    report = json.loads(as_json.out)
    assert as_json.code == 0 and report["result"] == "ok" and report["connect"]["dce_rate"]
    assert report["acknowledged"] == [2] and report["duplicates"] == []
    assert len(await system.reports("--kind", "line-test")) == 2  # a new id each time


async def test_report_delivered(system):
    client = await system.add_client("plant-b", "5550002")
    result = await client.cli(
        "send",
        "--severity",
        "warning",
        "--component",
        "psu1",
        "--state",
        "degraded",
        "--message",
        "input voltage low",
    )
    assert result.code == 0, result
    assert "queued as message 1" in result.out and "1 of 1 acknowledged" in result.out
    (stored,) = await system.reports("--kind", "report")
    assert (stored["device"], stored["severity"], stored["component"], stored["state"]) == (
        "plant-b",
        "warning",
        "psu1",
        "degraded",
    )
    assert stored["content"]["message"] == "input voltage low"
    assert await client.queue() == []
    assert await system.reports("--severity", "critical") == []


async def test_call_cut_mid_transfer_is_delivered_once_on_the_next_call(system, tmp_path):
    client = await system.add_client("plant-c", "5550003")
    big = {
        "severity": "error",
        "component": "raid0",
        "state": "failed",
        "log": [f"line {i}: " + os.urandom(32).hex() for i in range(600)],
    }
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps(big))
    system.network.set_next_call("plant-c", drop_after_bytes=9000)
    first = await client.cli("send", "--file", str(report_file))
    assert first.code == exitcodes.NO_CARRIER, first
    assert "cut before the centre answered" in first.out
    assert [m["seq"] for m in await client.queue()] == [1]
    assert await system.reports() == []
    second = await client.cli("line-test")
    assert second.code == 0, second
    stored = await system.reports("--kind", "report")
    assert len(stored) == 1 and stored[0]["content"]["log"] == big["log"]
    assert await client.queue() == []
    calls = await system.calls("--device", "plant-c")
    assert [c["outcome"] for c in calls] == ["completed", "dropped"]
    accepted = [e for e in system.events() if e.get("event") == "call.accepted"]
    assert accepted[-1]["resume"] == 1  # the second call resumed the partial copy


async def test_receiver_killed_before_commit_then_stored_once(system):
    client = await system.add_client("plant-d", "5550004")
    # a slow line: the report takes a while to arrive after the handshake, time enough
    # to lock the store so the receiver holds the report but cannot commit it
    sending = await client.send_over_a_slow_line(rate=300, component="fan2", size=300)
    before = len(system.events())
    lock = sqlite3.connect(system.centre_config.parent / "centre.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    # the report crosses the line (300 random bytes go as 600 hex digits, plus framing);
    # the centre holds it but cannot commit it
    (call,) = system.network.active_calls
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while call.record.bytes_caller_to_callee < 700:
        assert loop.time() < deadline, call.record
        await asyncio.sleep(0.05)
    assert not [e for e in system.events()[before:] if e.get("event") == "message.stored"]
    await system.stop_receiver(signal.SIGKILL)
    lock.execute("ROLLBACK")
    lock.close()
    first = await sending
    assert first.code == exitcodes.NO_CARRIER, first
    assert len(await client.queue()) == 1
    assert await system.reports("--kind", "report") == []
    await system.start_receiver()
    second = await client.cli("line-test")
    assert second.code == 0, second
    stored = await system.reports("--kind", "report")
    assert len(stored) == 1 and stored[0]["component"] == "fan2"
    assert await client.queue() == []


async def test_lost_acknowledgement_is_a_duplicate_after_a_receiver_restart(system):
    client = await system.add_client("plant-e", "5550005")
    # a long line (0.5 s one way): cut it once the centre has stored the report, while
    # its STORED answer is still on the way
    system.network.set_next_call("plant-e", latency=5.0)
    before = len(system.events())
    sending = asyncio.ensure_future(
        client.cli("send", "--severity", "info", "--component", "probe", "--state", "ko")
    )
    await system.wait_for("message.stored", after=before, device="plant-e")
    assert system.network.cut("plant-e")
    system.runner.poke()
    first = await sending
    assert first.code == exitcodes.NO_CARRIER, first
    assert len(await system.reports("--kind", "report")) == 1  # stored, not acknowledged
    assert len(await client.queue()) == 1
    await system.stop_receiver()
    await system.start_receiver()
    second = await client.cli("line-test")
    assert second.code == 0, second
    assert "(1 already held)" in second.out
    reports = await system.reports("--kind", "report")
    assert [r["state"] for r in reports] == ["ko"]  # once
    assert await client.queue() == []


async def test_unknown_and_revoked_devices_are_refused_and_recorded(system):
    rogue = await system.add_client("rogue", "5550666", enroll=False)
    result = await rogue.cli("line-test")
    assert result.code == exitcodes.REFUSED, result
    assert "refused by the centre (unknown device)" in result.out
    client = await system.add_client("plant-f", "5550006")
    assert (await client.cli("line-test")).code == 0
    revoked = await system.receiver_cli("revoke", "plant-f")
    assert revoked.code == 0, revoked
    result = await client.cli("line-test")
    assert result.code == exitcodes.REFUSED and "(revoked)" in result.out
    await system.wait_for("call.ended", count=3)  # the centre records after hanging up
    outcomes = [(c["device"], c["outcome"]) for c in await system.calls()]
    assert outcomes == [
        ("plant-f", "refused: revoked"),
        ("plant-f", "completed"),
        (None, "refused: unknown device"),
    ]
    devices = json.loads((await system.receiver_cli("devices", "--json")).out)
    assert [(d["name"], d["revoked"] is not None) for d in devices] == [("plant-f", True)]


async def test_all_bank_lines_busy_the_client_backs_off_and_retries(system):
    client = await system.add_client("plant-g", "5550007", attempts=3, retry_delay="10s")
    for name in ("bank0", "bank1"):
        system.network.line(name).off_hook = True  # every line of the hunt group busy
    busy = asyncio.Event()
    system.network.trace = lambda event, **fields: busy.set() if event == "call.busy" else None
    sending = asyncio.ensure_future(
        client.cli("send", "--severity", "notice", "--component", "ups", "--state", "on battery")
    )
    await asyncio.wait_for(busy.wait(), 60)  # the first round fails: busy
    for name in ("bank0", "bank1"):
        system.network.line(name).off_hook = False
    result = await sending
    assert result.code == 0, result
    assert "5550100: busy" in result.out
    # the first wait is the configured delay (10 s at this scale: 1 s) with jitter, up to 3x
    waited = re.search(r"trying again in ([0-9.]+) s", result.out)
    assert waited is not None and 1.0 <= float(waited.group(1)) <= 3.0, result.out
    assert len(await system.reports("--kind", "report")) == 1


async def test_busy_everywhere_gives_up_with_the_busy_exit_code(system):
    client = await system.add_client("plant-h", "5550008", attempts=2, retry_delay="2s")
    for name in ("bank0", "bank1"):
        system.network.line(name).off_hook = True
    result = await client.cli("send", "--severity", "info", "--component", "x", "--state", "y")
    assert result.code == exitcodes.BUSY, result
    assert "failed: busy" in result.out and "still queued     1" in result.out
    assert len(await client.queue()) == 1  # kept for the next call
