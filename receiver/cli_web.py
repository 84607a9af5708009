"""`callhome-receiver web` (the console alone, against the centre's store) and
`callhome-receiver users add|passwd|remove|list` (the console's accounts); and what
`run` calls to serve the console on its own loop when `[web] listen` is configured.

The web stack (aiohttp, Jinja2, prometheus_client) is imported only when a console is
served: every other command of `callhome-receiver` starts without it."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

import click
import structlog

from callhome import exitcodes
from modem_drivers.configfile import ConfigError
from modem_drivers.logs import configure_logging

from .cli_store import open_store, store_location
from .config import CentreConfig
from .store import AlreadyExists, AsyncStore, NotFound, Store, StoreUnavailable
from .sun.model import routing_next_to
from .web.auth import ROLES, BadPassword, hash_password
from .web.config import WebConfig, parse_web

if TYPE_CHECKING:
    from .web.app import Console
    from .web.live import Worker


def _fail(message: str, code: int = exitcodes.USAGE) -> NoReturn:
    click.echo(f"callhome-receiver: {message}", err=True)
    sys.exit(code)


def web_config(config: CentreConfig) -> WebConfig | None:
    return parse_web(config.web, config.path)


def prepare(
    config: CentreConfig, web: WebConfig | None = None, sync: Store | None = None
) -> Console | None:
    """The console `config` asks for (None: `[web] listen` is not set). Opens its own
    store connection (unless given `sync`: `callhome demo`'s store, whatever the
    environment says); a bad setting, routing file or certificate is one line and exit."""
    try:
        web = web or web_config(config)
        if web is None:
            return None
        from .web.app import Console, tls_context
        from .web.storage import ConsoleStore

        routing = routing_next_to(config.path)
        context = tls_context(web)
        # the centre's store, whichever it is (SQLite file or PostgreSQL)
        sync = sync or open_store(store_location(config), timeout=3.0)
    except ConfigError as exc:
        _fail(str(exc))
    except (OSError, ssl.SSLError) as exc:
        _fail(f"{config.path}: web.tls_cert / web.tls_key: cannot be used: {exc}")
    except StoreUnavailable as exc:
        _fail(str(exc), exitcodes.STORAGE)
    console = Console(
        store=ConsoleStore(sync), sqlite=sync, config=web, routing=routing, tls=context
    )
    if config.supervision.enabled:
        # incidents and device states as supervision keeps them in the store, whether
        # its engine runs in this process (`run`) or in another (`web` alone)
        from .supervision.console import StoreSupervision

        console.supervision = StoreSupervision(console.store, sync, config.supervision)
    return console


def bank_store(console: Console | None, store: Store) -> AsyncStore:
    """The bank's store: timed for the metrics when the console serves them."""
    from .metrics import TimedStore

    return TimedStore(store, console.live.metrics) if console else AsyncStore(store)


def bank_notify(console: Console | None) -> Any:
    return console.live.bank_event if console else None


@contextlib.asynccontextmanager
async def served(
    console: Console | None, workers: list[Worker] | None = None
) -> AsyncIterator[None]:
    """Serve `console` on the running loop for the duration of the block (nothing when
    None); `workers`: the bank's ports, when it runs in this process."""
    if console is None:
        yield
        return
    from .web.app import serving

    if workers is not None:
        console.live.attach_bank(workers)
    try:
        async with serving(console, console.tls):
            yield
    finally:
        console.store.close()


@click.command("web")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--listen", default=None, help="HOST:PORT (default: [web] listen).")
@click.pass_context
def web_command(ctx: click.Context, log_level: str, listen: str | None) -> None:
    """Serve the operator console against the centre's store, without the bank (port
    states are then unknown). `run` serves it too when [web] listen is set."""
    configure_logging(log_level)
    config: CentreConfig = ctx.find_root().obj.config()
    data = dict(config.web)
    if listen is not None:
        data["listen"] = listen
    try:
        web = parse_web(data, config.path)
    except ConfigError as exc:
        _fail(str(exc))
    if web is None:
        _fail(f"{config.path}: web.listen: not set (or give --listen HOST:PORT)")
    console = prepare(config, web)
    assert console is not None
    asyncio.run(_serve(console))


async def _serve(console: Console) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with served(console):
            await stop.wait()
    except OSError as exc:
        structlog.get_logger("callhome.console").error("console.cannot_listen", error=str(exc))
        _fail(f"cannot listen on {console.config.host}:{console.config.port}: {exc}")


# -- accounts ---------------------------------------------------------------------------


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _password(given: str | None) -> str:
    text = given or click.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        return hash_password(str(text))
    except BadPassword as exc:
        _fail(str(exc))


def _store(ctx: click.Context) -> Store:
    store: Store = ctx.find_root().obj.store()
    return store


@click.group("users")
def users() -> None:
    """The console's accounts (roles: viewer, operator, admin)."""


password_option = click.option(
    "--password",
    envvar="CALLHOME_CONSOLE_PASSWORD",
    default=None,
    help="The password (default: asked for; or CALLHOME_CONSOLE_PASSWORD).",
)


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@password_option
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str, password: str | None) -> None:
    """Add an account."""
    if not name or len(name) > 64 or not name.isprintable():
        _fail("NAME: 1 to 64 printable characters")
    hashed = _password(password)
    store = _store(ctx)
    try:
        store.console_add_account(name, hashed, role, time.time())
        store.console_audit(_who(), "account added", f"account {name}", role, time.time())
    except AlreadyExists as exc:
        _fail(str(exc))
    except StoreUnavailable as exc:
        _fail(str(exc), exitcodes.STORAGE)
    finally:
        store.close()
    click.echo(f"added {name} ({role})")


@users.command("passwd")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default=None, help="A new role too.")
@password_option
@click.pass_context
def users_passwd(ctx: click.Context, name: str, role: str | None, password: str | None) -> None:
    """Set an account's password (its sessions end), and optionally its role."""
    hashed = _password(password)
    store = _store(ctx)
    try:
        store.console_set_account(name, password_hash=hashed, role=role)
        store.console_audit(_who(), "password set", f"account {name}", role, time.time())
    except NotFound as exc:
        _fail(str(exc))
    except StoreUnavailable as exc:
        _fail(str(exc), exitcodes.STORAGE)
    finally:
        store.close()
    click.echo(f"password of {name} set" + (f", role {role}" if role else ""))


@users.command("remove")
@click.argument("name")
@click.pass_context
def users_remove(ctx: click.Context, name: str) -> None:
    """Remove an account (its sessions end)."""
    store = _store(ctx)
    try:
        store.console_remove_account(name)
        store.console_audit(_who(), "account removed", f"account {name}", None, time.time())
    except NotFound as exc:
        _fail(str(exc))
    except StoreUnavailable as exc:
        _fail(str(exc), exitcodes.STORAGE)
    finally:
        store.close()
    click.echo(f"removed {name}")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List the accounts and their roles."""
    store = _store(ctx)
    try:
        accounts = store.console_accounts()
    except StoreUnavailable as exc:
        _fail(str(exc), exitcodes.STORAGE)
    finally:
        store.close()
    for account in accounts:
        click.echo(f"{account.name:<24} {account.role}")


def register(main: click.Group) -> None:
    main.add_command(web_command)
    main.add_command(users)
