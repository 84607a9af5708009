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


@pytest.fixture
async def emulators(tmp_path):
    network = PhoneNetwork()
    network.add_modem("emu", "emulator", number="5550301")
    network.add_modem("bank", "emulator", number="127.0.0.1:6400")
    network.add_modem("busy", "generic", number="5550200")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    urls = {}
    for name in ("emu", "bank"):
        urls[name] = (await runner.expose(name, "pty", path=str(tmp_path / name))).url
    yield network, urls
    await runner.stop()


async def test_probe_of_an_emulator_lists_what_it_refused(emulators):
    _, urls = emulators
    code, out, err = await callhome(
        "modem", "probe", urls["emu"], "--json", "--time-scale", str(SCALE)
    )
    assert code == 0, err
    result = json.loads(out)
    refused = {entry.split(" ")[0]: entry for entry in result["refused"]}
    assert "'3' (numeric NO CARRIER)" in refused["AT+VCID=1"]
    assert {"AT+MR=1", "AT+ER=1", "AT+DR=1"} <= set(refused)  # not sent after that
    assert "ATV1 (verbose result codes)" in result["present"]
    assert "AT+GCAP" not in result["identity"]  # never asked: it would answer the line
    code, out, err = await callhome("modem", "probe", urls["emu"], "--time-scale", str(SCALE))
    assert code == 0, err
    assert "refused       AT+VCID=1 (formatted caller ID): '3' (numeric NO CARRIER)" in out


async def test_dial_an_address_and_a_busy_reported_after_connect(emulators):
    network, urls = emulators
    bank = network.modem("bank")
    bank.settings.s[0] = 1  # auto-answer
    code, out, err = await callhome(
        "modem", "dial", urls["emu"], "127.0.0.1:6400", "--time-scale", str(SCALE), "--json"
    )
    assert code == 0, out + err
    assert json.loads(out)["outcome"] == "connected"
    # the emulator says CONNECT on link-up, then BUSY as text: busy, not connected
    network.line("busy").off_hook = True
    code, out, err = await callhome(
        "modem", "dial", urls["emu"], "5550200", "--time-scale", str(SCALE), "--json"
    )
    result = json.loads(out)
    assert code == exitcodes.BUSY, out + err
    assert result["outcome"] == "busy" and "BUSY after CONNECT" in result["ended"]


@pytest.mark.parametrize(
    "args",
    [
        ("at", "/dev/ttyNOPE9", "AT", "--timeout", "nan"),
        ("dial", "/dev/ttyNOPE9", "5550100", "--hold", "inf"),
        ("probe", "/dev/ttyNOPE9", "--init", "ATV0"),
        ("probe", "/dev/ttyNOPE9", "--skip", "E"),
        ("dial", "/dev/ttyNOPE9", "555.0100"),
    ],
)
async def test_bad_options_are_usage_errors_before_any_port_is_opened(args):
    code, _out, err = await callhome("modem", *args)
    assert code == exitcodes.USAGE, err
    assert "Traceback" not in err and "cannot open" not in err and "Warning" not in err
