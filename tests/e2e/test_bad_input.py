"""What users get wrong, and what breaks: one clear line, an exit code, nothing lost."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import sqlite3
import sys

from callhome import exitcodes

from .system import run


def one_clear_line(text: str) -> bool:
    return text.count("\n") == 1 and "Traceback" not in text


async def test_wrong_centre_key_is_reported_and_the_port_stays_in_service(system):
    client = await system.add_client("plant-w", "5550010")
    config = client.config.read_text()
    impostor = base64.b64encode(os.urandom(32)).decode()
    client.config.write_text(config.replace(system.centre_key, impostor))
    result = await client.cli("line-test")
    assert result.code == exitcodes.PROTOCOL, result
    assert "wrong centre public key" in result.out
    assert len(await client.queue()) == 1  # nothing lost
    await system.wait_for("call.ended")
    (call,) = await system.calls()
    assert call["outcome"] == "failed" and "decrypt" in call["error"]
    client.config.write_text(config)  # fixed: the same port serves the next call
    assert (await client.cli("line-test")).code == 0


async def test_corrupt_or_missing_config(tmp_path):
    bad = tmp_path / "client.toml"
    bad.write_text("[device]\nname = 'x'\n[modem]\nports = 7\n")
    result = await run("callhome", "-c", str(bad), "queue")
    assert result.code == exitcodes.USAGE and one_clear_line(result.err), result
    assert str(bad) in result.err
    bad.write_text("not = [toml")
    result = await run("callhome", "-c", str(bad), "line-test")
    assert result.code == exitcodes.USAGE and "not valid TOML" in result.err
    result = await run("callhome", "-c", str(tmp_path / "none.toml"), "queue")
    assert result.code == exitcodes.USAGE and "no such config file" in result.err
    result = await run("receiver", "-c", str(tmp_path / "none.toml"), "devices")
    assert result.code == 2 and one_clear_line(result.err)


async def test_a_modem_url_that_does_not_exist(system):
    client = await system.add_client("plant-m", "5550011")
    text = client.config.read_text()
    client.config.write_text(text.replace(str(system.ports / "plant-m"), "/dev/ttyNOPE7"))
    result = await client.cli(
        "send", "--severity", "error", "--component", "disk0", "--state", "failed"
    )
    assert result.code == exitcodes.MODEM, result
    assert "failed: modem" in result.out and "/dev/ttyNOPE7" in result.out
    (queued,) = await client.queue()
    assert queued["status"] == "queued"  # it waits for a working modem


async def test_a_locked_store(system):
    lock = sqlite3.connect(system.centre_config.parent / "centre.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        result = await system.receiver_cli(
            "enroll", "x", "--pubkey", base64.b64encode(os.urandom(32)).decode()
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert result.code == exitcodes.STORAGE and one_clear_line(result.err), result
    assert "locked" in result.err


async def test_a_full_disk_at_the_centre_acknowledges_nothing_and_loses_nothing(system):
    client = await system.add_client("plant-z", "5550012")
    await system.stop_receiver()
    database = system.centre_config.parent / "centre.db"
    await system.start_receiver(file_size_limit=database.stat().st_size + 4096)
    # a report longer than the room the limit leaves: however large the schema makes the
    # database (the write-ahead log may grow to the same limit), its copies cannot fit
    room = database.stat().st_size + 4096
    report = system.centre_config.parent / "long-report.json"
    blob = os.urandom(room + 40_000).hex()  # hex of random bytes: compresses 2:1 at best
    report.write_text(json.dumps({"severity": "error", "component": "raid0", "log": blob}))
    result = await client.cli("send", "--file", str(report))
    assert result.code != 0, result
    assert len(await client.queue()) == 1  # not acknowledged, so still queued
    await system.wait_for("call.ended")
    ended = [e for e in system.events() if e.get("event") == "call.ended"]
    assert ended[-1]["outcome"] == "store unavailable"
    assert "disk" in ended[-1]["error"]
    await system.stop_receiver()
    await system.start_receiver()  # room again: the next call delivers it
    assert (await client.cli("line-test")).code == 0
    assert len(await system.reports("--kind", "report")) == 1
    assert await client.queue() == []


async def test_a_full_disk_at_the_client(system):
    client = await system.add_client("plant-y", "5550013")
    queued = await client.cli(
        "send", "--no-call", "--severity", "info", "--component", "a", "--state", "b"
    )
    assert queued.code == 0
    limit = (client.config.parent / "spool.db").stat().st_size + 1024

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callhome",
        "-c",
        str(client.config),
        "send",
        "--no-call",
        "--message",
        os.urandom(40_000).hex(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=cap,
    )
    _, err = await process.communicate()
    assert process.returncode == exitcodes.STORAGE, err
    assert one_clear_line(err.decode()) and "disk" in err.decode() and "full" in err.decode()
    assert [m["seq"] for m in await client.queue()] == [1]  # the earlier one is intact
