"""IPMI from real ipmitool outputs (fixtures/ipmi)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.client.agent.collectors import ipmi
from callhome.client.agent.collectors.base import Reading, State
from callhome.client.agent.collectors.ipmi import IpmiCollector, IpmiError
from callhome.client.agent.collectors.runner import build_collector, run_collector
from modem_drivers.configfile import Table

FIXTURES = Path(__file__).parent / "fixtures" / "ipmi"


def sensors(name: str) -> dict[str, Reading]:
    text = (FIXTURES / name).read_text()
    return {r.check: r for r in ipmi.sensor_readings(ipmi.parse_sdr(text))}


def test_hp_failed_power_supply_with_status_ok() -> None:
    got = sensors("hp_dl360_sdr_elist.txt")
    assert got["ipmi/Power Supply 1"].state is State.CRITICAL
    assert got["ipmi/Power Supply 1"].value == 0 and got["ipmi/Power Supply 1"].unit == "W"
    assert got["ipmi/Power Supply 2"].state is State.OK
    assert got["ipmi/Power Supplies"].state is State.WARNING  # redundancy lost
    assert got["ipmi/Fans"].state is State.OK  # "Fully Redundant"
    assert got["ipmi/Memory"].state is State.WARNING  # ECC logging limit reached
    assert "ipmi/Temp 4" not in got  # ns: disabled
    temp = got["ipmi/Temp 28"]
    assert (temp.state, temp.value, temp.unit, temp.text) == (State.OK, 73.0, "C", "73 degrees C")
    assert got["ipmi/Fan Block 1"].unit == "%"
    assert got["ipmi/UID Light"].state is State.OK
    bad = {check for check, r in got.items() if r.state is not State.OK}
    assert bad == {"ipmi/Power Supply 1", "ipmi/Power Supplies", "ipmi/Memory"}


def test_duplicate_names_get_their_sensor_id() -> None:
    assert set(sensors("dell_sdr_temperature.txt")) == {
        "ipmi/Inlet Temp",
        "ipmi/Exhaust Temp",
        "ipmi/Temp@0Eh",
        "ipmi/Temp@0Fh",
    }


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("nc", State.WARNING),
        ("cr", State.CRITICAL),
        ("nr", State.CRITICAL),
        ("ucr", State.CRITICAL),
    ],
)
def test_threshold_status(status: str, state: State) -> None:
    line = f"Temp 28          | 29h | {status}  | 66.1 | 93 degrees C\n"
    (reading,) = ipmi.sensor_readings(ipmi.parse_sdr(line))
    assert reading.state is state and reading.value == 93


def test_unknown_status_is_unknown() -> None:
    (reading,) = ipmi.sensor_readings(ipmi.parse_sdr("X | 01h | zz | 1.1 | 3 Volts\n"))
    assert reading.state is State.UNKNOWN


def test_sel() -> None:
    events = ipmi.parse_sel((FIXTURES / "hp_sel_list.txt").read_text())
    reading = ipmi.sel_reading(events)
    assert reading.state is State.WARNING
    assert reading.text == (
        "2 problem events; last 11/03/2021 15:01:48 Memory #0x2b: "
        "Correctable ECC logging limit reached"
    )
    empty = ipmi.sel_reading(ipmi.parse_sel((FIXTURES / "sel_empty.txt").read_text()))
    assert (empty.state, empty.value) == (State.OK, 0)
    benign = ipmi.parse_sel(
        "   1 | 01/01/2020 | 00:00:01 | Event Logging Disabled #0x01 | "
        "Log area reset/cleared | Asserted\n"
    )
    assert ipmi.sel_reading(benign).state is State.OK
    deasserted = ipmi.parse_sel(
        "   2 | 01/01/2020 | 00:00:02 | Power Supply #0x51 | Failure detected | Deasserted\n"
    )
    assert ipmi.sel_reading(deasserted).state is State.OK


@pytest.mark.parametrize("text", ["garbage", "a | b", "<html>"])
def test_garbage_is_a_typed_error(text: str) -> None:
    with pytest.raises(IpmiError):
        ipmi.parse_sdr(text)
    with pytest.raises(IpmiError):
        ipmi.parse_sel(text)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(alphabet=st.sampled_from("ab1. |\n%Cdegrs,nokcNA/'"), max_size=30), max_size=8)
)
def test_any_text_parses_or_is_a_typed_error(lines: list[str]) -> None:
    text = "\n".join(lines)
    for parse in (lambda t: ipmi.sensor_readings(ipmi.parse_sdr(t)), ipmi.parse_freeipmi):
        try:
            readings = parse(text)
        except IpmiError:
            continue
        assert all(isinstance(r.state, State) for r in readings)


def _fake_ipmitool(tmp_path: Path, body: str) -> str:
    program = tmp_path / "ipmitool"
    program.write_text("#!/bin/sh\n" + body)
    program.chmod(0o755)
    return str(program)


async def test_collector_with_a_fake_ipmitool(tmp_path: Path) -> None:
    program = _fake_ipmitool(
        tmp_path,
        f'case "$1" in\n  sdr) cat {FIXTURES}/hp_dl360_sdr_elist.txt ;;\n'
        f"  sel) cat {FIXTURES}/hp_sel_list.txt ;;\nesac\n",
    )
    collector = build_collector(Table({"kind": "ipmi", "ipmitool": program}, "check[0]", "c"))
    out = {r.check: r.state for r in await run_collector(collector, 10.0, name="ipmi")}
    assert out["ipmi/Power Supply 1"] is State.CRITICAL
    assert out["ipmi/sel"] is State.WARNING
    assert out["collector/ipmi"] is State.OK


async def test_no_tool_or_no_bmc_is_no_readings(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent")
    assert await IpmiCollector(ipmitool=absent, ipmi_sensors=absent).collect() == []
    program = _fake_ipmitool(tmp_path, f"cat {FIXTURES}/no_device_stderr.txt >&2; exit 1\n")
    assert await IpmiCollector(ipmitool=program).collect() == []
    out = await IpmiCollector(ipmitool=program, required=True).collect()
    assert out[0].state is State.UNKNOWN and "Could not open device" in out[0].text


def test_freeipmi_sensors() -> None:
    text = (FIXTURES / "freeipmi_sensors_state.csv").read_text()
    got = {r.check: r for r in ipmi.parse_freeipmi(text)}
    assert {c: r.state for c, r in got.items()} == {
        "ipmi/CPU Temp": State.OK,
        "ipmi/System Temp": State.OK,
        "ipmi/FAN1": State.CRITICAL,
        "ipmi/Vcpu": State.OK,
        "ipmi/PS1 Status": State.CRITICAL,
        "ipmi/PS2 Status": State.OK,
    }
    assert (got["ipmi/CPU Temp"].value, got["ipmi/CPU Temp"].unit) == (36.0, "C")
    assert got["ipmi/PS1 Status"].text == "Presence detected Power Supply Failure detected"
    with pytest.raises(IpmiError):
        ipmi.parse_freeipmi("garbage\n")


async def test_freeipmi_when_there_is_no_ipmitool(tmp_path: Path) -> None:
    program = tmp_path / "ipmi-sensors"
    program.write_text(f"#!/bin/sh\ncat {FIXTURES}/freeipmi_sensors_state.csv\n")
    program.chmod(0o755)
    collector = IpmiCollector(ipmitool=str(tmp_path / "absent"), ipmi_sensors=str(program))
    out = {r.check: r.state for r in await collector.collect()}
    assert out["ipmi/PS1 Status"] is State.CRITICAL and "ipmi/sel" not in out
