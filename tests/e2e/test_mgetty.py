"""A real third-party DTE on the virtual network: mgetty answers the centre's number.

The client's `callhome line-test` dials the centre's number; the modem there is a
virtual modem on a pty, and on that pty runs mgetty (the Debian package), which sees
RING, answers with ATA and greets the caller with an EMSI request, an issue file and a
login prompt. The call connects, the client finds no call-home centre and fails with
the typed protocol error (exit 10), hangs up, and keeps everything queued.

mgetty runs with a private config in a private mount namespace (tests/e2e/mgetty.py);
the test installs it when it may and is skipped, with the reason, when it cannot.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from callhome import exitcodes
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner

from .mgetty import Mgetty, mgetty_or_skip
from .system import CENTRE_NUMBER, SCALE, run

CLIENT = "plant-mg"

# The client's handshake deadline against a peer that is not a centre, in client time
# (network seconds: the client's timers are scaled with the network's).
# TODO(issue 8, "a peer that is not a call-home centre ... recognised within 10 s"):
# today the client resends its first handshake message for about 66 s before it gives
# up on mgetty's login prompt; once non-centre peers are recognised, lower this to 10 s.
HANDSHAKE_DEADLINE = 70.0


async def wait_until(predicate, what: str, timeout: float, details=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s\n{details()[-4000:]}")
        await asyncio.sleep(0.1)


async def test_line_test_to_mgetty_is_a_protocol_error_and_loses_nothing(tmp_path: Path):
    binary = mgetty_or_skip()
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    network.add_modem("centre", "generic", number=CENTRE_NUMBER)
    network.add_modem(CLIENT, "generic", number="5550030")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    mgetty: Mgetty | None = None
    try:
        centre = await runner.expose("centre", "pty", path=str(tmp_path / "ports" / "centre"))
        client_port = await runner.expose(CLIENT, "pty", path=str(tmp_path / "ports" / CLIENT))
        tty = os.path.realpath(centre.url)  # /dev/pts/N: mgetty takes "pts/N"
        mgetty = Mgetty(binary, tty, tmp_path / "mgetty")
        mgetty.start()
        # mgetty has set the modem up (its own default init chat) and waits for a RING
        await wait_until(
            lambda: mgetty.waiting() or not mgetty.running(),
            "mgetty did not initialise the virtual modem",
            30,
            mgetty.log,
        )
        assert mgetty.running(), mgetty.log()

        # the client, set up as a user would, with a report queued for the next call
        centre_key = await run("callhome", "keygen", str(tmp_path / "centre.key"))
        assert centre_key.code == 0, centre_key
        folder = tmp_path / CLIENT
        config = str(folder / "client.toml")
        init = await run(
            "callhome",
            "-c",
            config,
            "init",
            str(folder),
            "--name",
            CLIENT,
            "--centre-key",
            centre_key.out.split()[-1],
            "--number",
            CENTRE_NUMBER,
            "--port",
            client_port.url,
            "--attempts",
            "1",
            "--time-scale",
            str(SCALE),
        )
        assert init.code == 0, init
        queued = await run(
            "callhome",
            "-c",
            config,
            "send",
            "--no-call",
            "--severity",
            "error",
            "--component",
            "raid0",
            "--state",
            "degraded",
            "--message",
            "disk 3",
        )
        assert queued.code == 0, queued

        started = time.monotonic()
        result = await run("callhome", "-c", config, "line-test", "--json", timeout=300)
        elapsed = time.monotonic() - started
        details = f"{result}\n{list(network.history)}\n--- mgetty\n{mgetty.log()[-4000:]}"

        # the typed protocol error, after a call that really connected to mgetty
        assert result.code == exitcodes.PROTOCOL, details
        report = json.loads(result.out)
        assert report["result"] == "protocol" and report["number"] == CENTRE_NUMBER, details
        assert report["connect"], details
        log = mgetty.log()
        assert "ATA" in log and "CONNECT" in log, details  # mgetty answered the RING

        # the client hung up: the network shows the call ended
        (call,) = [c for c in network.history if c.caller == CLIENT]
        assert call.callee == "centre" and call.connected is not None, call
        assert call.ended is not None and not network.active_calls, call
        assert call.bytes_callee_to_caller > 0 and call.bytes_caller_to_callee > 0, call

        # within the handshake deadline (client time = network seconds)
        on_line = call.ended - call.connected
        print(
            f"mgetty call: exit {result.code}, connected for {on_line:.1f} s of client "
            f"time, line-test took {elapsed:.1f} s real at time scale {SCALE}"
        )
        assert on_line < HANDSHAKE_DEADLINE, details  # TODO(issue 8): 10 s, see above

        # nothing queued is lost: the report (and the line test itself) wait for a centre
        listed = await run("callhome", "-c", config, "queue", "--json")
        assert listed.code == 0, listed
        kinds = [message["kind"] for message in json.loads(listed.out)]
        assert "report" in kinds and "line-test" in kinds, listed.out
    finally:
        if mgetty is not None:
            mgetty.stop()
        await runner.stop()

