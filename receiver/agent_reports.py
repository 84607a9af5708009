"""The agent's messages as the centre reads them: decoded events and line tests, and each
check's current state per device (`callhome-receiver device NAME`).

The state of a check is that of the last event the device sent for it (the agent only
sends changes, in order, and every problem is followed by its recovery), so replaying a
device's stored events gives its checks as the device last reported them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import cbor2
import click

from callhome.wire.messages import AGENT_FORMAT

HISTORY_LIMIT = 10000
"""Messages of a device `device` replays (the newest); older changes are assumed
superseded, which holds unless a check has been silent for that many messages."""


def agent_content(content: bytes) -> dict[str, Any] | None:
    """The decoded content of an agent message (any `v` up to ours), else None."""
    try:
        data = cbor2.loads(content)
    except Exception:  # hostile or damaged content is simply not an agent message
        return None
    if not isinstance(data, dict):
        return None
    version = data.get("v")
    if not isinstance(version, int) or not 1 <= version <= AGENT_FORMAT:
        return None
    return data


def describe(kind: str, content: bytes) -> str | None:
    """One line: "md/md0 OK -> CRITICAL: degraded [U_]", "flapping", a line test's health."""
    data = agent_content(content)
    if data is None:
        return None
    text = str(data.get("text", ""))
    kind_of = data.get("type")
    if kind == "line-test":
        return f"health: {data.get('health', '-')}"
    if kind_of == "event":
        check = data.get("check", "?")
        if data.get("event") == "flapping":
            return f"{check} flapping (state changes suppressed until stable): {text}"
        if data.get("event") == "stable":
            return f"{check} stable again, {data.get('state')}: {text}"
        return f"{check} {data.get('previous')} -> {data.get('state')}: {text}"
    if kind_of == "throttled":
        return (
            f"{data.get('check')} throttled: {data.get('held')} events held back, "
            f"now {data.get('state')}: {text}"
        )
    if kind_of == "inventory":
        changed = data.get("changed") or {}
        removed = data.get("removed") or []
        return f"inventory: {len(changed)} changed, {len(removed)} removed"
    return None


def check_states(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """Each check's last reported state from a device's stored messages (any order)."""
    ordered = sorted(messages, key=lambda m: (m.received_at, m.epoch, m.seq))
    checks: dict[str, dict[str, Any]] = {}
    for message in ordered:
        if message.kind != "report":
            continue
        data = agent_content(message.content)
        if data is None or data.get("type") not in ("event", "throttled"):
            continue
        check = str(data.get("check", "?"))
        entry = checks.setdefault(check, {"check": check, "flapping": False})
        if data.get("type") == "event" and data.get("event") == "flapping":
            entry["flapping"] = True
            continue
        if data.get("event") == "stable":
            entry["flapping"] = False
        entry.update(
            state=data.get("state"),
            since=data.get("since"),
            value=data.get("value"),
            unit=data.get("unit"),
            text=data.get("text"),
            received=message.received_at,
        )
    return [checks[name] for name in sorted(checks)]


def last_health(messages: Iterable[Any]) -> dict[str, Any] | None:
    tests = [m for m in messages if m.kind == "line-test"]
    for message in sorted(tests, key=lambda m: m.received_at, reverse=True):
        data = agent_content(message.content)
        if data is not None and "health" in data:
            return {"received": message.received_at, "health": data["health"]}
    return None


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def device(ctx: Any, name: str, as_json: bool) -> None:
    """One device: its checks (state, since when, last value) and its last line test."""
    from .cli import fail, guarded

    store = ctx.store()
    try:
        found = [d for d in guarded(store.devices) if d.name == name]
        if not found:
            fail(f"no device named {name!r}")
        messages = guarded(lambda: store.messages(device=name, limit=HISTORY_LIMIT))
    finally:
        store.close()
    item = found[0]
    checks = check_states(messages)
    health = last_health(messages)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": item.name,
                    "last_seen": item.last_seen,
                    "test_interval": item.test_interval,
                    "revoked": item.revoked,
                    "last_health": health,
                    "checks": checks,
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"{item.name}: last seen {_when(item.last_seen)}" + (" (revoked)" if item.revoked else "")
    )
    if health is not None:
        click.echo(f"last line test {_when(health['received'])}: {health['health']}")
    if not checks:
        click.echo("no check has reported")
        return
    click.echo(f"\n{'check':<28} {'state':<9} {'since':<20} {'value':>10}  text")
    for entry in checks:
        value = "" if entry["value"] is None else f"{entry['value']:g}{entry['unit'] or ''}"
        flag = " (flapping)" if entry["flapping"] else ""
        click.echo(
            f"{entry['check']:<28} {entry['state'] or '-':<9} {_when(entry['since']):<20} "
            f"{value:>10}  {entry['text'] or ''}{flag}"
        )
