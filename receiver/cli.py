"""`callhome-receiver`: the centre's command line."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import cbor2
import click
import structlog

from callhome import exitcodes
from callhome.config import SetupError, create_files
from callhome.database import ConstraintViolation
from callhome.keys import (
    KeyFileError,
    encode_key,
    load_private_key,
    parse_public_key,
    public_of,
    write_private_key,
)
from callhome.wire.messages import SEVERITIES
from modem_drivers.configfile import ConfigError, format_duration, parse_duration
from modem_drivers.hayes import DRIVER_PROFILES
from modem_drivers.logs import configure_logging

from . import cli_web
from .agent_reports import describe
from .agent_reports import device as device_command
from .cli_oncall import oncall
from .cli_store import migrate_store, open_store, store_group, store_location
from .cli_supervision import (
    Routed,
    announce,
    device_columns,
    paths_text,
    register,
    routing_for,
    supervisor_for,
)
from .config import (
    DEFAULT_PATH,
    GRACE,
    TEST_INTERVAL,
    CentreConfig,
    check_centre_config,
    is_dsn,
    load_centre_config,
)
from .store import (
    INTERRUPTED,
    AlreadyExists,
    AsyncStore,
    NotFound,
    SQLiteStore,
    Store,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from .bank import Bank
    from .sun.model import Routing
    from .web.app import Console

# The bank, the TCP listener, PostgreSQL and the console are imported by the commands
# that use them: an operator's `callhome-receiver calls` took 0.85 s of CPU, most of it
# importing what only `run` needs.

T = TypeVar("T")
USAGE = exitcodes.USAGE
STORE = exitcodes.STORAGE
"""The store cannot be used: the same code as `callhome`'s spool error."""


def fail(message: str, code: int = USAGE) -> NoReturn:
    click.echo(f"callhome-receiver: {message}", err=True)
    sys.exit(code)


def guarded(function: Callable[[], T]) -> T:
    """Run `function`; an error a user can meet becomes one line and an exit code."""
    try:
        return function()
    except (ConfigError, KeyFileError, SetupError, AlreadyExists, NotFound) as exc:
        fail(str(exc))
    except (StoreUnavailable, ConstraintViolation) as exc:
        fail(str(exc), STORE)


class Context:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    def config(self) -> CentreConfig:
        return guarded(lambda: load_centre_config(self.config_path))

    def store(self) -> Store:
        config = self.config()
        # a person is waiting: do not sit on a locked store as long as the bank does
        return guarded(lambda: open_store(store_location(config), timeout=3.0))


pass_context = click.make_pass_decorator(Context)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExit codes:\n"
    + "\n".join(
        f"  {code:>2}  {meaning}" for code, meaning in exitcodes.meanings(exitcodes.RECEIVER_CODES)
    ),
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="CALLHOME_RECEIVER_CONFIG",
    default=str(DEFAULT_PATH),
    show_default=True,
    help="The centre's config file.",
)
@click.pass_context
def main(ctx: click.Context, config_path: str) -> None:
    """The callhome centre: answers the devices' calls on a modem bank."""
    ctx.obj = Context(Path(config_path))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default="centre", show_default=True)
@click.option("--port", "ports", multiple=True, help="A modem URL of the bank (repeatable).")
@click.option(
    "--profile", default="auto", show_default=True, type=click.Choice(["auto", *DRIVER_PROFILES])
)
@click.option("--time-scale", type=float, default=1.0, hidden=True)
@click.option(
    "--store",
    "store_dsn",
    default=None,
    metavar="DSN",
    help="A PostgreSQL database (postgresql://...) for the store instead of centre.db.",
)
def init(
    directory: str,
    name: str,
    ports: tuple[str, ...],
    profile: str,
    time_scale: float,
    store_dsn: str | None,
) -> None:
    """Create a centre in DIRECTORY: key pair, config and store. Never overwrites."""
    from .store_copy import describe as describe_store
    from .store_pg import ENV_DSN, without_password

    if store_dsn is not None and not is_dsn(store_dsn):
        fail("--store: expected a postgresql:// DSN (without it the store is centre.db)")
    folder = Path(directory)
    config = CentreConfig(
        path=folder / "centre.toml",
        name=name,
        key=Path("centre.key"),
        store=Path("centre.db"),
        ports=list(ports),
        profile=profile,
        time_scale=time_scale,
        # the password stays out of the file: ~/.pgpass or CALLHOME_STORE_DSN hold it
        store_dsn=without_password(store_dsn) if store_dsn else None,
    )
    guarded(lambda: check_centre_config(config))
    key_file = folder / "centre.key"

    def write_config(path: Path) -> None:
        if store_dsn:  # last: if the database refuses, the files made are removed
            open_store(store_dsn, create=True).close()
        path.write_text(config.dump())

    made = guarded(
        lambda: create_files(
            {
                **(
                    {}
                    if store_dsn
                    else {folder / "centre.db": lambda path: SQLiteStore(path, create=True).close()}
                ),
                key_file: write_private_key,
                config.path: write_config,
            }
        )
    )
    private = made[key_file]
    click.echo(f"centre created in {folder}")
    if store_dsn:
        click.echo(f"store: {describe_store(store_dsn)}")
        if without_password(store_dsn) != store_dsn:
            click.echo(
                f"the password is not written in {config.path}: put it in ~/.pgpass or "
                f"give the whole DSN in {ENV_DSN}"
            )
    click.echo(f"centre public key: {encode_key(public_of(private))}")
    click.echo("give this key to every device (callhome init --centre-key ...)")


@main.command()
@click.argument("name")
@click.option("--pubkey", required=True, help="The device's public key (callhome pubkey).")
@click.option("--test-interval", default=None, help="How often it line-tests (e.g. 24h).")
@click.option("--grace", default=None, help="How late a test may be (e.g. 15m).")
@click.option("--site", default=None, help="Where the device is (for routing alerts).")
@click.option("--customer", default=None, help="Whose device it is (for routing alerts).")
@pass_context
def enroll(
    ctx: Context,
    name: str,
    pubkey: str,
    test_interval: str | None,
    grace: str | None,
    site: str | None,
    customer: str | None,
) -> None:
    """Enrol a device by NAME and public key."""
    config = ctx.config()
    key = guarded(lambda: parse_public_key(pubkey))
    try:
        interval = parse_duration(test_interval) if test_interval else config.test_interval
        late = parse_duration(grace) if grace else config.grace
    except ValueError as exc:
        fail(str(exc))
    for option, value, (low, high) in (
        ("--test-interval", interval, TEST_INTERVAL),
        ("--grace", late, GRACE),
    ):
        if not low <= value <= high:
            fail(f"{option}: must be between {format_duration(low)} and {format_duration(high)}")
    store = ctx.store()
    device = guarded(
        lambda: store.enroll(
            name, key, test_interval=interval, grace=late, site=site, customer=customer
        )
    )
    guarded(lambda: announce(store, device.name))  # a running receiver supervises it now
    store.close()
    click.echo(f"enrolled {device.name} (tests every {interval:g} s, grace {late:g} s)")


@main.command()
@click.argument("name")
@click.option("--customer", default=None, help='Whose device it is ("" for nobody\'s).')
@click.option("--site", default=None, help='Where the device is ("" for nowhere).')
@pass_context
def assign(ctx: Context, name: str, customer: str | None, site: str | None) -> None:
    """Set an enrolled device's customer or site (what the console filters by and
    follow-the-sun's routes match on)."""
    changes = {
        key: value for key, value in (("customer", customer), ("site", site)) if value is not None
    }
    if not changes:
        fail("assign: give --customer or --site (or both)")
    store = ctx.store()
    device = guarded(lambda: store.assign(name, changes))
    guarded(lambda: announce(store, device.name))  # a running receiver routes by it now
    store.close()
    click.echo(f"{device.name}: customer {device.customer or '-'}, site {device.site or '-'}")


@main.command()
@pass_context
def migrate(ctx: Context) -> None:
    """Bring the store's schema up to this version's, step by step.

    Back the store up first (sqlite3 centre.db ".backup ..."). Each step commits with
    its number, so an interrupted migration resumes where it stopped. Run it with the
    bank stopped; `run` refuses a store that needs it."""
    config = ctx.config()
    click.echo(guarded(lambda: migrate_store(store_location(config))))


@main.command()
@click.argument("name")
@pass_context
def revoke(ctx: Context, name: str) -> None:
    """Revoke a device: its calls are refused from now on."""
    store = ctx.store()
    device = guarded(lambda: store.revoke(name, time.time()))
    guarded(lambda: announce(store, device.name))  # a running receiver retires it now
    store.close()
    click.echo(f"revoked {device.name}")


@main.command()
@click.argument("name")
@click.option("--pubkey", required=True, help="The device's new public key.")
@pass_context
def rekey(ctx: Context, name: str, pubkey: str) -> None:
    """Give an enrolled device a new key (a rebuilt or re-initialised system).

    Its call counter starts again and a revocation is lifted; its calls and messages
    stay. The old key is refused from now on."""
    key = guarded(lambda: parse_public_key(pubkey))
    store = ctx.store()
    device = guarded(lambda: store.rekey(name, key, time.time()))
    store.close()
    click.echo(f"{device.name} now has key {encode_key(device.public_key)}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_context
def devices(ctx: Context, as_json: bool) -> None:
    """List enrolled devices."""
    store = ctx.store()
    rows = guarded(store.devices)
    supervision = guarded(lambda: device_columns(store, ctx.config().supervision))
    store.close()
    items = [
        {
            "name": d.name,
            "public_key": encode_key(d.public_key),
            "enrolled": _when(d.enrolled_at),
            "revoked": _when(d.revoked_at),
            "test_interval": d.test_interval,
            "grace": d.grace,
            "site": d.site,
            "customer": d.customer,
            "last_counter": d.last_counter,
            "last_seen": _when(d.last_seen),
            **supervision.get(d.name, {}),
        }
        for d in rows
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(
        f"{'name':<16} {'state':<8} {'supervision':<11} {'last call':<20} "
        f"{'next deadline':<20} {'paths':<12} {'site':<10} {'customer':<10} public key"
    )
    for item in items:
        state = "revoked" if item["revoked"] else "active"
        last_call = (item.get("last_call") or {}).get("at") or item["last_seen"]
        click.echo(
            f"{item['name']:<16} {state:<8} {item.get('supervision', '-'):<11} "
            f"{last_call or '-':<20} {item.get('next_deadline') or '-':<20} "
            f"{paths_text(item.get('paths', {})):<12} {item['site'] or '-':<10} "
            f"{item['customer'] or '-':<10} {item['public_key']}"
        )


@main.command()
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--json-logs/--console-logs", default=None)
@pass_context
def run(ctx: Context, log_level: str, json_logs: bool | None) -> None:
    """Answer calls on every configured port until SIGTERM or Ctrl-C.

    On the first signal, calls in progress may finish (up to [bank] drain); a second
    signal hangs them up at once."""
    from .leases import sole_receiver
    from .store_copy import describe as describe_store

    configure_logging(log_level, json=json_logs)
    config = ctx.config()
    if not config.ports and not config.ip_listen:
        fail(f"{config.path}: bank.ports: no modem ports configured (and no ip.listen)")
    loop_factory = guarded(lambda: event_loop_factory(config))
    private = guarded(lambda: load_private_key(config.key))
    location = store_location(config)
    # a device waits for the answer to its handshake: a database that has gone away
    # must turn into a busy refusal in seconds, not after libpq's 10 s connect timeout
    store = guarded(lambda: open_store(location, wait=3.0))
    store.receiver = config.receiver
    # before anything is written: a second receiver would close the first's open calls
    alone = guarded(lambda: sole_receiver(store))
    structlog.get_logger("callhome.receiver").info(
        "store.opened", store=describe_store(location), receiver=config.receiver
    )
    # only this receiver's: another site's open calls may be in progress
    interrupted = guarded(lambda: store.close_open_calls(time.time(), config.receiver))
    if interrupted:
        structlog.get_logger("callhome.receiver").warning(
            "calls.interrupted", calls=interrupted, outcome=INTERRUPTED
        )
    console = cli_web.prepare(config)  # None unless [web] listen is set
    routing = guarded(lambda: routing_for(config))  # checked before anything starts
    tune_gc()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        code = runner.run(_run(config, private, store, console, routing))
    if alone is not None:
        alone.release()
    sys.exit(code)


def centre_bank(
    config: CentreConfig,
    private: bytes,
    async_store: AsyncStore,
    routed: Routed,
    console: Console | None = None,
    notify: Callable[..., None] | None = None,
) -> Bank:
    """The bank as `run` wires it: supervision beside it, its incidents routed by
    `routed` (follow the sun), the console told; `callhome demo` runs this very bank."""
    from .bank import Bank

    return Bank(
        config.ports,
        async_store,
        private,
        profile=config.profile,
        init=config.init,
        skip=config.skip,
        rings=config.rings,
        wait_for_caller_id=config.wait_for_caller_id,
        health_check=config.health_check,
        scale=config.time_scale,
        drain_timeout=config.drain * config.time_scale,
        notify=notify if notify is not None else cli_web.bank_notify(console),
        supervisor=supervisor_for(config, async_store, routed.router, console),
        listening=bool(config.ip_listen),
    )


GC_YOUNG_THRESHOLD = 10_000
"""Container objects allocated (net) between two collections of the youngest generation
in `callhome-receiver run`. Python's default, 700, makes a busy receiver collect every
call or two, and with hundreds of calls in flight each collection walks thousands of
young objects: 63 us of CPU per TCP line-test call, about 5 % of it, timed with
`gc.callbacks` under `benchmarks/ip_throughput.py` (151 collections in a 3,000-call run;
4 with this, 5 us a call). The hot path makes few reference cycles, so the garbage that
waits longer is little."""


def event_loop_factory(config: CentreConfig) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`[centre] event_loop`: None for asyncio's own loop, else uvloop's. Raises
    SetupError when uvloop is asked for and not installed."""
    if config.event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        raise SetupError(
            f"{config.path}: centre.event_loop: uvloop is not installed "
            "(pip install 'callhome[uvloop]')"
        ) from None
    return uvloop.new_event_loop


def tune_gc() -> None:
    """For a long-running receiver: what start-up made (modules, configuration, the
    store's connection) lives as long as the process, so no collection walks it again
    (`gc.freeze`), and the youngest generation is collected less often."""
    gc.freeze()
    _young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


async def _run(
    config: CentreConfig,
    private: bytes,
    store: Store,
    console: Console | None = None,
    routing: Routing | None = None,
) -> int:
    from .events import Events
    from .ip import STATUS_FILE, IpListener
    from .leases import lease_for
    from .store_pg import PostgresStore
    from .supervision.leader import LEASE, Leadership
    from .supervision.notify import FanOut

    async_store = cli_web.bank_store(console, store)
    routed = Routed(routing, async_store)  # follow the sun: supervision's notifier
    events = None
    if isinstance(store, PostgresStore):  # the other receivers' live events, and ours to them
        events = Events(store.dsn, config.receiver, console.live.show if console else None)
    bank = centre_bank(
        config,
        private,
        async_store,
        routed,
        console,
        events.bank_event if events is not None and console is None else None,
    )
    if events is not None and console is not None:
        console.live.forward = events.publish  # the bank's notes and the incidents
    elif events is not None and bank.supervisor is not None:
        bank.supervisor.notifier = FanOut(events, bank.supervisor.notifier)
    if events is not None and bank.supervisor is not None:  # the inbox wakes the leader
        bank.supervisor.poke = events.poke
        events.on_inbox = bank.supervisor.wake
    if bank.supervisor is not None:  # on the one receiver that holds the lease
        bank.leadership = Leadership(
            bank.supervisor,
            lease_for(store, LEASE, idle=3 * config.supervision.lease_check),
            async_store,
            config.receiver,
            router=routed.router,
            check=config.supervision.lease_check,
            name_ports=isinstance(store, PostgresStore),  # a SQLite store is one site's
        )
    if config.ip_listen:
        listener = IpListener(
            bank,
            config.ip_listen,
            config.ip_limits,
            status_path=config.state_dir / STATUS_FILE,
            proxies=config.ip_proxies,
        )
        try:
            await listener.start()
        except OSError as exc:
            async_store.close()
            fail(f"{config.path}: ip.listen: {exc.strerror or exc}")
        bank.services.append(listener)
    stop, hang_up_now = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        # the first signal lets calls in progress finish; a second one hangs them up
        (hang_up_now if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    events_stop = asyncio.Event()
    events_task = asyncio.ensure_future(events.run(events_stop)) if events is not None else None
    try:
        async with cli_web.served(console, list(bank.workers)), routed:
            await bank.run(stop, hang_up_now)
    finally:
        events_stop.set()
        if events_task is not None:
            await asyncio.wait({events_task}, timeout=5.0)
            events_task.cancel()
        async_store.close()
    return 0


def _since(value: str | None) -> float | None:
    """An ISO date/time, or a duration meaning "that long ago" (2h, 7d)."""
    if value is None:
        return None
    try:
        return time.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use an ISO date/time or a duration") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _when(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


@main.command()
@click.option("--device", default=None)
@click.option("--since", default=None, help="ISO date/time or a duration ago (2h, 7d).")
@click.option("--until", default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def calls(
    ctx: Context,
    device: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The most recent calls, newest first."""
    store = ctx.store()
    rows = guarded(
        lambda: store.calls(device=device, since=_since(since), until=_since(until), limit=limit)
    )
    store.close()
    items: list[dict[str, Any]] = [
        {
            "id": c.id,
            "port": c.port,
            "caller_id": c.caller_id,
            "device": c.device,
            "started": _when(c.started),
            "ended": _when(c.ended),
            "seconds": None if c.ended is None else round(c.ended - c.started, 3),
            "outcome": c.outcome,
            "rate": c.rate,
            "modulation": c.modulation,
            "error_correction": c.error_correction,
            "bytes_in": c.bytes_in,
            "bytes_out": c.bytes_out,
            "messages": c.messages,
            "error": c.error,
            "security": c.security,
            "path": c.path,
            "receiver": c.receiver,
        }
        for c in rows
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    click.echo(
        f"{'started':<20} {'path':<5} {'port':<7} {'device':<12} {'caller':<12} {'rate':>6} "
        f"{'in':>7} {'out':>6} {'msgs':>4}  outcome"
    )
    for item in items:
        click.echo(
            f"{item['started']:<20} {item['path']:<5} {item['port']:<7} "
            f"{item['device'] or '-':<12} "
            f"{item['caller_id'] or '-':<12} {item['rate'] or '-':>6} "
            f"{item['bytes_in']:>7} {item['bytes_out']:>6} {item['messages']:>4}  "
            f"{item['outcome']}{_security_text(item['security'])}"
        )
    summary = _refusal_summary(items)
    if summary:
        click.echo(summary)


def _refusal_summary(items: list[dict[str, Any]]) -> str:
    """How many of these calls were refused, failed their handshake or met forgery:
    what an operator looks for after an attack."""
    counts: dict[str, int] = {}
    for item in items:
        outcome = item["outcome"] or ""
        if outcome.startswith("refused") or outcome == "failed":
            counts[outcome] = counts.get(outcome, 0) + 1
        for name, count in (item["security"] or {}).items():
            if count and name in ("auth_failures", "replays"):
                counts[name] = counts.get(name, 0) + count
    if not counts:
        return ""
    return "\n" + ", ".join(f"{count} {what}" for what, count in sorted(counts.items()))


def _security_text(counters: dict[str, int]) -> str:
    """What the protocol counted in a call, when it counted anything: "  [replays=1]"."""
    shown = " ".join(f"{name}={count}" for name, count in counters.items() if count)
    return f"  [{shown}]" if shown else ""


@main.command()
@click.option("--device", default=None)
@click.option("--since", default=None, help="ISO date/time or a duration ago (2h, 7d).")
@click.option("--until", default=None)
@click.option("--severity", type=click.Choice(SEVERITIES), default=None, help="Only this severity.")
@click.option(
    "--min-severity", type=click.Choice(SEVERITIES), default=None, help="This severity and worse."
)
@click.option("--kind", type=click.Choice(["report", "line-test", "inventory"]), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Include each message's content.")
@pass_context
def reports(
    ctx: Context,
    device: str | None,
    since: str | None,
    until: str | None,
    severity: str | None,
    min_severity: str | None,
    kind: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Stored messages (reports, line tests, inventories), newest first."""
    if severity and min_severity:
        raise click.UsageError("give --severity or --min-severity, not both")
    wanted = (
        [severity]
        if severity
        else SEVERITIES[SEVERITIES.index(min_severity) :]
        if min_severity
        else None
    )
    store = ctx.store()
    rows = guarded(
        lambda: store.messages(
            device=device,
            since=_since(since),
            until=_since(until),
            severity=wanted,
            kind=kind,
            limit=limit,
        )
    )
    store.close()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": m.id,
                        "device": m.device,
                        "message_id": f"{m.epoch:08x}-{m.seq}",
                        "kind": m.kind,
                        "severity": m.severity,
                        "component": m.component,
                        "state": m.state,
                        "received": _when(m.received_at),
                        "call_id": m.call_id,
                        "path": m.path,
                        "text": describe(m.kind, m.content),
                        "content": _jsonable(m.content),
                    }
                    for m in rows
                ],
                indent=2,
            )
        )
        return
    click.echo(
        f"{'received':<20} {'device':<12} {'kind':<10} {'severity':<9} {'component':<14} "
        f"{'state':<10} path"
    )
    for m in rows:
        click.echo(
            f"{_when(m.received_at):<20} {m.device:<12} {m.kind:<10} "
            f"{m.severity or '-':<9} {m.component or '-':<14} {m.state or '-':<10} "
            f"{m.path or '-'}" + (f"  {text}" if (text := describe(m.kind, m.content)) else "")
        )


def _jsonable(content: bytes) -> Any:
    try:
        value = cbor2.loads(content)
    except Exception:
        return {"undecodable": content.hex()}

    def convert(item: Any) -> Any:
        if isinstance(item, bytes):
            return {"hex": item.hex()} if len(item) <= 256 else {"bytes": len(item)}
        if isinstance(item, dict):
            return {str(k): convert(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [convert(v) for v in item]
        if isinstance(item, str | int | float | bool) or item is None:
            return item
        return str(item)

    return convert(value)


@main.command(name="ip")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ip_status(ctx: Context, as_json: bool) -> None:
    """The TCP listener's counters: connections, handshakes, refusals by reason.

    The running receiver writes them every 10 s beside the store (ip-status.json)."""
    from .ip import STATUS_FILE, read_status

    config = ctx.config()
    if not config.ip_listen:
        fail(f"{config.path}: ip.listen: the receiver does not listen on TCP")
    status = read_status(config.state_dir / STATUS_FILE)
    if status is None:
        fail("no status yet: the receiver has not run with [ip] listen", exitcodes.FAILURE)
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    refused = status.get("refused", {})
    click.echo(
        f"listening on {', '.join(status.get('listening', [])) or '-'} "
        f"(as of {_when(status.get('written'))})"
    )
    click.echo(
        f"  connections now {status.get('connections', 0)}, in handshake "
        f"{status.get('handshakes', 0)} (HS1s queued {status.get('queued', 0)}); "
        f"admitted {status.get('admitted', 0)}, "
        f"authenticated {status.get('authenticated', 0)}"
    )
    click.echo(
        "  refused: "
        + (", ".join(f"{count} {why}" for why, count in refused.items() if count) or "none")
    )


main.add_command(oncall)
cli_web.register(main)
main.add_command(store_group)
main.add_command(device_command)
register(main)
