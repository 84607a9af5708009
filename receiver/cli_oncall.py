"""`callhome-receiver oncall`: who is on duty and on call, and the coverage check that a
roster passes before it goes live.

The routing file is `oncall.toml` in the folder of the centre's config (`--routing` or
CALLHOME_ROUTING name another one).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import click

from callhome import exitcodes
from modem_drivers.configfile import ConfigError

from .sun.check import check
from .sun.localtime import to_local
from .sun.model import ROUTING_NAME, Routing, load_routing
from .sun.schedule import Schedule, on_call_detail


def _fail(message: str, code: int = exitcodes.USAGE) -> NoReturn:
    click.echo(f"callhome-receiver: {message}", err=True)
    sys.exit(code)


def routing_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    root = click.get_current_context().find_root().obj
    config_path = getattr(root, "config_path", None)
    folder = Path(config_path).parent if config_path is not None else Path(".")
    return folder / ROUTING_NAME


def _load(explicit: str | None) -> Routing:
    try:
        return load_routing(routing_path(explicit))
    except ConfigError as exc:
        _fail(str(exc))


def parse_time(text: str | None) -> datetime:
    """An ISO date and time (without an offset: UTC); none: now."""
    if text is None:
        return datetime.fromtimestamp(time.time(), UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--at/--from: not a date and time: {text!r} (use e.g. 2026-03-29T08:00)")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


routing_option = click.option(
    "--routing",
    "routing_file",
    type=click.Path(dir_okay=False),
    envvar="CALLHOME_ROUTING",
    help=f"The routing file (default: {ROUTING_NAME} next to the centre's config).",
)


@click.group(invoke_without_command=True)
@routing_option
@click.option("--at", "at_text", metavar="TIME", help="An instant (ISO; UTC if no offset).")
@click.option("--site", "site_name", metavar="S", help="Show only this centre.")
@click.pass_context
def oncall(
    ctx: click.Context, routing_file: str | None, at_text: str | None, site_name: str | None
) -> None:
    """Which centre is on duty and who is on call (now, or --at TIME)."""
    if ctx.invoked_subcommand is not None:
        return
    routing = _load(routing_file)
    at = parse_time(at_text)
    schedule = Schedule(routing)
    sites = routing.sites
    if site_name is not None:
        sites = tuple(site for site in sites if site.name == site_name)
        if not sites:
            _fail(f"--site: no site named {site_name!r} in {routing.path}")
    watch = schedule.watch(at)
    duty = watch.site.name if watch.site else "nobody"
    state = "in business hours" if watch.open else "out of hours"
    click.echo(f"{_stamp(at)}: {duty} has the watch ({state})")
    later = schedule.handovers(at, at + timedelta(days=21))
    if later:
        incoming = later[0].incoming.name if later[0].incoming else "nobody"
        click.echo(f"next hand-over: {_stamp(later[0].at)} to {incoming}")
    for site in sites:
        local = to_local(at, site.zone)
        status = "open" if schedule.is_open(site, at) else "closed"
        roster = routing.rosters.get(site.roster) if site.roster else None
        person, why = on_call_detail(roster, at) if roster else (None, "no roster")
        click.echo(
            f"  {site.name:<12} {local:%a %H:%M} {site.zone.key:<20} {status:<6} "
            f"on call: {person or 'NOBODY'} ({why})"
        )


@oncall.command("check")
@routing_option
@click.option("--days", type=click.IntRange(1, 3660), default=365, show_default=True)
@click.option("--from", "from_text", metavar="TIME", help="Start (ISO; default: now).")
@click.option("--handovers", is_flag=True, help="List every hand-over too.")
@click.pass_context
def check_command(
    ctx: click.Context,
    routing_file: str | None,
    days: int,
    from_text: str | None,
    handovers: bool,
) -> None:
    """Walk every hand-over of the next DAYS: list gaps, overlaps and escalation steps
    with nobody to notify. Exit 1 if there is any."""
    parent = ctx.parent
    routing_file = routing_file or (parent.params.get("routing_file") if parent else None)
    routing = _load(routing_file)
    coverage = check(routing, parse_time(from_text), days)
    if handovers:
        for handover in coverage.handovers:
            outgoing = handover.outgoing.name if handover.outgoing else "nobody"
            incoming = handover.incoming.name if handover.incoming else "nobody"
            local = to_local(handover.at, handover.incoming.zone) if handover.incoming else None
            click.echo(
                f"hand-over {_stamp(handover.at)} {outgoing} -> {incoming}"
                + (f" ({local:%H:%M} local)" if local else "")
            )
    for finding in coverage.findings:
        span = (
            _stamp(finding.start)
            if finding.start == finding.end
            else f"{_stamp(finding.start)} .. {_stamp(finding.end)}"
        )
        click.echo(f"{finding.kind:<8} {span}: {finding.text}")
    watch = ", ".join(
        f"{name} {coverage.open_hours[name]:.0f} h open + {coverage.out_of_hours[name]:.0f} h "
        "out of hours"
        for name in coverage.open_hours
    )
    click.echo(
        f"{len(coverage.handovers)} hand-overs in {days} days from {_stamp(coverage.start)}; "
        f"{len(coverage.findings)} problem(s). Watch: {watch}"
    )
    if not coverage.ok:
        sys.exit(exitcodes.FAILURE)


@oncall.command("outbox")
@click.option("--pending", is_flag=True, help="Only what is still to be sent.")
@click.option("--failed", is_flag=True, help="Only what could not be delivered (troubles).")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
def outbox_command(pending: bool, failed: bool, limit: int) -> None:
    """The notification outbox: what was sent, is pending, or failed for good (newest
    first). Exit 1 if anything failed for good."""
    root = click.get_current_context().find_root().obj
    store = root.store()  # the centre's Context: one line and exit 11 if unusable
    try:
        rows = store.outbox(pending=pending, limit=limit)
    finally:
        store.close()
    if failed:
        rows = [row for row in rows if row.failed_at is not None]
    any_failed = False
    for row in rows:
        if row.sent_at is not None:
            state = f"sent {_stamp(datetime.fromtimestamp(row.sent_at, UTC))}"
        elif row.failed_at is not None:
            any_failed = True
            state = f"FAILED {_stamp(datetime.fromtimestamp(row.failed_at, UTC))}"
        else:
            state = f"pending, next {_stamp(datetime.fromtimestamp(row.next_attempt, UTC))}"
        error = f" ({row.last_error})" if row.last_error and row.sent_at is None else ""
        click.echo(
            f"{row.id:>6} {row.item.channel:<8} {row.item.address:<28} {state} "
            f"after {row.attempts} attempt(s){error}\n       {row.item.idempotency_key}"
        )
    if any_failed:
        sys.exit(exitcodes.FAILURE)
