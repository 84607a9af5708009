"""Monitoring plugins (Nagios, Icinga, Naemon, Sensu...), run as they are.

The convention (monitoring-plugins development guidelines): exit 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN; the first line of stdout is the text, optionally followed by
`|` and performance data; further lines are long text, until one holds a `|`, after
which everything is more performance data.

Here: any other exit code, a death by signal, no answer within `timeout` (the whole
process group is killed), output that is not text (NUL bytes) are UNKNOWN. Output is
read up to 64 KiB (the rest is thrown away, the plugin is not blocked); performance
data that does not parse is dropped and said so in the attributes, the exit code still
decides. The reading's value and unit are those of the first performance item.

`parse_output` is pure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Self

from modem_drivers.configfile import Table

from . import perfdata
from .base import Reading, State
from .runner import CommandNotFound, register, run_command

MAX_OUTPUT = 64 * 1024
MAX_LONG = 1000
"""Characters of long text kept (it travels on a narrow-band wire)."""

_STATES = {0: State.OK, 1: State.WARNING, 2: State.CRITICAL, 3: State.UNKNOWN}


@dataclass(frozen=True)
class PluginOutput:
    text: str
    long_text: str
    perf: tuple[perfdata.PerfItem, ...]
    perf_error: str | None = None


def parse_output(output: str) -> PluginOutput:
    lines = output.splitlines()
    if not lines:
        return PluginOutput("", "", ())
    first, _, perf_text = lines[0].partition("|")
    long_lines: list[str] = []
    perf_parts = [perf_text]
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line)
        elif "|" in line:
            before, _, after = line.partition("|")
            long_lines.append(before)
            perf_parts.append(after)
            in_perf = True
        else:
            long_lines.append(line)
    perf: tuple[perfdata.PerfItem, ...] = ()
    error = None
    try:
        perf = tuple(item for part in perf_parts for item in perfdata.parse(part))
    except perfdata.PerfdataError as exc:
        error = str(exc)
    return PluginOutput(first.strip(), "\n".join(long_lines).strip(), perf, error)


def assess(
    check: str,
    returncode: int | None,
    stdout: bytes,
    stderr: bytes = b"",
    *,
    timed_out: bool = False,
    timeout: float = 0.0,
    truncated: bool = False,
) -> Reading:
    if timed_out:
        return Reading(check, State.UNKNOWN, f"no answer within {timeout:g} s (killed)")
    if b"\0" in stdout:
        return Reading(check, State.UNKNOWN, "output is not text")
    parsed = parse_output(stdout.decode("utf-8", "replace"))
    text = parsed.text
    if not text and not parsed.perf:
        err = stderr.decode("utf-8", "replace").strip().splitlines()
        text = err[0] if err else ""
    attributes: dict[str, str] = {}
    if parsed.long_text:
        long_text = parsed.long_text
        attributes["long_text"] = long_text if len(long_text) <= MAX_LONG else long_text[:MAX_LONG]
    if parsed.perf:
        attributes["perfdata"] = perfdata.format_items(list(parsed.perf))
    if parsed.perf_error:
        attributes["perfdata_error"] = parsed.perf_error
    if truncated:
        attributes["truncated"] = f"output beyond {MAX_OUTPUT} bytes dropped"
    state = _STATES.get(returncode) if returncode is not None else None
    if state is None:
        if returncode is not None and returncode < 0:
            why = f"killed by signal {-returncode}"
        else:
            why = f"exit {returncode}, not a monitoring-plugin state"
        return Reading(
            check, State.UNKNOWN, f"{why}: {text}" if text else why, attributes=attributes
        )
    value = unit = None
    if parsed.perf and parsed.perf[0].value is not None:
        value, unit = parsed.perf[0].value, parsed.perf[0].uom or None
    return Reading(check, state, text or "(no output)", value, unit, attributes)


@dataclass
class PluginCollector:
    """`kind = "plugin"`: keys `command` (the plugin and its arguments, a list; no
    shell), `label` (the check is `plugin/<label>`, default the program's name),
    `timeout` (default 30 s)."""

    kind: ClassVar[str] = "plugin"
    command: list[str] = field(default_factory=list)
    label: str = ""
    timeout: float = 30.0

    @property
    def check(self) -> str:
        return f"plugin/{self.label or os.path.basename(self.command[0])}"

    @classmethod
    def from_table(cls, table: Table) -> Self:
        command = table.strings("command")
        if not command:
            raise table.error("command", "expected the plugin and its arguments")
        return cls(
            command=command,
            label=table.get("label", str, ""),
            timeout=table.duration("timeout", 30.0, minimum=0.1, maximum=3600.0),
        )

    async def collect(self) -> list[Reading]:
        try:
            result = await run_command(self.command, self.timeout, max_output=MAX_OUTPUT)
        except CommandNotFound as exc:
            return [Reading(self.check, State.UNKNOWN, str(exc))]
        return [
            assess(
                self.check,
                result.returncode,
                result.stdout,
                result.stderr,
                timed_out=result.timed_out,
                timeout=self.timeout,
                truncated=result.truncated,
            )
        ]


register("plugin")(PluginCollector.from_table)
