"""The agent end to end on the virtual network: `callhome agent run` as a real process,
a real centre (`callhome-receiver run`), simulated collectors driven through their
control socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callhome.client.agent.statefile import write_state
from tests.e2e.system import Client, System

AGENT = """
[agent]
time_scale = 0.01
interval = "10s"
[[check]]
kind = "simulated"
name = "raid"
control = "sim.sock"
"""


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    system = System(tmp_path)
    await system.start()
    await system.start_receiver()
    yield system
    await system.stop()


async def add_agent_client(system: System, name: str, number: str) -> Client:
    client = await system.add_client(name, number)
    with client.config.open("a") as file:
        file.write(AGENT)
    # line-tested a moment ago: no scheduled test gets in the way of the story
    write_state(client.config.parent / "spool.db.agent.json", {"last_test": time.time()})
    return client


async def start_agent(
    client: Client, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    log = (client.config.parent / "agent.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callhome",
        "-c",
        str(client.config),
        "agent",
        "run",
        "--json-logs",
        stdout=log,
        stderr=log,
        env={**os.environ, **(env or {})},
    )
    log.close()
    socket_path = client.config.parent / "sim.sock"
    for _ in range(400):
        if socket_path.exists():
            return process
        await asyncio.sleep(0.05)
    raise AssertionError("the agent never opened its control socket")


async def tell(client: Client, *lines: str) -> None:
    reader, writer = await asyncio.open_unix_connection(str(client.config.parent / "sim.sock"))
    for line in lines:
        writer.write(line.encode() + b"\n")
        await writer.drain()
        assert (await reader.readline()) == b"ok\n"
    writer.close()
    await writer.wait_closed()


async def device(system: System, name: str) -> dict[str, dict[str, object]]:
    result = await system.receiver_cli("device", name, "--json")
    assert result.code == 0, result
    return {c["check"]: c for c in json.loads(result.out)["checks"]}


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 30)


async def test_a_degraded_mirror_is_stored_and_kill_9_mid_call_loses_nothing(
    system: System,
) -> None:
    client = await add_agent_client(system, "plant-a", "5550001")
    # systemd's notify socket (a short path: AF_UNIX paths are limited)
    folder = tempfile.mkdtemp(prefix="notify-")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(f"{folder}/n")
    notify.setblocking(False)
    agent = await start_agent(client, {"NOTIFY_SOCKET": f"{folder}/n"})
    loop = asyncio.get_running_loop()
    ready = await asyncio.wait_for(loop.sock_recv(notify, 200), 30)
    assert ready.startswith(b"READY=1")
    notify.close()
    disks = [f"disk/sd{letter}" for letter in "bcdefg"]
    try:
        # 1. a mirror degrades: an urgent call, and the centre has the report
        await tell(client, "md/md0 OK clean [UU]", *(f"{disk} OK fine" for disk in disks))
        before = len(system.events())
        started = time.monotonic()
        await tell(client, "md/md0 CRITICAL degraded [U_]: sdb failed")
        await system.wait_for("message.stored", after=before, device="plant-a", timeout=60)
        took = time.monotonic() - started
        print(f"degraded mirror to stored report: {took:.1f} s real at network scale 0.1")
        await system.wait_for("call.ended", after=before, device="plant-a", outcome="completed")
        status = await client.cli("agent", "status", "--json")
        assert status.code == 0, status
        assert json.loads(status.out)["last_call"]["result"] == "ok"

        # 2. more failures go out on a slow line, and the agent is killed mid-call
        before = len(system.events())
        system.network.set_next_call("plant-a", rate=1200)
        long_text = "pending sectors " + "x" * 400
        await tell(client, *(f"{disk} CRITICAL {long_text}" for disk in disks))
        await system.wait_for("call.handshake", after=before, device="plant-a", timeout=60)
        agent.send_signal(signal.SIGKILL)
        await agent.wait()
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    assert len(await client.queue()) == len(disks)  # nothing lost: all still in the spool

    # 3. restarted, it delivers what the spool kept, each exactly once
    before = len(system.events())
    agent = await start_agent(client)
    try:
        await system.wait_for(
            "call.ended", after=before, device="plant-a", outcome="completed", timeout=90
        )
    finally:
        await stop(agent)
    assert await client.queue() == []
    reports = await system.reports("--kind", "report")
    assert sorted(r["component"] for r in reports) == sorted([*disks, "md/md0"])
    checks = await device(system, "plant-a")
    assert checks["md/md0"]["state"] == "CRITICAL"
    assert checks["md/md0"]["text"] == "degraded [U_]: sdb failed"
    assert all(checks[disk]["state"] == "CRITICAL" for disk in disks)
    texts = [r["text"] for r in reports]
    assert "md/md0 OK -> CRITICAL: degraded [U_]: sdb failed" in texts
