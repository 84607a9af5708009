"""`callhome-sim`: the network file, its errors, and the process life cycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from click.testing import CliRunner

from modem_drivers.virtual.cli import main
from modem_drivers.virtual.config import EXAMPLE, ConfigError, load_config, parse_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.toml"
    path.write_text(text)
    return path


def test_example_config_loads_and_builds(tmp_path):
    config = load_config(write(tmp_path, EXAMPLE))
    network = config.build_network()
    assert set(network.lines) == {"bank0", "bank1", "client1"}
    assert [line.name for line in network.numbers["5550100"]] == ["bank0", "bank1"]
    assert network.lines["client1"].overrides == {"rate": 2400, "v42": False, "ber": 1e-5}
    assert config.faults[0].kind == "cut"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time_scale = 0\n", "time_scale: must be between 0.001 and 1000"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[line]\nrate = 100\n", "line: rate must be between 300 and 33600"),
        ("[line]\nrate = 'fast'\n", "line.rate: expected an integer, got str"),
        ("[line]\nv42 = 1\n", "line.v42: expected true or false, got int"),
        ("[[modem]]\nprofile = 'usr'\n", "modem[0].name: every modem needs a name"),
        ("[[modem]]\nname = 'a'\nprofile = 'zoom'\n", "modem[0].profile: unknown profile"),
        ("[[modem]]\nname = 'a'\nport = 'usb'\n", "modem[0].port: must be one of"),
        ("[[modem]]\nname = 'a'\ncolour = 'red'\n", "modem[0].colour: unknown key"),
        ("[[modem]]\nname = 'a'\n[modem.line]\nber = 0.9\n", "modem[0].line: ber must be below"),
        ("[[modem]]\nname = 'a'\n[[modem]]\nname = 'a'\n", "modem[1].name: duplicate"),
        ("[[modem]]\nname = 'a'\nnumber = '12x'\n", "invalid number '12x'"),
        (
            "[[hunt_group]]\nnumber = '1'\nmembers = ['nobody']\n",
            "hunt_group[0].members: no modem named 'nobody'",
        ),
        (
            "[[modem]]\nname = 'a'\n[[fault]]\nmodem = 'a'\nkind = 'fire'\n",
            "fault[0].kind: must be one of",
        ),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    path = write(tmp_path, "[line]\nrate = 100\n")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "rate must be between" in result.output
    result = CliRunner().invoke(main, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "no such config file" in result.output


def test_cli_lists_profiles_and_prints_an_example():
    result = CliRunner().invoke(main, ["profiles"])
    assert result.exit_code == 0
    assert {line.split()[0] for line in result.output.splitlines()} == {
        "generic",
        "usr",
        "conexant",
        "emulator",
    }
    example = CliRunner().invoke(main, ["example"]).output
    parse_config(__import__("tomllib").loads(example))


def test_sim_process_serves_ports_and_cleans_up_on_sigterm(tmp_path):
    links = tmp_path / "links"
    config = write(
        tmp_path,
        f"""
time_scale = 0.02
[[modem]]
name = "bank0"
profile = "usr"
path = "{links}/bank0"
[[modem]]
name = "bank1"
port = "rfc2217"
[[modem]]
name = "client"
path = "{links}/client"
number = "5550001"
[[hunt_group]]
number = "5550100"
members = ["bank0", "bank1"]
""",
    )
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modem_drivers.virtual",
            "run",
            str(config),
            "--ready-file",
            str(ready),
            "--json-logs",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if ready.exists():
                break
            time.sleep(0.05)
        endpoints = {m["modem"]: m for m in json.loads(ready.read_text())["modems"]}
        assert endpoints["bank1"]["url"].startswith("rfc2217://127.0.0.1:")
        client = serial.serial_for_url(endpoints["client"]["url"], timeout=2)
        bank = serial.serial_for_url(endpoints["bank0"]["url"], timeout=2)
        bank.write(b"ATE0S0=1\r")
        assert bank.read_until(b"OK\r\n").endswith(b"OK\r\n")
        client.write(b"ATE0\r")
        client.read_until(b"OK\r\n")
        client.write(b"ATDT5550100\r")
        assert client.read_until(b"\r\nCONNECT").endswith(b"CONNECT")
        client.close()
        bank.close()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "bank0" in stdout and "5550100*" in stdout
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "call.connected" in events and "sim.stopping" in events
    assert not os.path.lexists(links / "bank0") and not os.path.lexists(links / "client")


def test_demo_runs_a_call_and_exits_0():
    process = subprocess.run(
        [sys.executable, "-m", "modem_drivers.virtual", "demo", "--time-scale", "0.02"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "CONNECT" in process.stdout and "NO CARRIER" in process.stdout
    assert "hung up by client" in process.stdout
