"""`callhome modem probe|at|dial` as subprocesses against the virtual network."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from callhome import exitcodes
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner

SCALE = 0.05


async def callhome(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callhome",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture
async def sim(tmp_path):
    network = PhoneNetwork()
    network.add_modem("client", "usr", number="5550001")
    network.add_modem("centre", "conexant", number="5550100")
    network.add_modem("busy", "generic", number="5550200")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    urls = {}
    for name, kind in (("client", "pty"), ("centre", "rfc2217"), ("busy", "pty")):
        urls[name] = (await runner.expose(name, kind, path=str(tmp_path / name))).url
    yield network, urls
    await runner.stop()


async def test_probe_over_a_pty(sim):
    _, urls = sim
    code, out, err = await callhome("modem", "probe", urls["client"], "--time-scale", str(SCALE))
    assert code == 0, err
    assert "profile       usr" in out
    assert "DTR no, DCD no, RI no" in out  # a pty has no control lines
    assert "U.S. Robotics" in out


async def test_probe_over_rfc2217_as_json(sim):
    _, urls = sim
    code, out, err = await callhome(
        "modem", "probe", urls["centre"], "--json", "--time-scale", str(SCALE)
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["profile"] == "conexant"
    assert result["port"]["dtr"] and result["dcd_trusted"]


async def test_at_prints_answers_and_fails_on_error(sim):
    _, urls = sim
    code, out, _ = await callhome("modem", "at", urls["client"], "ATE0", "ATI3", "ATS7?")
    assert code == 0
    assert "U.S. Robotics 56K FAX EXT V1.2.23" in out and "060" in out
    code, out, _ = await callhome("modem", "at", urls["client"], "ATX9")
    assert code == exitcodes.MODEM and "ERROR" in out


async def test_dial_reports_the_connect_record_and_hangs_up(sim):
    network, urls = sim
    centre = network.modem("centre")
    centre.settings.s[0] = 1  # auto-answer ...
    centre.settings.dtr_mode = 0  # ... with nobody on its port (&D2 would refuse)
    code, out, err = await callhome(
        "modem", "dial", urls["client"], "5550100", "--time-scale", str(SCALE), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["outcome"] == "connected"
    assert result["connect"]["dce_rate"] == 33600
    assert result["connect"]["error_correction"] == "LAPM"
    assert result["hangup"] == "escape"  # a pty has no DTR


@pytest.mark.parametrize(
    ("setup", "number", "code"),
    [
        ("busy", "5550200", exitcodes.BUSY),
        ("unplug", "5550100", exitcodes.NO_DIALTONE),
        ("silent", "5550100", exitcodes.NO_ANSWER),
    ],
)
async def test_dial_failures_have_their_own_exit_codes(sim, setup, number, code):
    network, urls = sim
    if setup == "busy":
        network.line("busy").off_hook = True
    elif setup == "unplug":
        network.unplug("client")
    code_seen, out, err = await callhome(
        "modem", "dial", urls["client"], number, "--time-scale", str(SCALE)
    )
    assert code_seen == code, out + err
    assert "outcome" in out


async def test_unknown_port_is_one_line_and_exit_3():
    code, _out, err = await callhome("modem", "probe", "/dev/ttyNOPE9")
    assert code == exitcodes.MODEM
    assert err.count("\n") == 1 and "cannot open /dev/ttyNOPE9" in err
    assert "Traceback" not in err


async def test_bad_dial_string_is_a_usage_error(sim):
    _, urls = sim
    code, _, err = await callhome(
        "modem", "dial", urls["client"], "555-CALL-NOW", "--time-scale", str(SCALE)
    )
    assert code == exitcodes.USAGE and "not a dial string" in err
