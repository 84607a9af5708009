"""Sensors from the kernel's hwmon class: temperatures, fans, voltages.

`read_tree(root)` reads the sysfs files (the only I/O); `assess(chips, limits)` is pure.
One reading per sensor, `hwmon/<chip>/<sensor>` (`hwmon/coretemp/temp1`): the sensor's
index, not its label, names the check, so that a driver update renaming labels does not
make new checks; the label is in the text. `hwmonN` numbers change between boots, so
the chip is named by its `name` file, with the device it sits on when two chips share a
name (two sockets, two NVMe drives).

Verdicts: the chip's own limits first (temp `_crit` CRITICAL, `_max` WARNING, the
`_alarm` / `_crit_alarm` flags; fan below `_min` or alarmed CRITICAL; voltage outside
`_min`/`_max` or alarmed WARNING, since boards often leave voltage limits unprogrammed);
else the collector's configured limits; else no verdict (state None, the value goes to
the check's thresholds). A sensor flagged `_fault` is UNKNOWN. Sensors that cannot be
real (temperatures below -60 °C or from 127 °C up: unconnected inputs read -128 or 127) are
left out, as are those matching `ignore`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from modem_drivers.configfile import Table

from .base import Reading, State
from .runner import register, run_blocking

_SENSOR_FILE = re.compile(r"^(?P<type>temp|fan|in)(?P<index>\d+)_(?P<item>[a-z_]+)$")
_PLAUSIBLE_TEMP = (-60.0, 127.0)
"""Unconnected inputs read -128 or 127 (the 8-bit limits); nothing that works is as hot."""
_SCALE = {"temp": 1000.0, "fan": 1.0, "in": 1000.0}
_UNIT = {"temp": "C", "fan": "RPM", "in": "V"}


@dataclass(frozen=True)
class Sensor:
    kind: str  # temp, fan, in
    index: int
    values: Mapping[str, str]
    """The sensor's files by item: "input", "max", "crit", "label", "alarm", ..."""

    @property
    def name(self) -> str:
        return f"{self.kind}{self.index}"

    def number(self, item: str) -> float | None:
        text = self.values.get(item)
        if text is None:
            return None
        try:
            return int(text.strip()) / _SCALE[self.kind]
        except ValueError:
            return None

    def flag(self, item: str) -> bool:
        return self.values.get(item, "0").strip() not in ("", "0")


@dataclass(frozen=True)
class Chip:
    name: str
    sensors: tuple[Sensor, ...]
    device: str | None = None
    """The basename of the device it sits on (`coretemp.0`, `0000:01:00.0`)."""


@dataclass(frozen=True)
class Limits:
    temperature_warning: float | None = None
    temperature_critical: float | None = None
    fan_minimum: float | None = None


def parse_chip(name: str, files: Mapping[str, str], device: str | None = None) -> Chip:
    """One chip from its sensor files (file name -> content). Pure."""
    grouped: dict[tuple[str, int], dict[str, str]] = {}
    for filename, content in files.items():
        match = _SENSOR_FILE.match(filename)
        if match:
            key = (match.group("type"), int(match.group("index")))
            grouped.setdefault(key, {})[match.group("item")] = content.strip()
    sensors = tuple(
        Sensor(kind, index, values)
        for (kind, index), values in sorted(grouped.items())
        if "input" in values
    )
    return Chip(name.strip() or "unknown", sensors, device)


def read_tree(root: Path) -> list[Chip]:
    """Every chip under `root` (/sys/class/hwmon). Blocking: run it in a thread."""
    chips = []
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        base = entry
        if not (base / "name").exists() and (base / "device" / "name").exists():
            base = entry / "device"  # old drivers keep their files on the device
        try:
            name = (base / "name").read_text()
        except OSError:
            continue
        files: dict[str, str] = {}
        for path in base.iterdir():
            if _SENSOR_FILE.match(path.name):
                try:
                    files[path.name] = path.read_text()
                except OSError:
                    continue  # some drivers refuse reads of absent inputs (EIO, ENXIO)
        device = None
        if (entry / "device").exists():
            device = os.path.basename(os.path.realpath(entry / "device"))
        chips.append(parse_chip(name, files, device))
    return chips


def chip_ids(chips: list[Chip]) -> list[str]:
    """A stable name per chip: its name, with its device when several share it."""
    counts: dict[str, int] = {}
    for chip in chips:
        counts[chip.name] = counts.get(chip.name, 0) + 1
    ids = []
    for index, chip in enumerate(chips):
        if counts[chip.name] == 1:
            ids.append(chip.name)
        else:
            ids.append(f"{chip.name}@{chip.device or index}")
    return ids


def assess(
    chips: list[Chip],
    limits: Limits | None = None,
    ignore: Sequence[str] = (),
    include: Sequence[str] = ("*",),
) -> list[Reading]:
    limits = limits or Limits()
    out = []
    for chip_id, chip in zip(chip_ids(chips), chips, strict=True):
        for sensor in chip.sensors:
            check = f"hwmon/{chip_id}/{sensor.name}"
            if not any(fnmatch.fnmatchcase(check, pattern) for pattern in include) or any(
                fnmatch.fnmatchcase(check, pattern) for pattern in ignore
            ):
                continue
            reading = _sensor(check, sensor, limits)
            if reading is not None:
                out.append(reading)
    return out


def _sensor(check: str, sensor: Sensor, limits: Limits) -> Reading | None:
    value = sensor.number("input")
    label = sensor.values.get("label", "").strip()
    attributes = {"label": label} if label else {}
    unit = _UNIT[sensor.kind]
    if value is None:
        return Reading(check, State.UNKNOWN, f"{label or sensor.name}: unreadable input")
    if sensor.flag("fault"):
        return Reading(check, State.UNKNOWN, f"{label or sensor.name}: sensor fault", value, unit)
    prefix = f"{label}: " if label else ""
    if sensor.kind == "temp":
        if not _PLAUSIBLE_TEMP[0] <= value < _PLAUSIBLE_TEMP[1]:
            return None
        state, why = _temperature(sensor, value, limits)
        text = f"{prefix}{value:g} °C{why}"
    elif sensor.kind == "fan":
        state, why = _fan(sensor, value, limits)
        text = f"{prefix}{value:g} RPM{why}"
    else:
        state, why = _voltage(sensor, value)
        text = f"{prefix}{value:g} V{why}"
    return Reading(check, state, text, value, unit, attributes)


def _limit(sensor: Sensor, item: str) -> float | None:
    limit = sensor.number(item)
    # chips without a programmed limit report 0 (or -273.15 °C): not a limit
    return limit if limit is not None and limit > 0 else None


def _temperature(sensor: Sensor, value: float, limits: Limits) -> tuple[State | None, str]:
    crit = _limit(sensor, "crit")
    high = _limit(sensor, "max")
    if sensor.flag("crit_alarm") or (crit is not None and value >= crit):
        return State.CRITICAL, f" (critical {crit:g} °C)" if crit else " (critical alarm)"
    if sensor.flag("alarm") or sensor.flag("max_alarm") or (high is not None and value >= high):
        return State.WARNING, f" (high {high:g} °C)" if high else " (alarm)"
    if crit is not None or high is not None:
        return State.OK, ""
    if limits.temperature_critical is not None and value >= limits.temperature_critical:
        return State.CRITICAL, f" (critical {limits.temperature_critical:g} °C)"
    if limits.temperature_warning is not None and value >= limits.temperature_warning:
        return State.WARNING, f" (high {limits.temperature_warning:g} °C)"
    if limits.temperature_warning is not None or limits.temperature_critical is not None:
        return State.OK, ""
    return None, ""


def _fan(sensor: Sensor, value: float, limits: Limits) -> tuple[State | None, str]:
    low = _limit(sensor, "min") or limits.fan_minimum
    if sensor.flag("alarm") or sensor.flag("min_alarm") or (low is not None and value < low):
        return State.CRITICAL, f" (minimum {low:g} RPM)" if low else " (alarm)"
    return (State.OK, "") if low is not None else (None, "")


def _voltage(sensor: Sensor, value: float) -> tuple[State | None, str]:
    low, high = sensor.number("min"), _limit(sensor, "max")
    if sensor.flag("alarm") or sensor.flag("min_alarm") or sensor.flag("max_alarm"):
        return State.WARNING, " (alarm)"
    if high is not None and value > high:
        return State.WARNING, f" (above {high:g} V)"
    if high is not None and low is not None and value < low:
        return State.WARNING, f" (below {low:g} V)"
    return (State.OK, "") if high is not None else (None, "")


@dataclass
class HwmonCollector:
    """`kind = "hwmon"`: keys `root` (default /sys/class/hwmon), `include`, `ignore`
    (globs of check names: `include = ["hwmon/*/fan*"]` for a check of the fans
    alone), `temperature_warning`, `temperature_critical`, `fan_minimum` (used where
    the chip has no limit of its own), `timeout` (sysfs reads)."""

    kind: ClassVar[str] = "hwmon"
    root: Path = Path("/sys/class/hwmon")
    include: list[str] = field(default_factory=lambda: ["*"])
    ignore: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    timeout: float = 5.0

    @classmethod
    def from_table(cls, table: Table) -> Self:
        limits = Limits(
            temperature_warning=table.number("temperature_warning", float, None),
            temperature_critical=table.number("temperature_critical", float, None),
            fan_minimum=table.number("fan_minimum", float, None, minimum=0),
        )
        return cls(
            root=table.path_value("root", "/sys/class/hwmon"),
            include=table.strings("include", ["*"]),
            ignore=table.strings("ignore", []),
            limits=limits,
            timeout=table.duration("timeout", 5.0, minimum=0.1, maximum=60.0),
        )

    async def collect(self) -> list[Reading]:
        # a sysfs read can block in a driver talking to a slow bus (I2C, ACPI)
        chips = await run_blocking(lambda: read_tree(self.root), self.timeout)
        return assess(chips, self.limits, self.ignore, self.include)


register("hwmon")(HwmonCollector.from_table)
