"""SMART: disk health from `smartctl --json -a -n standby` (smartmontools >= 7).

Pure core: `assess(document, limits)` turns one smartctl JSON document into the
readings of one disk; the shell runs smartctl, one disk after the other (a disk bus is
no place for parallel probes), each with its own timeout.

Verdicts (docs/agent-collectors.md has the table):

- asleep (`-n standby`: "Device is in STANDBY mode", exit 2): OK, "standby, not
  checked". Recognised from smartctl's message, not from the exit code: a device
  that cannot be opened exits 2 as well;
- exit bits 0-1 (command line, open failed), no JSON, SMART unavailable: UNKNOWN;
- bit 3 (SMART says FAILING) or `smart_status.passed == false`: CRITICAL;
- bit 4 (a pre-fail attribute at or below its threshold now): CRITICAL, the vendor's
  own threshold on a pre-fail attribute means failure is expected soon;
- bit 5 (an attribute was below threshold in the past): WARNING;
- bits 6-7 (error log, self-test log have errors): WARNING;
- bit 2 (some command failed) alone: noted in the text, the rest is judged on what was
  read; if nothing at all was read, UNKNOWN;
- reallocated (5), pending (197), offline-uncorrectable (198) sectors at or above
  `sectors_warning` (default 1): WARNING; at or above `sectors_critical` (if set):
  CRITICAL;
- NVMe: `critical_warning` != 0: CRITICAL (its bits named), media errors: WARNING,
  `percentage_used` >= `wear_warning` (default 90): WARNING;
- temperature: a reading of its own, `smart/<disk>/temperature`, WARNING from
  `temperature_warning` (default 55 °C), CRITICAL from `temperature_critical` (65 °C).
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import structlog

from modem_drivers.configfile import Table

from .base import Reading, State
from .runner import CommandNotFound, register, run_command

log = structlog.get_logger("callhome.agent.smart")

BIT_COMMAND_LINE = 1 << 0
BIT_OPEN_FAILED = 1 << 1
BIT_COMMAND_FAILED = 1 << 2
BIT_FAILING = 1 << 3
BIT_PREFAIL_NOW = 1 << 4
BIT_PREFAIL_PAST = 1 << 5
BIT_ERROR_LOG = 1 << 6
BIT_SELFTEST_LOG = 1 << 7

SECTOR_ATTRIBUTES = {5: "reallocated", 197: "pending", 198: "uncorrectable"}

NVME_CRITICAL_WARNING = {
    0: "spare below threshold",
    1: "temperature",
    2: "reliability degraded",
    3: "read-only",
    4: "volatile memory backup failed",
    5: "persistent memory read-only",
}

_ASLEEP_WORDS = ("STANDBY", "SLEEP", "IDLE")


class SmartError(ValueError):
    """smartctl's output is not a smartctl JSON document."""


@dataclass(frozen=True)
class Limits:
    sectors_warning: int = 1
    sectors_critical: int | None = None
    temperature_warning: float = 55.0
    temperature_critical: float = 65.0
    wear_warning: int = 90


def parse_json(text: str) -> dict[str, Any]:
    """The smartctl document in `text`; SmartError if it is not one."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SmartError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("smartctl"), dict):
        raise SmartError("not smartctl JSON (no 'smartctl' object)")
    return document


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def messages(document: Mapping[str, Any]) -> list[str]:
    return [
        m["string"]
        for m in _list(_dict(document.get("smartctl")).get("messages"))
        if isinstance(m, dict) and isinstance(m.get("string"), str)
    ]


def asleep(document: Mapping[str, Any]) -> str | None:
    """ "standby" (or "sleep", "idle") when `-n standby` left the disk alone."""
    for text in messages(document):
        upper = text.upper()
        if upper.startswith("DEVICE IS IN ") and "MODE" in upper:
            for word in _ASLEEP_WORDS:
                if word in upper:
                    return word.lower()
    mode = document.get("power_mode")
    name = _dict(mode).get("name") if isinstance(mode, dict) else mode
    if isinstance(name, str) and name.upper() in _ASLEEP_WORDS:
        return name.lower()
    return None


def disk_check(device: str, dtype: str | None = None) -> str:
    name = device.removeprefix("/dev/")
    return f"smart/{name}@{dtype}" if dtype and "," in dtype else f"smart/{name}"


def assess(document: Mapping[str, Any], check: str, limits: Limits = Limits()) -> list[Reading]:
    """The readings of one disk from its smartctl JSON document (already parsed)."""
    status = _int(_dict(document.get("smartctl")).get("exit_status"))
    if status is None:
        return [Reading(check, State.UNKNOWN, "smartctl gave no exit status")]
    attributes: dict[str, str] = {}
    for key in ("model_name", "serial_number", "firmware_version"):
        if isinstance(document.get(key), str):
            attributes[key.removesuffix("_name").removesuffix("_number")] = document[key]
    sleeping = asleep(document)
    if sleeping:
        return [Reading(check, State.OK, f"{sleeping}, not checked", attributes=attributes)]
    first_message = next(iter(messages(document)), "")
    if status & BIT_COMMAND_LINE:
        why = f": {first_message}" if first_message else ""
        return [Reading(check, State.UNKNOWN, f"smartctl refused its command line{why}")]
    if status & BIT_OPEN_FAILED:
        why = first_message or "cannot open the device"
        return [Reading(check, State.UNKNOWN, why, attributes=attributes)]
    support = _dict(document.get("smart_support"))
    if support.get("available") is False or support.get("enabled") is False:
        return [Reading(check, State.UNKNOWN, "SMART not available or not enabled")]

    problems: list[tuple[State, str]] = []
    smart_status = _dict(document.get("smart_status"))
    passed = smart_status.get("passed")
    if status & BIT_FAILING or passed is False:
        problems.append((State.CRITICAL, "SMART says FAILING"))
    table = [
        a
        for a in _list(_dict(document.get("ata_smart_attributes")).get("table"))
        if isinstance(a, dict)
    ]
    now = [a for a in table if a.get("when_failed") == "now"]
    past = [a for a in table if a.get("when_failed") == "past"]
    if status & BIT_PREFAIL_NOW or now:
        names = ", ".join(str(a.get("name")) for a in now) or "a pre-fail attribute"
        problems.append((State.CRITICAL, f"{names} at or below threshold"))
    if status & BIT_PREFAIL_PAST or past:
        names = ", ".join(str(a.get("name")) for a in past) or "an attribute"
        problems.append((State.WARNING, f"{names} below threshold in the past"))
    if status & BIT_ERROR_LOG:
        count = _int(_dict(_dict(document.get("ata_smart_error_log")).get("summary")).get("count"))
        problems.append((State.WARNING, f"error log: {count} errors" if count else "error log"))
    if status & BIT_SELFTEST_LOG:
        problems.append((State.WARNING, "self-test log has errors"))

    for attribute in table:
        label = SECTOR_ATTRIBUTES.get(_int(attribute.get("id")) or -1)
        raw = _int(_dict(attribute.get("raw")).get("value"))
        if label is None or raw is None:
            continue
        # the raw value of these three is a plain count on every drive we know of,
        # but vendors pack other data in the upper bytes of some: the low 32 bits
        raw &= 0xFFFFFFFF
        attributes[label] = str(raw)
        if limits.sectors_critical is not None and raw >= limits.sectors_critical:
            problems.append((State.CRITICAL, f"{raw} {label} sectors"))
        elif raw >= limits.sectors_warning:
            problems.append((State.WARNING, f"{raw} {label} sectors"))

    nvme = document.get("nvme_smart_health_information_log")
    if isinstance(nvme, dict):
        problems.extend(_nvme(nvme, limits, attributes))

    hours = _int(_dict(document.get("power_on_time")).get("hours"))
    if hours is not None:
        attributes["power_on_hours"] = str(hours)
    if status & BIT_COMMAND_FAILED:
        attributes["note"] = "some SMART commands failed"
        if passed is None and not table and not isinstance(nvme, dict):
            return [Reading(check, State.UNKNOWN, "SMART commands failed, nothing read")]
    if passed is None and not table and not isinstance(nvme, dict) and not problems:
        return [Reading(check, State.UNKNOWN, "no SMART health in smartctl's answer")]

    out: list[Reading] = []
    if problems:
        state = max(s for s, _ in problems)
        text = "; ".join(t for s, t in sorted(problems, key=lambda p: -p[0]))
    else:
        state, text = State.OK, "healthy"
    out.append(Reading(check, state, text, attributes=attributes))
    temperature = _int(_dict(document.get("temperature")).get("current"))
    if temperature is not None:
        if temperature >= limits.temperature_critical:
            temp_state = State.CRITICAL
        elif temperature >= limits.temperature_warning:
            temp_state = State.WARNING
        else:
            temp_state = State.OK
        out.append(
            Reading(f"{check}/temperature", temp_state, f"{temperature} °C", temperature, "C")
        )
    return out


def _nvme(
    log_page: Mapping[str, Any], limits: Limits, attributes: dict[str, str]
) -> list[tuple[State, str]]:
    problems: list[tuple[State, str]] = []
    warning = _int(log_page.get("critical_warning")) or 0
    if warning:
        names = [text for bit, text in NVME_CRITICAL_WARNING.items() if warning & (1 << bit)]
        problems.append(
            (State.CRITICAL, f"NVMe critical warning: {', '.join(names) or hex(warning)}")
        )
    media = _int(log_page.get("media_errors"))
    if media:
        attributes["media_errors"] = str(media)
        problems.append((State.WARNING, f"{media} media errors"))
    used = _int(log_page.get("percentage_used"))
    if used is not None:
        attributes["percentage_used"] = str(used)
        if used >= limits.wear_warning:
            problems.append((State.WARNING, f"{used}% of rated endurance used"))
    return problems


def parse_scan(text: str) -> list[tuple[str, str | None, str | None]]:
    """(device, type, open error) of each device `smartctl --scan-open --json` lists."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SmartError(f"scan: not JSON: {exc}") from None
    out = []
    for item in _list(_dict(document).get("devices")):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            dtype = item.get("type") if isinstance(item.get("type"), str) else None
            error = item.get("open_error") if isinstance(item.get("open_error"), str) else None
            out.append((item["name"], dtype, error))
    return out


@dataclass
class SmartCollector:
    """`kind = "smart"`: keys `devices` (default: what `smartctl --scan-open` finds,
    scanned again every `rescan`; `DEVICE@TYPE` passes `-d TYPE`), `ignore` (globs of
    device names), `smartctl` (the program), `timeout` (per disk), and the limits of
    `Limits`."""

    kind: ClassVar[str] = "smart"
    devices: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    smartctl: str = "smartctl"
    timeout: float = 20.0
    rescan: float = 86400.0
    limits: Limits = field(default_factory=Limits)
    _scanned: list[tuple[str, str | None]] | None = None
    _scanned_at: float = 0.0

    @classmethod
    def from_table(cls, table: Table) -> Self:
        sectors_critical = table.number("sectors_critical", int, None, minimum=1)
        limits = Limits(
            sectors_warning=table.number("sectors_warning", int, 1, minimum=1),
            sectors_critical=sectors_critical,
            temperature_warning=table.number("temperature_warning", float, 55.0),
            temperature_critical=table.number("temperature_critical", float, 65.0),
            wear_warning=table.number("wear_warning", int, 90, minimum=1, maximum=255),
        )
        if limits.temperature_critical < limits.temperature_warning:
            raise table.error("temperature_critical", "must not be below temperature_warning")
        return cls(
            devices=table.strings("devices", []),
            ignore=table.strings("ignore", []),
            smartctl=table.get("smartctl", str, "smartctl"),
            timeout=table.duration("timeout", 20.0, minimum=1.0, maximum=600.0),
            rescan=table.duration("rescan", 86400.0, minimum=60.0),
            limits=limits,
        )

    async def _targets(self) -> list[tuple[str, str | None]]:
        if self.devices:
            # "/dev/bus/0@megaraid,3": a device behind a controller, with smartctl's -d
            return [(d.partition("@")[0], d.partition("@")[2] or None) for d in self.devices]
        # a scan opens every disk; once a day is enough to notice a new one
        now = time.monotonic()
        if self._scanned is None or now - self._scanned_at >= self.rescan:
            result = await run_command([self.smartctl, "--scan-open", "--json"], self.timeout)
            found = []
            for device, dtype, error in parse_scan(result.text):
                if error:
                    log.info("smart: device skipped", device=device, error=error)
                    continue
                found.append((device, dtype))
            self._scanned, self._scanned_at = found, now
        return list(self._scanned)

    async def collect(self) -> list[Reading]:
        try:
            targets = await self._targets()
        except CommandNotFound:
            return []  # smartmontools not installed: nothing to say
        out: list[Reading] = []
        for device, dtype in targets:
            if any(fnmatch.fnmatchcase(device, pattern) for pattern in self.ignore):
                continue
            out.extend(await self._one(device, dtype))
        return out

    async def _one(self, device: str, dtype: str | None) -> list[Reading]:
        check = disk_check(device, dtype)
        argv: Sequence[str] = [self.smartctl, "--json", "-a", "-n", "standby"]
        if dtype:
            argv = [*argv, "-d", dtype]
        try:
            result = await run_command([*argv, device], self.timeout)
        except CommandNotFound as exc:
            return [Reading(check, State.UNKNOWN, str(exc))]
        if result.timed_out:
            return [Reading(check, State.UNKNOWN, f"smartctl took more than {self.timeout:g} s")]
        try:
            document = parse_json(result.text)
        except SmartError as exc:
            return [Reading(check, State.UNKNOWN, f"smartctl: {exc}")]
        return assess(document, check, self.limits)


register("smart")(SmartCollector.from_table)
