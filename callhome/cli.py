"""`callhome`: the client's command line."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from modem_drivers.hayes import (
    DRIVER_PROFILES,
    HayesModem,
    InitialisationError,
    ModemError,
    ModemNotResponding,
    PortOpenError,
    Timings,
)
from modem_drivers.logs import configure_logging
from modem_drivers.text import escape_bytes

from . import exitcodes
from .keys import KeyFileError, encode_key, load_private_key, public_of, write_private_key

T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix: one line on stderr and an exit code, no traceback."""

    def __init__(self, message: str, code: int = exitcodes.USAGE) -> None:
        super().__init__(message)
        self.code = code


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except UserError as exc:
        click.echo(f"callhome: {exc}", err=True)
        sys.exit(exc.code)
    except (PortOpenError, ModemNotResponding, InitialisationError) as exc:
        click.echo(f"callhome: {exc}", err=True)
        sys.exit(exitcodes.MODEM)
    except ModemError as exc:
        click.echo(f"callhome: modem: {exc}", err=True)
        sys.exit(exitcodes.MODEM)
    except KeyboardInterrupt:
        click.echo("callhome: interrupted", err=True)
        sys.exit(exitcodes.FAILURE)


def logging_options(function: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("-v", "--verbose", count=True,
                  help="-v: progress, -vv: every byte to and from the modem.")
    @click.option("--json-logs/--console-logs", default=None,
                  help="Log format on stderr (default: JSON unless a terminal).")
    @functools.wraps(function)
    def wrapper(*args: Any, verbose: int, json_logs: bool | None, **kwargs: Any) -> Any:
        level = {0: "warning", 1: "info"}.get(verbose, "debug")
        configure_logging(level, json=json_logs)
        return function(*args, **kwargs)

    return wrapper


def modem_options(function: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--profile", default="auto", show_default=True,
                  type=click.Choice(["auto", *DRIVER_PROFILES]),
                  help="Modem family (auto: detected from ATI0/ATI3).")
    @click.option("--time-scale", type=float, default=1.0, show_default=True,
                  help="Shrink every wait by this factor (for a scaled virtual network).")
    @functools.wraps(function)
    def wrapper(*args: Any, profile: str, time_scale: float, **kwargs: Any) -> Any:
        if time_scale <= 0:
            raise click.BadParameter("must be positive", param_hint="--time-scale")
        timings = Timings() if time_scale == 1.0 else _scaled_timings(time_scale)
        return function(*args, profile=profile, timings=timings, **kwargs)

    return wrapper


def _scaled_timings(scale: float) -> Timings:
    """Modem-side waits follow the network's scale; round trips keep a real floor."""
    scaled = Timings().scaled(scale)
    return dataclasses.replace(
        scaled,
        command_timeout=max(scaled.command_timeout, 2.0),
        init_timeout=max(scaled.init_timeout, 2.0),
        reset_timeout=max(scaled.reset_timeout, 2.0),
        hangup_step=max(scaled.hangup_step, 2.0),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The callhome client: calls the support centre over a modem."""


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def keygen(path: str) -> None:
    """Create a new X25519 private key in PATH (mode 0600) and print its public key."""
    try:
        private = write_private_key(path)
    except KeyFileError as exc:
        click.echo(f"callhome: {exc}", err=True)
        sys.exit(exitcodes.USAGE)
    click.echo(encode_key(public_of(private)))


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def pubkey(path: str) -> None:
    """Print the public key of the private key in PATH."""
    try:
        private = load_private_key(path)
    except KeyFileError as exc:
        click.echo(f"callhome: {exc}", err=True)
        sys.exit(exitcodes.USAGE)
    click.echo(encode_key(public_of(private)))


@main.group()
def modem() -> None:
    """Talk to a modem directly (by pyserial URL: /dev/ttyUSB0, rfc2217://, socket://)."""


@modem.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@modem_options
@logging_options
def probe(url: str, as_json: bool, profile: str, timings: Timings) -> None:
    """Identify the modem at URL: profile, identity, capabilities, control lines."""
    result = run_async(_probe(url, profile, timings))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"port          {result['port']['url']} ({result['port']['kind']})")
    lines = result["port"]
    click.echo("control lines " + ", ".join(
        f"{name.upper()} {'yes' if lines[name] else 'no'}" for name in ("dtr", "dcd", "ri")))
    click.echo(f"carrier watch {'DCD' if result['dcd_trusted'] else 'NO CARRIER text'}")
    click.echo(f"profile       {result['profile']}")
    for key, value in result["identity"].items():
        click.echo(f"{key:<13} {value}")


async def _probe(url: str, profile: str, timings: Timings) -> dict[str, Any]:
    async with await HayesModem.open(url, profile=profile, timings=timings) as modem:
        info = await modem.initialize()
        identity = {f"ATI{k}": " / ".join(escape_bytes(line) for line in v)
                    for k, v in info.identity.items()}
        for command in ("+GMI", "+GMM", "+GMR", "+GCAP"):
            try:
                response = await modem.command(command)
            except ModemError:
                continue
            if response.ok and response.info:
                identity[f"AT{command}"] = " / ".join(escape_bytes(x) for x in response.info)
        return {"profile": info.profile, "port": info.port, "dcd_trusted": info.dcd_trusted,
                "identity": identity}


@modem.command(name="at")
@click.argument("url")
@click.argument("commands", nargs=-1, required=True)
@click.option("--init/--no-init", default=False, show_default=True,
              help="Initialise the modem first (reset and the profile's settings).")
@click.option("--timeout", type=float, default=None, help="Seconds per command.")
@modem_options
@logging_options
def at_command(url: str, commands: tuple[str, ...], init: bool, timeout: float | None,
               profile: str, timings: Timings) -> None:
    """Send COMMANDS (e.g. ATI3 'ATS7?') and print the modem's answers."""
    ok = run_async(_at(url, commands, init, timeout, profile, timings))
    sys.exit(exitcodes.OK if ok else exitcodes.MODEM)


async def _at(url: str, commands: tuple[str, ...], init: bool, timeout: float | None,
              profile: str, timings: Timings) -> bool:
    all_ok = True
    async with await HayesModem.open(url, profile=profile, timings=timings) as modem:
        if init:
            await modem.initialize()
        for command in commands:
            response = await modem.command(command, timeout=timeout)
            click.echo(f"> {escape_bytes(response.command)}")
            for line in response.info:
                click.echo(f"  {escape_bytes(line)}")
            click.echo(f"  {escape_bytes(response.text)}")
            all_ok = all_ok and response.ok
    return all_ok


@modem.command()
@click.argument("url")
@click.argument("number")
@click.option("--hold", type=float, default=0.0, help="Stay on the line this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@modem_options
@logging_options
def dial(url: str, number: str, hold: float, as_json: bool, profile: str,
         timings: Timings) -> None:
    """Dial NUMBER, report the connect record, hang up. The exit code says what happened."""
    result = run_async(_dial(url, number, hold, profile, timings))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"outcome   {result['outcome']} after {result['seconds']:.1f} s")
        if result.get("result"):
            click.echo(f"result    {result['result']}")
        for key, value in (result.get("connect") or {}).items():
            if value is not None:
                click.echo(f"{key:<9} {value}")
        if result.get("hangup"):
            click.echo(f"hang-up   by {result['hangup']}")
    sys.exit(result["exit_code"])


async def _dial(url: str, number: str, hold: float, profile: str,
                timings: Timings) -> dict[str, Any]:
    async with await HayesModem.open(url, profile=profile, timings=timings) as modem:
        await modem.initialize()
        try:
            outcome = await modem.dial(number)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        result: dict[str, Any] = {
            "outcome": outcome.outcome.value,
            "seconds": outcome.seconds,
            "result": escape_bytes(outcome.result_line) if outcome.result_line else None,
            "exit_code": exitcodes.DIAL_OUTCOMES[outcome.outcome],
        }
        if outcome.call is not None:
            result["connect"] = outcome.call.record.as_dict()
            if hold > 0:
                await asyncio.sleep(hold * (timings.guard / Timings().guard))
            report = await modem.hangup()
            result["hangup"] = report.method
            result["bytes_received"] = outcome.call.bytes_in
        return result
