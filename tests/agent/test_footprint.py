"""The idle agent stays small: `callhome agent run`, collecting and waiting, has not
imported the protocol, the dialer or pyca/cryptography (about 7 MB of RSS of its 40 MB
budget); they come with the first call. The figure itself is in
`benchmarks/agent_footprint.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.agent_footprint import sim_modem
from callhome.client.agent.statefile import read_state, write_state
from callhome.keys import write_private_key

from .agentkit import write_config

HEAVY = (
    "cryptography",
    "callhome.link",
    "callhome.client.dialer",
    "callhome.wire.noise",
    "callhome.wire.records",
    "callhome.wire.session",
    "callhome.wire.transfer",
    # smaller, each read for one line: the extension commands (`callhome --help`), the
    # installed version (read from its METADATA file), a `test_at` time zone, the
    # compression dictionary (a file next to the module)
    "importlib.metadata",
    "zoneinfo",
    "importlib.resources",
)

ENTRY = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
from callhome.client.cli import main
main()
"""
"""`callhome` as installed, that writes the modules it imported when it exits."""


@pytest.mark.parametrize("answer", [False, True], ids=["collecting", "answering"])
def test_an_idle_agent_has_not_imported_the_protocol_or_cryptography(
    tmp_path: Path, answer: bool
) -> None:
    """Answering (the default): its modem (a virtual one) set up and waiting for a call."""
    (tmp_path / "sim.txt").write_text(
        "0s md/md0 OK clean [UU]\n0.3s md/md0 WARNING resync [UU]\n"  # queued, no call yet
    )
    sim = None
    if answer:
        sim, port = sim_modem(tmp_path)
    path = write_config(
        tmp_path,
        f'[agent]\ninterval = "0.1s"\nanswer = {str(answer).lower()}\n'
        '[[check]]\nkind = "simulated"\nname = "sim"\nscript = "sim.txt"\n'
        '[[check]]\nkind = "filesystems"\n',
    )
    if answer:
        path.write_text(path.read_text().replace('"/dev/ttyS0"', f'"{port}"'))
    write_private_key(tmp_path / "device.key")
    state = tmp_path / "spool.db.agent.json"
    write_state(state, {"last_test": time.time()})  # no line test due
    out = tmp_path / "modules.json"
    log_file = (tmp_path / "agent.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "-c", str(path), "agent", "run", "--json-logs"],
        env={**os.environ, "MODULES_OUT": str(out)},
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            checks = {c["check"]: c["state"] for c in (read_state(state) or {}).get("checks", [])}
            if checks.get("md/md0") == "WARNING":
                break  # collected, changed state, queued its report, saved: and idles on
            time.sleep(0.05)
        assert checks.get("md/md0") == "WARNING", checks
        time.sleep(0.5)  # a few more collections
        if answer:  # the modem set up: waiting for the centre's call
            log = tmp_path / "agent.log"
            while time.monotonic() < deadline and "modem.ready" not in log.read_text():
                time.sleep(0.05)
            assert "modem.ready" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log_file.close()
        if sim is not None:
            sim.terminate()
            sim.wait(30)
    err = (tmp_path / "agent.log").read_text()
    assert process.returncode == 0, err[-2000:]
    modules = set(json.loads(out.read_text()))
    assert "callhome.client.agent.daemon" in modules  # the agent did run
    assert "callhome.client.agent.collectors.filesystems" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert loaded == [], f"an idle agent imported {loaded}"
