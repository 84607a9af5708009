"""The agent's check states in node_exporter's textfile format, for sites that already
run Prometheus: `[agent] textfile = "/var/lib/node_exporter/textfile_collector/callhome.prom"`.

`render` is pure (the daemon's status in, the exposition text out); `write` replaces the
file atomically (a temporary file in the same folder, not ending in `.prom`, then a
rename), as node_exporter asks, so that it never reads half a file. Label values are the
check names the config and the collectors give: bounded, like the checks themselves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, help_text: str, samples: list[tuple[dict[str, str], float]]
    ) -> None:
        if not samples:
            return
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            text = ",".join(f'{key}="{_label(item)}"' for key, item in labels.items())
            self.lines.append(
                f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"
            )


def render(status: Mapping[str, Any], queued: int | None = None) -> str:
    """The exposition text for the agent's `status()` (and the spool's queue length)."""
    out = _Text()
    checks = [c for c in status.get("checks", []) if isinstance(c.get("check"), str)]
    out.family(
        "callhome_agent_check_state",
        "The state of each check the agent watches: 1 for its current state, 0 for the others.",
        [
            ({"check": c["check"], "state": state}, float(c.get("state") == state))
            for c in checks
            for state in STATES
        ],
    )
    out.family(
        "callhome_agent_check_state_since_timestamp_seconds",
        "When each check entered its current state (Unix time).",
        [({"check": c["check"]}, float(c["since"])) for c in checks if _is_number(c.get("since"))],
    )
    out.family(
        "callhome_agent_check_flapping",
        "1 while a check is flapping (its state changes too often to be reported each time).",
        [({"check": c["check"]}, float(bool(c.get("flapping")))) for c in checks],
    )
    out.family(
        "callhome_agent_check_value",
        "The last value a check measured, in the unit its collector gives.",
        [
            ({"check": c["check"], "unit": str(c.get("unit") or "")}, float(c["value"]))
            for c in checks
            if _is_number(c.get("value"))
        ],
    )
    last = status.get("last_call") or {}
    if _is_number(last.get("time")):
        out.family(
            "callhome_agent_last_call_timestamp_seconds",
            "When the agent's last call ended (Unix time).",
            [({}, float(last["time"]))],
        )
        out.family(
            "callhome_agent_last_call_success",
            "1 when the agent's last call got through.",
            [({}, float(last.get("result") == "ok"))],
        )
    for key, name, help_text in (
        ("next_call", "callhome_agent_next_call_timestamp_seconds", "When the next call is due."),
        (
            "next_test",
            "callhome_agent_next_line_test_timestamp_seconds",
            "When the next scheduled line test is due.",
        ),
    ):
        if _is_number(status.get(key)):
            out.family(name, help_text + " (Unix time)", [({}, float(status[key]))])
    if queued is not None:
        out.family(
            "callhome_agent_messages_queued",
            "Messages in the spool waiting for the centre's acknowledgement.",
            [({}, float(queued))],
        )
    return "\n".join(out.lines) + "\n"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def write(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (readable by node_exporter: mode 0644)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o644)  # whatever the umask said
        handle.write(text)
    os.replace(temporary, path)
