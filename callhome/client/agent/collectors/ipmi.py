"""IPMI: the BMC's sensors (`ipmitool sdr elist`) and its System Event Log
(`ipmitool sel elist`).

`sdr elist` rather than `ipmitool sensor`: it carries the same threshold status
(ok / nc / cr / nr, computed against the BMC's own thresholds) and, for discrete
sensors, their states in words ("Presence detected, Failure detected"), where
`sensor` prints a bare hex mask. The words matter: a power supply that failed keeps
the status `ok` on real BMCs (the fixture from a ProLiant shows it).

Verdicts, per sensor `ipmi/<name>` (`ipmi/<name>@<id>` when two share a name):
status cr / nr (and their lower/upper forms): CRITICAL; nc: WARNING; ns (no reading,
disabled): left out; then the state words: CRITICAL_WORDS, WARNING_WORDS below. The
SEL is one check, `ipmi/sel`: WARNING while it holds asserted events whose words are
bad (it is a log: the live sensors say what is wrong now; clearing the SEL is the
acknowledgement), OK otherwise.

Without ipmitool, FreeIPMI's `ipmi-sensors --output-sensor-state` is used for the
sensors (its own Nominal / Warning / Critical verdict, plus the same state words);
the SEL is read through ipmitool only.

No tool, or no BMC (/dev/ipmi0 missing): no readings at all, not UNKNOWN (most
machines have no BMC; `required = true` makes that UNKNOWN for those that must).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Self

from modem_drivers.configfile import Table

from .base import Reading, State
from .runner import CommandNotFound, register, run_command

CRITICAL_WORDS = (
    "failure detected",
    "ac lost",
    "input lost",
    "uncorrectable",
    "non-recoverable",
    "insufficient resources",
    "transition to critical",
    "drive fault",
    "thermal trip",
    "fault status asserted",
)
WARNING_WORDS = (
    "predictive failure",
    "redundancy lost",
    "redundancy degraded",
    "non-redundant",
    "correctable ecc",
    "limit reached",
    "transition to non-critical",
    "config error",
    "in critical array",
    "in failed array",
    "rebuild",
)
_STATUS = {
    "ok": State.OK,
    "nc": State.WARNING,
    "lnc": State.WARNING,
    "unc": State.WARNING,
    "cr": State.CRITICAL,
    "lcr": State.CRITICAL,
    "ucr": State.CRITICAL,
    "nr": State.CRITICAL,
    "lnr": State.CRITICAL,
    "unr": State.CRITICAL,
}
_UNITS = {
    "degrees c": "C",
    "c": "C",
    "percent": "%",
    "watts": "W",
    "volts": "V",
    "amps": "A",
    "rpm": "RPM",
}
_READING = re.compile(r"^(?P<value>-?\d+(?:\.\d+)?)\s+(?P<unit>[A-Za-z ]+?)\s*$")


class IpmiError(ValueError):
    """ipmitool's output is not what it prints."""


@dataclass(frozen=True)
class SdrEntry:
    name: str
    sensor_id: str
    status: str
    entity: str
    text: str


def parse_sdr(text: str) -> list[SdrEntry]:
    """The lines of `ipmitool sdr elist` (5 columns separated by `|`)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) != 5 or not cells[0]:
            raise IpmiError(f"not an sdr line: {line[:60]!r}")
        out.append(SdrEntry(*cells))
    return out


def _words_state(words: str) -> State:
    lower = words.lower()
    if any(w in lower for w in CRITICAL_WORDS):
        return State.CRITICAL
    if any(w in lower for w in WARNING_WORDS):
        return State.WARNING
    return State.OK


def sensor_readings(entries: list[SdrEntry]) -> list[Reading]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.name] = counts.get(entry.name, 0) + 1
    out = []
    for entry in entries:
        status = entry.status.lower()
        if status == "ns":
            continue  # no reading: absent or disabled sensor
        check = f"ipmi/{entry.name}"
        if counts[entry.name] > 1:
            check += f"@{entry.sensor_id}"
        value = unit = None
        parts = [part.strip() for part in entry.text.split(",") if part.strip()]
        if parts and (number := _READING.match(parts[0])):
            value = float(number.group("value"))
            unit = _UNITS.get(number.group("unit").lower(), number.group("unit"))
        state = _STATUS.get(status)
        if state is None:
            out.append(Reading(check, State.UNKNOWN, f"unknown status {entry.status!r}"))
            continue
        state = max(state, _words_state(entry.text))
        text = entry.text or entry.status
        out.append(Reading(check, state, text, value, unit, {"id": entry.sensor_id}))
    return out


_FREEIPMI_STATES = {"nominal": State.OK, "warning": State.WARNING, "critical": State.CRITICAL}
FREEIPMI_ARGS = (
    "--output-sensor-state",
    "--comma-separated-output",
    "--no-header-output",
    "--ignore-not-available-sensors",
)


def parse_freeipmi(text: str) -> list[Reading]:
    """`ipmi-sensors` with FREEIPMI_ARGS: `ID,Name,Type,State,Reading,Units,Event`,
    the event a list of quoted words ('OK', 'Presence detected' 'Failure detected')."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < 7 or not cells[1]:
            raise IpmiError(f"not an ipmi-sensors line: {line[:60]!r}")
        # a name may hold a comma: the last four columns are fixed
        sensor_id, name = cells[0], ",".join(cells[1:-5])
        rows.append((sensor_id, name, *cells[-5:]))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    out = []
    for sensor_id, name, _kind, state_text, reading, units, event in rows:
        if state_text.upper() == "N/A":
            continue
        check = f"ipmi/{name}" + (f"@{sensor_id}" if counts[name] > 1 else "")
        words = event.replace("'", "").strip()
        state = _FREEIPMI_STATES.get(state_text.lower())
        if state is None:
            out.append(Reading(check, State.UNKNOWN, f"unknown state {state_text!r}"))
            continue
        state = max(state, _words_state(words))
        value = unit = None
        try:
            value = float(reading)
            unit = _UNITS.get(units.lower(), units) if units.upper() != "N/A" else None
        except ValueError:
            pass
        text = f"{reading} {units}" if value is not None else words
        if value is not None and words and words != "OK":
            text = f"{text}, {words}"
        out.append(Reading(check, state, text, value, unit, {"id": sensor_id}))
    return out


@dataclass(frozen=True)
class SelEvent:
    number: str
    when: str
    sensor: str
    description: str
    direction: str


def parse_sel(text: str) -> list[SelEvent]:
    """The lines of `ipmitool sel elist` / `sel list`; "SEL has no entries" is none."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("SEL has no entries"):
            continue
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) < 5:
            raise IpmiError(f"not a SEL line: {line[:60]!r}")
        number, date, time_of_day, sensor, description = cells[:5]
        direction = cells[5] if len(cells) > 5 else "Asserted"
        out.append(SelEvent(number, f"{date} {time_of_day}", sensor, description, direction))
    return out


def sel_reading(events: list[SelEvent]) -> Reading:
    bad = [
        e
        for e in events
        if e.direction.lower() == "asserted" and _words_state(e.description) is not State.OK
    ]
    if not bad:
        return Reading("ipmi/sel", State.OK, f"{len(events)} entries, none bad", len(events))
    last = bad[-1]
    text = f"{len(bad)} problem events; last {last.when} {last.sensor}: {last.description}"
    return Reading("ipmi/sel", State.WARNING, text, len(events))


@dataclass
class IpmiCollector:
    """`kind = "ipmi"`: keys `ipmitool`, `ipmi_sensors` (the programs), `sel` (read the
    SEL through ipmitool, default true), `required` (no BMC is UNKNOWN, default false),
    `timeout`."""

    kind: ClassVar[str] = "ipmi"
    ipmitool: str = "ipmitool"
    ipmi_sensors: str = "ipmi-sensors"
    sel: bool = True
    required: bool = False
    timeout: float = 30.0

    @classmethod
    def from_table(cls, table: Table) -> Self:
        return cls(
            ipmitool=table.get("ipmitool", str, "ipmitool"),
            ipmi_sensors=table.get("ipmi_sensors", str, "ipmi-sensors"),
            sel=table.get("sel", bool, True),
            required=table.get("required", bool, False),
            timeout=table.duration("timeout", 30.0, minimum=1.0, maximum=600.0),
        )

    async def collect(self) -> list[Reading]:
        try:
            result = await run_command([self.ipmitool, "sdr", "elist"], self.timeout)
        except CommandNotFound:
            return await self._freeipmi()
        if result.timed_out:
            return [Reading("ipmi/bmc", State.UNKNOWN, f"no answer in {self.timeout:g} s")]
        if result.returncode != 0:
            why = result.stderr.decode("utf-8", "replace").strip().splitlines()
            return self._absent(why[0] if why else f"ipmitool exit {result.returncode}")
        out = sensor_readings(parse_sdr(result.text))
        if self.sel:
            sel = await run_command([self.ipmitool, "sel", "elist"], self.timeout)
            if sel.returncode == 0:
                out.append(sel_reading(parse_sel(sel.text)))
            else:
                out.append(Reading("ipmi/sel", State.UNKNOWN, "cannot read the SEL"))
        return out

    async def _freeipmi(self) -> list[Reading]:
        try:
            result = await run_command([self.ipmi_sensors, *FREEIPMI_ARGS], self.timeout)
        except CommandNotFound:
            return self._absent("neither ipmitool nor FreeIPMI is installed")
        if result.timed_out:
            return [Reading("ipmi/bmc", State.UNKNOWN, f"no answer in {self.timeout:g} s")]
        if result.returncode != 0:
            why = result.stderr.decode("utf-8", "replace").strip().splitlines()
            return self._absent(why[0] if why else f"ipmi-sensors exit {result.returncode}")
        return parse_freeipmi(result.text)

    def _absent(self, why: str) -> list[Reading]:
        return [Reading("ipmi/bmc", State.UNKNOWN, why)] if self.required else []


register("ipmi")(IpmiCollector.from_table)
