"""`callhome agent run|check|status`."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ... import exitcodes
from ...keys import load_private_key
from ..config import ClientConfig, load_client_config
from ..progress import status_line
from ..spool import Spool
from .checks import Engine, Rule
from .collectors.base import State
from .config import AgentConfig, load_agent_config
from .daemon import Agent
from .running import collect
from .statefile import read_state


def _configs(config_path: Path) -> tuple[ClientConfig, AgentConfig]:
    client = load_client_config(config_path)
    return client, load_agent_config(config_path, client.spool)


def _call_line(call: dict[str, Any]) -> str:
    """The call under way, as the agent last wrote it (every change of phase, and every
    few seconds while sending)."""
    line = status_line(
        str(call.get("phase", "?")),
        float(call.get("seconds") or 0.0),
        sent=call.get("sent"),
        total=call.get("total"),
        rate=call.get("rate"),
        line_rate=call.get("line_rate"),
    )
    line = " ".join(line.split())
    if call.get("number"):
        return line + f" (to {call['number']})"
    if "caller" in call:  # an answered call
        return line + f" (from {call['caller'] or 'a caller without caller ID'})"
    return line


def _when(moment: Any) -> str:
    if not isinstance(moment, int | float):
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def agent() -> None:
    """The diagnostics agent: watches this system and calls the centre by itself."""


@agent.command()
@click.option("-v", "--verbose", count=True, help="-v: progress, -vv: debug.")
@click.option("--json-logs/--console-logs", default=None, help="Log format on stderr.")
@click.pass_obj
def run(config_path: Path, verbose: int, json_logs: bool | None) -> None:
    """Run the agent in the foreground (for systemd: Type=notify, WatchdogSec)."""
    from modem_drivers.logs import configure_logging

    from ..cli import reporting_errors

    configure_logging("debug" if verbose > 1 else "info", json=json_logs)

    async def main() -> None:
        client, config = _configs(config_path)
        if not config.checks:
            click.echo(f"callhome: {config_path}: no [[check]] tables: nothing to watch", err=True)
        daemon = Agent(client, config, load_private_key(client.key))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await daemon.run(stop)

    reporting_errors(lambda: asyncio.run(main()))


@agent.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check(config_path: Path, as_json: bool) -> None:
    """Run every collector once and show each check's state (no call, nothing queued)."""
    from ..cli import reporting_errors

    async def main() -> list[dict[str, Any]]:
        _client, config = _configs(config_path)
        engine = Engine()
        rows: list[dict[str, Any]] = []
        for item in config.checks:
            started = time.monotonic()
            readings = await collect(item.collector, item.deadline, name=item.name)
            took = time.monotonic() - started
            # judged as a first look: no `for`, no waiting for a lasting UNKNOWN
            rule = Rule(item.rule.thresholds, flap_detection=False, unknown_after=0)
            engine.observe(0.0, readings, rule)
            for reading in readings:
                status = engine.checks[reading.check]
                rows.append(
                    {
                        "check": reading.check,
                        "source": item.name,
                        "state": status.confirmed.name,
                        "value": reading.value,
                        "unit": reading.unit,
                        "text": reading.text,
                        "seconds": round(took, 3),
                    }
                )
            closer = getattr(item.collector, "close", None)
            if closer is not None:
                await closer()
        return rows

    rows = reporting_errors(lambda: asyncio.run(main()))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(f"{'check':<28} {'state':<9} {'value':>10}  text")
        for row in rows:
            value = "" if row["value"] is None else f"{row['value']:g}{row['unit'] or ''}"
            click.echo(f"{row['check']:<28} {row['state']:<9} {value:>10}  {row['text']}")
    worst = max((State[row["state"]] for row in rows), default=State.OK)
    # the monitoring-plugins convention: a script can use `agent check` as a plugin
    sys.exit(int(worst))


@agent.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(config_path: Path, as_json: bool) -> None:
    """What the running agent is doing: last and next calls, queue, check states."""
    from ..cli import reporting_errors

    def read() -> tuple[dict[str, Any] | None, int]:
        client, config = _configs(config_path)
        spool = Spool(client.spool)
        try:
            return read_state(config.state), len(spool.queued())
        finally:
            spool.close()

    state, queued = reporting_errors(read)
    if state is None:
        click.echo("callhome: the agent has not run yet (no state file)", err=True)
        sys.exit(exitcodes.FAILURE)
    state["queued"] = queued
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    last = state.get("last_call") or {}
    rows = [
        ("agent", f"pid {state.get('pid')}, state written {_when(state.get('updated'))}"),
        (
            "last call",
            f"{_when(last.get('time'))} {last.get('result', '-')}"
            + (" (line test)" if last.get("line_test") else ""),
        ),
        *([("call", _call_line(state["call"]))] if state.get("call") else []),
        ("next call", _when(state.get("next_call"))),
        ("next line test", _when(state.get("next_test"))),
        ("queued", str(queued)),
    ]
    for label, value in rows:
        click.echo(f"{label:<16} {value}")
    click.echo(f"\n{'check':<28} {'state':<9} {'since':<20} value")
    for item in state.get("checks", []):
        value = "" if item.get("value") is None else f"{item['value']:g}{item.get('unit') or ''}"
        flag = " (flapping)" if item.get("flapping") else ""
        click.echo(
            f"{item['check']:<28} {item['state']:<9} {_when(item.get('since')):<20} {value}{flag}"
        )
