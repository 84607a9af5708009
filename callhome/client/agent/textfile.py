"""The agent's check states in node_exporter's textfile format, for sites that already
run Prometheus: node_exporter's textfile collector (`--collector.textfile.directory`)
reads every `*.prom` file of a directory at each scrape.

Written from the same status as the state file (`Agent.status()`), after every
collection, replaced atomically (`prometheus_client.write_to_textfile`: a temporary
file in the same directory, then a rename), so a scrape never reads half of it. Label
values are bounded: the configured checks' names, the four states, their units.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .collectors.base import State

STATES = tuple(state.name.lower() for state in State)
"""Label values of `callhome_agent_check_state`: ok, warning, critical, unknown."""


class _Status(Collector):
    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        checks = self.status.get("checks", [])
        state = GaugeMetricFamily(
            "callhome_agent_check_state",
            "The state each check reports (1 for its current state, 0 for the others).",
            labels=["check", "state"],
        )
        since = GaugeMetricFamily(
            "callhome_agent_check_state_since_timestamp_seconds",
            "When each check entered the state it reports.",
            labels=["check"],
        )
        flapping = GaugeMetricFamily(
            "callhome_agent_check_flapping",
            "1 while a check flaps (its changes are then reported once, when it settles).",
            labels=["check"],
        )
        value = GaugeMetricFamily(
            "callhome_agent_check_value",
            "The last value a check measured, in its unit.",
            labels=["check", "unit"],
        )
        seen = GaugeMetricFamily(
            "callhome_agent_check_last_seen_timestamp_seconds",
            "When each check was last collected.",
            labels=["check"],
        )
        for check in checks:
            name = str(check["check"])
            current = str(check["state"]).lower()
            for label in STATES:
                state.add_metric([name, label], 1.0 if label == current else 0.0)
            since.add_metric([name], float(check.get("since") or 0.0))
            flapping.add_metric([name], 1.0 if check.get("flapping") else 0.0)
            if check.get("value") is not None:
                value.add_metric([name, str(check.get("unit") or "")], float(check["value"]))
            if check.get("last_seen") is not None:
                seen.add_metric([name], float(check["last_seen"]))
        yield from (state, since, flapping, value, seen)
        last_call = self.status.get("last_call") or {}
        if last_call.get("time") is not None:
            yield GaugeMetricFamily(
                "callhome_agent_last_call_timestamp_seconds",
                "When the agent's last call to the centre ended.",
                value=float(last_call["time"]),
            )
            yield GaugeMetricFamily(
                "callhome_agent_last_call_success",
                "1 if the agent's last call delivered what it carried.",
                value=1.0 if last_call.get("result") == "ok" else 0.0,
            )
        for key, name, text in (
            ("last_test", "last_line_test", "When the agent last made its line test."),
            ("next_test", "next_line_test", "When the next line test is due."),
        ):
            if self.status.get(key) is not None:
                yield GaugeMetricFamily(
                    f"callhome_agent_{name}_timestamp_seconds", text, value=float(self.status[key])
                )


def _registry(status: Mapping[str, Any]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Status(status))
    return registry


def render(status: Mapping[str, Any]) -> bytes:
    """The textfile's content for `status` (`Agent.status()`)."""
    return generate_latest(_registry(status))


def write_textfile(path: Path, status: Mapping[str, Any]) -> None:
    """Replace `path` (a `*.prom` file in node_exporter's textfile directory)."""
    write_to_textfile(str(path), _registry(status))
