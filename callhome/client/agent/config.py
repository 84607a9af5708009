"""The agent's part of the client's config file: `[agent]` and the `[[check]]` tables.

Checked at start, every error naming the file and the key. The keys the check engine
reads (thresholds, `for`, flap limits, interval, deadline) are taken here; the rest of a
`[[check]]` table belongs to its collector (`kind`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from modem_drivers.configfile import Table, load_toml

from ...backoff import Backoff
from .checks import Direction, Rule, Thresholds
from .collectors.base import Collector
from .collectors.runner import build_collector
from .inventory import DEFAULT_PACKAGES
from .policy import PolicyConfig


@dataclass
class CheckConfig:
    name: str
    kind: str
    collector: Collector
    rule: Rule
    interval: float
    deadline: float


@dataclass
class AgentConfig:
    path: Path
    state: Path
    interval: float = 60.0
    deadline: float = 10.0
    time_scale: float = 1.0
    answer: bool = True
    """Answer the centre's calls while idle (a device with no modem port cannot)."""
    answer_window: float = 60.0
    answer_rings: int = 2
    answer_numbers: list[str] = field(default_factory=list)
    answer_require_caller_id: bool = False
    textfile: Path | None = None
    """Where to write the check states for node_exporter's textfile collector."""
    inventory_interval: float = 7 * 86400.0
    """0: no inventory."""
    inventory_packages: list[str] = field(default_factory=lambda: list(DEFAULT_PACKAGES))
    """Globs of the package names whose versions the inventory lists ([]: none)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    checks: list[CheckConfig] = field(default_factory=list)


def load_agent_config(path: Path, spool: Path) -> AgentConfig:
    return parse_agent_config(load_toml(path), path, spool)


def parse_agent_config(data: dict[str, Any], path: Path, spool: Path) -> AgentConfig:
    root = Table(data, "", path)
    agent = root.table("agent")
    config = AgentConfig(path=path, state=spool.with_name(spool.name + ".agent.json"))
    if agent.get("state", str) is not None:
        config.state = agent.path_value("state")
    if agent.get("textfile", str) is not None:
        config.textfile = agent.path_value("textfile")
        if not config.textfile.name.endswith(".prom"):
            raise agent.error("textfile", "node_exporter reads only files named *.prom")
    config.time_scale = agent.number("time_scale", float, 1.0, minimum=1e-6, maximum=1.0)
    config.interval = agent.duration("interval", "60s", minimum=0.001, maximum=86400.0)
    config.deadline = agent.duration("deadline", "10s", minimum=0.001, maximum=3600.0)
    test_at = None
    text = agent.get("test_at", str)
    if text is not None:
        try:
            test_at = clock_time.fromisoformat(text)
        except ValueError:
            raise agent.error("test_at", f"expected a time of day HH:MM, not {text!r}") from None
    zone = agent.get("test_zone", str, "UTC")
    if test_at is not None or "test_zone" in agent.data:
        # only then: zoneinfo (with importlib.resources) is RSS an agent on an interval
        # does without, and a system without a time zone database may run one
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise agent.error("test_zone", f"unknown time zone {zone!r}") from None
    config.answer = agent.get("answer", bool, True)
    config.answer_window = agent.duration("answer_window", "60s", minimum=1.0, maximum=3600.0)
    config.answer_rings = agent.number("answer_rings", int, 2, minimum=1, maximum=20)
    config.answer_numbers = agent.strings("answer_numbers", [])
    config.answer_require_caller_id = agent.get("answer_require_caller_id", bool, False)
    config.inventory_interval = agent.duration("inventory_interval", "7d", maximum=366 * 86400.0)
    config.inventory_packages = agent.strings("inventory_packages", list(DEFAULT_PACKAGES))
    retry = agent.duration("retry_delay", "5m", minimum=0.001, maximum=86400.0)
    config.policy = PolicyConfig(
        warning_delay=agent.duration("warning_delay", "1h", maximum=7 * 86400.0),
        throttle_events=agent.number("throttle_events", int, 30, minimum=1, maximum=100000),
        throttle_window=agent.duration("throttle_window", "2h", minimum=1.0),
        test_interval=agent.duration("test_interval", "24h", minimum=60.0),
        test_spread=agent.number("test_spread", float, 0.1, minimum=0.0, maximum=0.5),
        test_at=test_at,
        test_zone=zone,
        catch_up_delay=agent.duration("catch_up_delay", "2m", maximum=86400.0),
        retry=Backoff(retry, 2.0, max(retry, 3600.0), "decorrelated"),
    )
    agent.finish()
    names: set[str] = set()
    for table in root.tables("check"):
        check = _check(table, config)
        if check.name in names:
            raise table.error("name", f"another [[check]] is already named {check.name!r}")
        names.add(check.name)
        config.checks.append(check)
    return config


def _check(table: Table, agent: AgentConfig) -> CheckConfig:
    kind = table.get("kind", str, None)
    if kind is None:
        raise table.error("kind", "missing (which collector: mdraid, smart, simulated ...)")
    name = table.get("name", str, kind)
    direction_text = table.get("direction", str, "above")
    try:
        direction = Direction(direction_text)
    except ValueError:
        raise table.error("direction", "expected above or below") from None
    numbers = {
        key: table.number(key, float, None)
        for key in ("warning", "critical", "warning_clear", "critical_clear")
    }
    thresholds = Thresholds(**numbers, direction=direction)
    problems = thresholds.problems()
    if problems:
        raise table.error("warning" if "warning" in problems[0] else "critical", problems[0])
    has_thresholds = any(value is not None for value in numbers.values())
    flap_low = table.number("flap_low", float, 5.0, minimum=0.0, maximum=100.0)
    flap_high = table.number("flap_high", float, 20.0, minimum=0.0, maximum=100.0)
    if flap_low > flap_high:
        raise table.error("flap_low", "must not be above flap_high")
    rule = Rule(
        thresholds if has_thresholds else None,
        for_seconds=table.duration("for", 0.0),
        unknown_after=table.duration("unknown_after", "10m"),
        flap_low=flap_low,
        flap_high=flap_high,
        flap_detection=table.get("flap_detection", bool, True),
    )
    interval = table.duration("interval", agent.interval, minimum=0.001, maximum=86400.0)
    deadline = table.duration("deadline", agent.deadline, minimum=0.001, maximum=3600.0)
    if not math.isfinite(interval):
        raise table.error("interval", "must be finite")
    collector = build(table, agent.time_scale)
    table.finish()
    return CheckConfig(name, kind, collector, rule, interval, deadline)


def build(table: Table, time_scale: float) -> Collector:
    """The collector a `[[check]]` table asks for (its `kind`)."""
    kind = table.get("kind", str)
    if kind == "simulated":
        from .collectors.simulated import SimulatedCollector

        return SimulatedCollector.from_table(table, time_scale=time_scale)
    return build_collector(table, finish=False)
