"""hwmon sensors from a sysfs tree built in tmp_path (fixtures/hwmon/server.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callhome.client.agent.collectors import hwmon
from callhome.client.agent.collectors.base import Reading, State
from callhome.client.agent.collectors.hwmon import HwmonCollector, Limits
from callhome.client.agent.collectors.runner import build_collector, run_collector
from modem_drivers.configfile import Table

FIXTURE = Path(__file__).parent / "fixtures" / "hwmon" / "server.json"


def build_tree(root: Path, description: Path = FIXTURE) -> Path:
    """/sys/class/hwmon as the kernel lays it out: hwmonN symlinks into a device tree."""
    spec = json.loads(description.read_text())
    devices = root / "devices"
    hwmon_class = root / "class" / "hwmon"
    hwmon_class.mkdir(parents=True)
    for entry, chip in spec.items():
        if entry.startswith("_"):
            continue
        device = devices / chip["device"]
        target = device / "hwmon" / entry
        target.mkdir(parents=True)
        (target / "device").symlink_to(device)
        files_at = device if chip.get("old_layout") else target
        (files_at / "name").write_text(chip["name"] + "\n")
        for name, content in chip["files"].items():
            (files_at / name).write_text(content + "\n")
        (hwmon_class / entry).symlink_to(target)
    return hwmon_class


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path)


def by_check(readings: list[Reading]) -> dict[str, Reading]:
    return {r.check: r for r in readings}


def test_read_tree_names_chips_stably(tree: Path) -> None:
    chips = hwmon.read_tree(tree)
    assert hwmon.chip_ids(chips) == [
        "acpitz",
        "coretemp@coretemp.0",
        "coretemp@coretemp.1",
        "nvme",
        "nct6775",
        "it87",
    ]


def test_verdicts_from_the_chips_own_limits(tree: Path) -> None:
    got = by_check(hwmon.assess(hwmon.read_tree(tree)))
    states = {check: r.state for check, r in got.items()}
    assert states == {
        "hwmon/acpitz/temp1": State.OK,
        "hwmon/coretemp@coretemp.0/temp1": State.OK,
        "hwmon/coretemp@coretemp.0/temp2": State.OK,
        "hwmon/coretemp@coretemp.1/temp1": State.CRITICAL,
        "hwmon/nvme/temp1": State.OK,
        "hwmon/nvme/temp2": State.OK,  # a silly max (65261 °C) is a limit all the same
        "hwmon/nct6775/in0": State.OK,
        "hwmon/nct6775/in1": State.WARNING,  # above its max
        "hwmon/nct6775/in2": State.WARNING,  # the chip's alarm
        "hwmon/nct6775/in3": None,  # limits 0/0: not programmed
        "hwmon/nct6775/fan1": State.OK,
        "hwmon/nct6775/fan2": None,  # unconnected header, no minimum
        "hwmon/nct6775/fan3": State.CRITICAL,  # below its minimum
        "hwmon/nct6775/temp1": None,  # max 0: not a limit
        "hwmon/nct6775/temp7": None,
        "hwmon/nct6775/temp9": State.UNKNOWN,  # fault
        "hwmon/it87/temp1": None,  # old layout: files on the device
        "hwmon/it87/fan1": None,
    }
    # -128 °C and 127 °C are unconnected inputs, left out
    assert "hwmon/nct6775/temp2" not in got and "hwmon/nct6775/temp8" not in got
    hot = got["hwmon/coretemp@coretemp.1/temp1"]
    assert hot.text == "Package id 1: 101 °C (critical 100 °C)"
    assert (hot.value, hot.unit, hot.attributes["label"]) == (101.0, "C", "Package id 1")
    assert got["hwmon/nct6775/in1"].text == "1.832 V (above 1.7 V)"
    assert got["hwmon/nct6775/fan3"].text == "140 RPM (minimum 300 RPM)"


def test_configured_limits_apply_where_the_chip_has_none(tree: Path) -> None:
    limits = Limits(temperature_warning=50, temperature_critical=90, fan_minimum=500)
    got = by_check(hwmon.assess(hwmon.read_tree(tree), limits))
    assert got["hwmon/it87/temp1"].state is State.WARNING  # 51 °C
    assert got["hwmon/nct6775/temp1"].state is State.OK
    assert got["hwmon/nct6775/fan2"].state is State.CRITICAL  # 0 RPM < 500
    assert got["hwmon/it87/fan1"].state is State.OK
    # the chip's own limit wins over the configured one
    assert got["hwmon/coretemp@coretemp.0/temp1"].state is State.OK


def test_ignore(tree: Path) -> None:
    got = by_check(hwmon.assess(hwmon.read_tree(tree), ignore=["hwmon/nct6775/*"]))
    assert not any(check.startswith("hwmon/nct6775/") for check in got)


def test_include_keeps_only_the_fans(tree: Path) -> None:
    got = by_check(hwmon.assess(hwmon.read_tree(tree), include=["hwmon/*/fan*"]))
    assert set(got) == {
        "hwmon/nct6775/fan1",
        "hwmon/nct6775/fan2",
        "hwmon/nct6775/fan3",
        "hwmon/it87/fan1",
    }


def test_garbage_in_a_sensor_file_is_unknown() -> None:
    chip = hwmon.parse_chip("x", {"temp1_input": "banana", "temp2_input": "30000"})
    got = by_check(hwmon.assess([chip]))
    assert got["hwmon/x/temp1"].state is State.UNKNOWN
    assert got["hwmon/x/temp2"].state is None


def test_no_hwmon_is_no_readings(tmp_path: Path) -> None:
    assert hwmon.read_tree(tmp_path / "absent") == []


async def test_collector(tree: Path) -> None:
    collector = build_collector(
        Table({"kind": "hwmon", "root": str(tree), "ignore": ["*/in*"]}, "check[0]", "c")
    )
    assert isinstance(collector, HwmonCollector)
    out = await run_collector(collector, 5.0, name="hwmon")
    got = by_check(out)
    assert got["collector/hwmon"].state is State.OK
    assert got["hwmon/nct6775/fan3"].state is State.CRITICAL
    assert not any("/in" in check for check in got)
