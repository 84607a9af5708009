"""What every collector gives the agent, and the one interface a collector implements.

A collector looks at one part of the system (md arrays, disks, sensors, a plugin) and
returns readings. It never decides when to call: the agent's check engine turns readings
into states with hysteresis, `for` durations and flap detection. A collector that cannot
tell (a hang, a crash, output it cannot parse) says UNKNOWN, never OK; the runner in
`runner.py` enforces that for collectors that misbehave.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol


class State(enum.IntEnum):
    """The monitoring-plugins states, in their conventional order and exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Reading:
    """One check's observation at one collection.

    `check` names the check for the whole life of the device ("md/md0", "smart/sda",
    "fs//var", "hwmon/coretemp/temp1"). `state` is the collector's own verdict, or None
    when the verdict belongs to the configured thresholds applied to `value`.
    """

    check: str
    state: State | None
    text: str
    value: float | None = None
    unit: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


class Collector(Protocol):
    """A collector built from one `[[check]]` table of the client's config."""

    kind: ClassVar[str]
    """The `kind = "..."` of its `[[check]]` table (e.g. "mdraid")."""

    async def collect(self) -> list[Reading]:
        """Look once. May raise or hang: the runner bounds it and turns that into UNKNOWN."""
        ...
