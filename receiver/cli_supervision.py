"""`callhome-receiver incidents` and `on-test`: supervision at the command line.

Registered into `callhome-receiver` by `register(main)`; the devices listing takes its
supervision columns from `device_columns`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import structlog

from callhome import exitcodes
from callhome.database import ConstraintViolation
from modem_drivers.configfile import ConfigError, format_duration, parse_duration

from .incident_events import Notifier
from .store import (
    AsyncStore,
    NotFound,
    SQLiteStore,
    Store,
    StoreUnavailable,
    SupervisionBatch,
)
from .sun.model import ROUTING_NAME, Routing, routing_next_to
from .sun.outbox import SunRouter
from .supervision import operations, persist
from .supervision.callback import Policy
from .supervision.engine import DailySchedule, DeviceStatus, ScheduleError
from .supervision.incidents import IncidentError
from .supervision.notify import FanOut, LoggingNotifier
from .supervision.service import Supervisor
from .supervision.settings import SupervisionSettings

if TYPE_CHECKING:
    from .config import CentreConfig
    from .web.app import Console

T = TypeVar("T")
log = structlog.get_logger("callhome.receiver")


def _fail(message: str, code: int = exitcodes.USAGE) -> NoReturn:
    click.echo(f"callhome-receiver: {message}", err=True)
    sys.exit(code)


def _guarded(function: Callable[[], T]) -> T:
    try:
        return function()
    except (ConfigError, NotFound, IncidentError) as exc:
        _fail(str(exc))
    except (StoreUnavailable, ConstraintViolation) as exc:
        _fail(str(exc), exitcodes.STORAGE)


def _when(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _operator() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "operator"


def supervisor_for(
    config: CentreConfig,
    store: AsyncStore,
    notifier: Notifier | None = None,
    console: Console | None = None,
) -> Supervisor | None:
    """The supervision task of `run` ([supervision] enabled = false: none); incident
    events go to `notifier` (routing's), else to the log, and to the console's live
    pages when it serves them (which then read and act on supervision's store)."""
    if not config.supervision.enabled:
        return None
    notifiers: list[Notifier] = []
    if console is not None:
        from .supervision.console import StoreSupervision

        console.supervision = StoreSupervision(console.store, console.sqlite, config.supervision)
        notifiers.append(console.live)  # first: it never fails, so never repeats
    notifiers.append(notifier or LoggingNotifier())
    supervisor = Supervisor(store, FanOut(*notifiers), config.supervision)
    if console is not None:
        supervisor.lateness = console.live.metrics.observe_lateness
    return supervisor


def routing_for(config: CentreConfig) -> Routing | None:
    """The centre's routing file (oncall.toml beside its config), checked; None (and
    a warning) when it has none: incidents are then only logged."""
    routing = routing_next_to(config.path)
    if routing is None and config.supervision.enabled:
        log.warning(
            "supervision.no_routing",
            detail=f"no {ROUTING_NAME} beside {config.path}: incidents reach nobody, "
            "they are only logged",
        )
    return routing


class Routed:
    """Follow-the-sun routing beside the bank (when the centre has a routing file):
    its escalations resumed before supervision hands it anything, its sender and steps
    running until the bank has stopped."""

    def __init__(self, routing: Routing | None, store: AsyncStore) -> None:
        self.router = SunRouter(routing, store) if routing is not None else None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Routed:
        if self.router is not None:
            await self.router.start()
            self._task = asyncio.ensure_future(self.router.run(self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self.router is not None:  # its sender sleeps on its own event, not on stop
            self.router.dispatcher.wake()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=10.0)


def _open_store(ctx: click.Context) -> tuple[SQLiteStore, SupervisionSettings]:
    context = ctx.obj
    config = context.config()
    store: SQLiteStore = context.store()
    return store, config.supervision


def announce(store: Store, device: str) -> None:
    """Tell a running receiver that a device was enrolled, rekeyed or revoked."""
    command = json.dumps({"reload": "device", "device": device})
    store.save_supervision(SupervisionBatch(commands=((time.time(), command),)))


# -- devices -------------------------------------------------------------------------------


def device_columns(store: Store, settings: SupervisionSettings) -> dict[str, dict[str, Any]]:
    """For `callhome-receiver devices`: each device's supervision, by name."""
    statuses = operations.statuses(store, settings)
    last_calls = {c.device: c for c in reversed(store.calls(limit=10_000)) if c.device}
    return {name: _status_item(status, last_calls.get(name)) for name, status in statuses.items()}


def _status_item(status: DeviceStatus, call: Any = None) -> dict[str, Any]:
    return {
        "supervision": status.state.label,
        "since": _when(status.since),
        "last_message": _when(status.last),
        "last_call": None
        if call is None
        else {"at": _when(call.started), "port": call.port, "outcome": call.outcome},
        "next_deadline": _when(status.deadline),
        "alert_at": _when(status.alert_at),
        "schedule": status.schedule,
        "paths": {
            path: {"last": _when(at), "failed": path in status.failed_paths}
            for path, at in sorted(status.paths.items())
        },
        "skewed": status.skewed,
        "storming": status.storming,
        "on_test_until": _when(status.test_until),
        "expected_interval": status.interval,
        "line_tests_only": status.line_tests_only,
    }


def paths_text(paths: dict[str, dict[str, Any]]) -> str:
    return ",".join(f"{p}{'!' if v['failed'] else ''}" for p, v in paths.items()) or "-"


# -- incidents -----------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Resolved ones too.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def incidents(ctx: click.Context, show_all: bool, limit: int, as_json: bool) -> None:
    """Incidents (open and acknowledged; --all: resolved too), newest first."""
    if ctx.invoked_subcommand is not None:
        return
    store, _ = _open_store(ctx)
    status = None if show_all else operations.OPEN
    rows = _guarded(lambda: store.incident_rows(status=status, limit=limit))
    store.close()
    items = [_incident_item(persist.incident_from_row(row)) for row in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(f"{'id':>5} {'status':<12} {'severity':<8} {'opened':<20} summary")
    for item in items:
        click.echo(
            f"{item['id']:>5} {item['status']:<12} {item['severity']:<8} "
            f"{item['opened']:<20} {item['summary']}"
        )


def _incident_item(incident: Any, timeline: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": incident.id,
        "kind": incident.kind,
        "severity": incident.severity.value,
        "status": incident.status.value,
        "summary": incident.summary,
        "device": incident.device,
        "opened": _when(incident.opened_at),
        "acknowledged": _when(incident.acknowledged_at),
        "acknowledged_by": incident.acknowledged_by,
        "resolved": _when(incident.resolved_at),
        "resolved_by": incident.resolved_by,
        "members": incident.members,
        "attributes": incident.attributes,
    }
    if timeline:
        item["timeline"] = [
            {"at": _when(e.at), "what": e.what, "text": e.text, "by": e.by, "device": e.device}
            for e in incident.timeline
        ]
    return item


@incidents.command()
@click.argument("incident_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, incident_id: int, as_json: bool) -> None:
    """One incident with its timeline."""
    store, _ = _open_store(ctx)

    def load() -> dict[str, Any]:
        rows = store.incident_rows(incident_id=incident_id)
        if not rows:
            raise NotFound(f"no incident {incident_id}")
        incident = persist.incident_from_row(rows[0], store.incident_timeline(incident_id))
        return _incident_item(incident, timeline=True)

    item = _guarded(load)
    store.close()
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    click.echo(f"incident {item['id']}: {item['summary']}")
    click.echo(f"  {item['kind']}, {item['severity']}, {item['status']}")
    if item["acknowledged_by"]:
        click.echo(f"  acknowledged by {item['acknowledged_by']} at {item['acknowledged']}")
    if item["members"]:
        for device, state in sorted(item["members"].items()):
            tick = "x" if state == "recovered" else " "
            click.echo(f"  [{tick}] {device} ({state})")
    for entry in item["timeline"]:
        who = f" ({entry['by']})" if entry["by"] else ""
        device = f" {entry['device']}:" if entry["device"] and not item["device"] else ""
        click.echo(f"  {entry['at']}  {entry['what']:<12}{device} {entry['text']}{who}")


def _changed(events: list[Any], as_json: bool, what: str, incident_id: int) -> None:
    if as_json:
        click.echo(json.dumps({"id": incident_id, "changed": bool(events), "what": what}))
    elif events:
        click.echo(f"incident {incident_id} {what}")
    else:
        click.echo(f"incident {incident_id} was already {what}")


@incidents.command()
@click.argument("incident_id", type=int)
@click.option("--by", default=None, help="Who (default: $USER).")
@click.option("--note", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ack(
    ctx: click.Context, incident_id: int, by: str | None, note: str | None, as_json: bool
) -> None:
    """Acknowledge an incident: someone is on it."""
    store, _ = _open_store(ctx)
    events = _guarded(
        lambda: operations.acknowledge(store, incident_id, by or _operator(), time.time(), note)
    )
    store.close()
    _changed(events, as_json, "acknowledged", incident_id)


@incidents.command()
@click.argument("incident_id", type=int)
@click.option("--note", required=True, help="What was done.")
@click.option("--by", default=None, help="Who (default: $USER).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resolve(ctx: click.Context, incident_id: int, note: str, by: str | None, as_json: bool) -> None:
    """Resolve an incident by hand."""
    store, _ = _open_store(ctx)
    events = _guarded(
        lambda: operations.resolve(store, incident_id, by or _operator(), time.time(), note)
    )
    store.close()
    _changed(events, as_json, "resolved", incident_id)


@incidents.command()
@click.argument("incident_id", type=int)
@click.argument("text")
@click.option("--by", default=None, help="Who (default: $USER).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def note(ctx: click.Context, incident_id: int, text: str, by: str | None, as_json: bool) -> None:
    """Add a note to an incident's timeline."""
    store, _ = _open_store(ctx)
    _guarded(lambda: operations.add_note(store, incident_id, by or _operator(), time.time(), text))
    store.close()
    _changed([True], as_json, "noted", incident_id)


# -- on test -------------------------------------------------------------------------------


@click.command("on-test")
@click.argument("device")
@click.option("--for", "duration", default=None, help="How long (e.g. 4h).")
@click.option("--end", is_flag=True, help="End the device's test now.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def on_test(
    ctx: click.Context, device: str, duration: str | None, end: bool, as_json: bool
) -> None:
    """Take DEVICE out of supervision for a while (maintenance); it resumes by itself."""
    if end == (duration is not None):
        raise click.UsageError("give --for DURATION or --end")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--for") from None
        if not 0 < seconds <= 366 * 86400:
            raise click.BadParameter("must be between 1s and 366d", param_hint="--for")
    store, settings = _open_store(ctx)
    status = _guarded(lambda: operations.start_test(store, settings, device, time.time(), seconds))
    store.close()
    item = {"device": device, **_status_item(status)}
    if as_json:
        click.echo(json.dumps(item, indent=2))
    elif seconds is not None:
        click.echo(
            f"{device} on test for {format_duration(seconds)} (until {item['on_test_until']} UTC)"
        )
    else:
        click.echo(f"{device}: test ended, supervision {item['supervision']}")


@click.command("supervise")
@click.argument("device")
@click.option(
    "--schedule",
    default=None,
    help="Expect a call daily at a local time: 'daily 03:00 Europe/Paris'.",
)
@click.option("--interval-only", is_flag=True, help="Drop the schedule: last message + interval.")
@click.option(
    "--line-tests-only/--any-message",
    default=None,
    help="Whether only line tests reset the deadline (default: any authenticated message).",
)
@click.option(
    "--callback",
    type=click.Choice([p.value for p in Policy]),
    default=None,
    help="When the centre calls it back: never, when late, on command (`call`).",
)
@click.option("--number", default=None, help="The number to call it back on.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def supervise(
    ctx: click.Context,
    device: str,
    schedule: str | None,
    interval_only: bool,
    line_tests_only: bool | None,
    callback: str | None,
    number: str | None,
    as_json: bool,
) -> None:
    """Show or change how DEVICE is supervised."""
    if schedule and interval_only:
        raise click.UsageError("give --schedule or --interval-only, not both")
    store, settings = _open_store(ctx)
    parsed: DailySchedule | bool | None = False
    if schedule:
        try:
            parsed = DailySchedule.parse(schedule, settings.schedule_lead)
        except ScheduleError as exc:
            raise click.BadParameter(str(exc), param_hint="--schedule") from None
    elif interval_only:
        parsed = None
    status, attributes = _guarded(
        lambda: operations.configure(
            store,
            settings,
            device,
            time.time(),
            schedule=parsed,
            line_tests_only=line_tests_only,
            callback=Policy(callback) if callback else None,
            number=number,
        )
    )
    store.close()
    item = {
        "device": device,
        **_status_item(status),
        "callback": attributes.get("callback", "never"),
        "number": attributes.get("number"),
    }
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    expectation = status.schedule or f"every {format_duration(status.interval)}"
    click.echo(
        f"{device}: {item['supervision']}, expected {expectation} "
        f"(grace {format_duration(status.grace)}), next deadline {item['next_deadline'] or '-'}"
        f", callback {item['callback']}"
    )


@click.command("call")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def call(ctx: click.Context, device: str, as_json: bool) -> None:
    """Have the running receiver call DEVICE back on an idle bank port.

    A device that answers and gets through but does not call by itself has a broken
    dial-out (an incident of its own), not a dead line; the outcome goes on its
    incidents' timelines and in the receiver's log."""
    store, _ = _open_store(ctx)
    attributes = _guarded(lambda: operations.request_callback(store, device, time.time()))
    store.close()
    if as_json:
        click.echo(json.dumps({"device": device, "number": attributes["number"]}))
    else:
        click.echo(f"{device}: callback on {attributes['number']} requested from the receiver")


def register(main: click.Group) -> None:
    main.add_command(incidents)
    main.add_command(on_test)
    main.add_command(supervise)
    main.add_command(call)
