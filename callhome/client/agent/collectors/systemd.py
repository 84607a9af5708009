"""systemd: failed units, from `systemctl list-units --failed --output=json`.

One check per unit, `systemd/<unit>`: WARNING (or the configured `state`) while it is
failed. A unit that was failed and no longer is reads OK from then on, so every failure
has its recovery (a unit that is not failed is not listed at all, and a check without a
reading would keep its last state). `include` / `exclude` are globs on unit names.

systemd before 246 has no JSON output: then the plain table (`--plain --no-legend`)
is read instead. A system not booted with systemd has no such checks (no readings).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from modem_drivers.configfile import Table

from .base import Reading, State
from .runner import CommandNotFound, register, run_command


class SystemdError(ValueError):
    """systemctl's output is neither its JSON nor its plain table."""


@dataclass(frozen=True)
class Unit:
    name: str
    load: str
    active: str
    sub: str
    description: str


def parse_json_units(text: str) -> list[Unit]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SystemdError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise SystemdError("not a list of units")
    out = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("unit"), str):
            raise SystemdError("a unit without a name")
        fields = [str(item.get(key, "")) for key in ("load", "active", "sub", "description")]
        out.append(Unit(item["unit"], *fields))
    return out


def parse_plain_units(text: str) -> list[Unit]:
    out = []
    for line in text.splitlines():
        words = line.replace("●", " ").split(None, 4)
        if not words:
            continue
        if len(words) < 4 or "." not in words[0]:
            raise SystemdError(f"not a unit line: {line[:60]!r}")
        out.append(Unit(words[0], words[1], words[2], words[3], words[4] if len(words) > 4 else ""))
    return out


def wanted(unit: str, include: list[str], exclude: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(unit, p) for p in include) and not any(
        fnmatch.fnmatchcase(unit, p) for p in exclude
    )


def assess(
    failed: list[Unit], seen: set[str], state: State = State.WARNING
) -> tuple[list[Reading], set[str]]:
    """Readings for the failed units and for those seen failed before (now OK), and the
    new set of units seen failed."""
    out = []
    now = set()
    for unit in failed:
        if unit.active != "failed" and unit.sub != "failed":
            continue
        now.add(unit.name)
        text = f"failed ({unit.description})" if unit.description else "failed"
        out.append(Reading(f"systemd/{unit.name}", state, text, attributes={"sub": unit.sub}))
    out.extend(
        Reading(f"systemd/{name}", State.OK, "no longer failed") for name in sorted(seen - now)
    )
    return out, seen | now


@dataclass
class SystemdCollector:
    """`kind = "systemd"`: keys `include`, `exclude` (globs of unit names), `state`
    ("warning" or "critical": the state of a failed unit), `systemctl`, `timeout`."""

    kind: ClassVar[str] = "systemd"
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    state: State = State.WARNING
    systemctl: str = "systemctl"
    timeout: float = 10.0
    booted: Path = Path("/run/systemd/system")
    """Exists when systemd is the init system (what sd_booted() tests)."""
    _seen: set[str] = field(default_factory=set)

    @classmethod
    def from_table(cls, table: Table) -> Self:
        state = table.get("state", str, "warning")
        if state not in ("warning", "critical"):
            raise table.error("state", 'expected "warning" or "critical"')
        return cls(
            include=table.strings("include", ["*"]),
            exclude=table.strings("exclude", []),
            state=State.WARNING if state == "warning" else State.CRITICAL,
            systemctl=table.get("systemctl", str, "systemctl"),
            timeout=table.duration("timeout", 10.0, minimum=0.5, maximum=300.0),
        )

    async def collect(self) -> list[Reading]:
        if not self.booted.exists():
            return []  # systemctl may be installed, but systemd does not run here
        base = [self.systemctl, "list-units", "--failed", "--no-pager"]
        try:
            result = await run_command([*base, "--output=json"], self.timeout)
        except CommandNotFound:
            return []  # not a systemd system
        try:
            units = parse_json_units(result.text)
        except SystemdError:
            plain = await run_command([*base, "--plain", "--no-legend"], self.timeout)
            if plain.returncode != 0:
                raise SystemdError(f"systemctl exit {plain.returncode}") from None
            units = parse_plain_units(plain.text)
        units = [u for u in units if wanted(u.name, self.include, self.exclude)]
        readings, self._seen = assess(units, self._seen, self.state)
        return readings


register("systemd")(SystemdCollector.from_table)
