"""SMART from real smartctl JSON (fixtures/smart, sources in fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.client.agent.collectors import smart
from callhome.client.agent.collectors.base import Reading, State
from callhome.client.agent.collectors.runner import build_collector, run_collector
from callhome.client.agent.collectors.smart import Limits, SmartCollector, SmartError, assess
from modem_drivers.configfile import ConfigError, Table

FIXTURES = Path(__file__).parent / "fixtures" / "smart"


def load(name: str) -> dict[str, Any]:
    return smart.parse_json((FIXTURES / f"{name}.json").read_text())


def verdicts(name: str, limits: Limits | None = None) -> dict[str, Reading]:
    return {r.check: r for r in assess(load(name), "smart/sdx", limits or Limits())}


def test_healthy_ata() -> None:
    got = verdicts("ata_healthy_wdc")
    assert got["smart/sdx"].state is State.OK and got["smart/sdx"].text == "healthy"
    assert got["smart/sdx"].attributes["model"] == "WDC WD140EDFZ-11A0VA0"
    assert got["smart/sdx"].attributes["reallocated"] == "0"
    temp = got["smart/sdx/temperature"]
    assert (temp.state, temp.value, temp.unit) == (State.OK, 32, "C")


def test_failing_ata_behind_usb_bridge() -> None:
    # exit status 216: bits 3, 4, 6, 7
    reading = verdicts("ata_failing_hitachi_usb")["smart/sdx"]
    assert reading.state is State.CRITICAL
    for words in (
        "SMART says FAILING",
        "Reallocated_Sector_Ct at or below threshold",
        "error log: 56 errors",
        "self-test log has errors",
        "1975 reallocated sectors",
        "8 pending sectors",
    ):
        assert words in reading.text
    assert reading.attributes["pending"] == "8"


def test_nvme() -> None:
    got = verdicts("nvme_healthy_samsung")
    assert got["smart/sdx"].state is State.OK
    assert got["smart/sdx"].attributes["percentage_used"] == "0"
    # smartctl 7.0 said exit 0, yet the drive logged media errors
    bad = verdicts("nvme_media_errors_samsung")["smart/sdx"]
    assert bad.state is State.WARNING and bad.text == "7 media errors"


def test_nvme_critical_warning_bits_and_wear() -> None:
    document = load("nvme_healthy_samsung")
    document["nvme_smart_health_information_log"]["critical_warning"] = 0b1001
    document["nvme_smart_health_information_log"]["percentage_used"] = 97
    reading = assess(document, "smart/nvme0")[0]
    assert reading.state is State.CRITICAL
    assert "spare below threshold, read-only" in reading.text
    assert "97% of rated endurance used" in reading.text


def test_standby_is_ok_and_never_a_failure() -> None:
    got = verdicts("standby")
    assert list(got) == ["smart/sdx"]
    assert got["smart/sdx"].state is State.OK and got["smart/sdx"].text == "standby, not checked"


def test_exit_2_without_standby_is_unknown_not_asleep() -> None:
    reading = verdicts("open_failed_exit2")["smart/sdx"]
    assert reading.state is State.UNKNOWN and "open device" in reading.text


@pytest.mark.parametrize("name", ["usb_bridge_unknown", "nonexistent_device"])
def test_open_failures_are_unknown(name: str) -> None:
    reading = verdicts(name)["smart/sdx"]
    assert reading.state is State.UNKNOWN
    assert "USB bridge" in reading.text or "Unable to detect" in reading.text


@pytest.mark.parametrize(
    ("bit", "state"),
    [
        (smart.BIT_COMMAND_LINE, State.UNKNOWN),
        (smart.BIT_OPEN_FAILED, State.UNKNOWN),
        (smart.BIT_FAILING, State.CRITICAL),
        (smart.BIT_PREFAIL_NOW, State.CRITICAL),
        (smart.BIT_PREFAIL_PAST, State.WARNING),
        (smart.BIT_ERROR_LOG, State.WARNING),
        (smart.BIT_SELFTEST_LOG, State.WARNING),
        (smart.BIT_COMMAND_FAILED, State.OK),
    ],
)
def test_each_exit_bit(bit: int, state: State) -> None:
    document = load("ata_healthy_wdc")
    document["smartctl"]["exit_status"] = bit
    assert assess(document, "smart/sda")[0].state is state


def test_command_failed_with_nothing_read_is_unknown() -> None:
    document = {"smartctl": {"exit_status": smart.BIT_COMMAND_FAILED}}
    assert assess(document, "smart/sda")[0].state is State.UNKNOWN


def test_limits() -> None:
    limits = Limits(sectors_critical=1000, temperature_warning=30, temperature_critical=40)
    got = verdicts("ata_failing_hitachi_usb", limits)
    assert "1975 reallocated sectors" in got["smart/sdx"].text
    got = verdicts("ata_healthy_wdc", limits)
    assert got["smart/sdx/temperature"].state is State.WARNING
    got = verdicts("ata_healthy_wdc", Limits(temperature_critical=32))
    assert got["smart/sdx/temperature"].state is State.CRITICAL


def test_sector_thresholds_from_raw_counts() -> None:
    document = load("ata_healthy_wdc")
    for attribute in document["ata_smart_attributes"]["table"]:
        if attribute["id"] == 198:
            attribute["raw"]["value"] = 3
    reading = assess(document, "smart/sda", Limits(sectors_critical=3))[0]
    assert (reading.state, reading.text) == (State.CRITICAL, "3 uncorrectable sectors")


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"a": 1}', "null", "[" * 10000])
def test_garbage_is_a_typed_error(text: str) -> None:
    with pytest.raises(SmartError):
        smart.parse_json(text)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "smartctl",
                        "exit_status",
                        "messages",
                        "string",
                        "smart_status",
                        "passed",
                        "ata_smart_attributes",
                        "table",
                        "id",
                        "raw",
                        "value",
                        "when_failed",
                        "nvme_smart_health_information_log",
                        "critical_warning",
                        "temperature",
                        "current",
                    ]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=30,
    )
)
def test_any_json_gives_readings_or_a_typed_error(document: Any) -> None:
    try:
        parsed = smart.parse_json(json.dumps(document))
    except SmartError:
        return
    for reading in assess(parsed, "smart/sda"):
        assert isinstance(reading.state, State)


def test_scan_parsing() -> None:
    scanned = smart.parse_scan((FIXTURES / "scan_open.json").read_text())
    assert scanned[0] == ("/dev/sda", "sat", None)
    assert scanned[1][2] is not None and "USB bridge" in scanned[1][2]
    assert smart.disk_check("/dev/bus/0", "megaraid,0") == "smart/bus/0@megaraid,0"
    assert smart.disk_check("/dev/sda", "sat") == "smart/sda"


def _fake_smartctl(tmp_path: Path, body: str) -> Path:
    program = tmp_path / "smartctl"
    program.write_text("#!/bin/sh\n" + body)
    program.chmod(0o755)
    return program


async def test_collector_scans_and_runs_smartctl_with_standby(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    program = _fake_smartctl(
        tmp_path,
        f'echo "$*" >> {calls}\n'
        f'case "$*" in\n'
        f"  *--scan-open*) cat {FIXTURES}/scan_open.json ;;\n"
        f"  */dev/sda) cat {FIXTURES}/standby.json; exit 2 ;;\n"
        f"  */dev/nvme0) cat {FIXTURES}/nvme_media_errors_samsung.json ;;\n"
        f"  *) cat {FIXTURES}/ata_healthy_wdc.json ;;\n"
        f"esac\n",
    )
    table = Table({"kind": "smart", "smartctl": str(program)}, "check[2]", "c.toml")
    collector = build_collector(table)
    out = await run_collector(collector, 10.0, name="smart")
    got = {r.check: r.state for r in out}
    assert got == {
        "smart/sda": State.OK,  # asleep
        "smart/bus/0@megaraid,0": State.OK,
        "smart/bus/0@megaraid,0/temperature": State.OK,
        "smart/nvme0": State.WARNING,
        "smart/nvme0/temperature": State.OK,
        "collector/smart": State.OK,
    }
    lines = calls.read_text().splitlines()
    assert lines[0] == "--scan-open --json"
    assert all("-n standby" in line for line in lines[1:])
    assert "-d megaraid,0 /dev/bus/0" in lines[2]
    # the scan is kept: a second collection does not open every disk again
    await collector.collect()
    assert sum("--scan-open" in line for line in calls.read_text().splitlines()) == 1


async def test_collector_configured_devices_ignore_and_garbage(tmp_path: Path) -> None:
    program = _fake_smartctl(tmp_path, "echo '<html>'\n")
    collector = SmartCollector(
        devices=["/dev/sda", "/dev/sdb"], ignore=["/dev/sdb"], smartctl=str(program)
    )
    out = await collector.collect()
    assert [(r.check, r.state) for r in out] == [("smart/sda", State.UNKNOWN)]


async def test_configured_device_behind_a_controller(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    program = _fake_smartctl(
        tmp_path, f'echo "$*" >> {calls}\ncat {FIXTURES}/ata_healthy_wdc.json\n'
    )
    collector = SmartCollector(devices=["/dev/bus/0@megaraid,3", "/dev/sda"], smartctl=str(program))
    out = await collector.collect()
    assert [r.check for r in out if r.state is State.OK][:1] == ["smart/bus/0@megaraid,3"]
    lines = calls.read_text().splitlines()
    assert lines == [
        "--json -a -n standby -d megaraid,3 /dev/bus/0",
        "--json -a -n standby /dev/sda",
    ]


async def test_no_smartctl_installed_is_no_readings(tmp_path: Path) -> None:
    collector = SmartCollector(smartctl=str(tmp_path / "absent"))
    assert await collector.collect() == []


async def test_a_hung_smartctl_is_unknown_for_that_disk(tmp_path: Path) -> None:
    program = _fake_smartctl(tmp_path, "exec sleep 1000\n")
    collector = SmartCollector(devices=["/dev/sda"], smartctl=str(program), timeout=0.3)
    out = await collector.collect()
    assert out[0].state is State.UNKNOWN and "more than 0.3 s" in out[0].text


def test_config() -> None:
    with pytest.raises(ConfigError, match=r"check\[0\].temperature_critical: must not be below"):
        build_collector(
            Table(
                {"kind": "smart", "temperature_warning": 60, "temperature_critical": 50},
                "check[0]",
                "c",
            )
        )
    with pytest.raises(ConfigError, match=r"check\[0\].devices: expected a list"):
        build_collector(Table({"kind": "smart", "devices": "/dev/sda"}, "check[0]", "c"))
