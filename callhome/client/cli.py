"""`callhome`: the client's command line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modem_drivers.configfile import TIME_SCALE, ConfigError, check_range, parse_duration
from modem_drivers.hayes import (
    DRIVER_PROFILES,
    HayesModem,
    InitialisationError,
    ModemError,
    ModemNotResponding,
    Outcome,
    PortOpenError,
    SetupOptions,
    Timings,
    dial_string,
    settings_summary,
)
from modem_drivers.logs import configure_logging
from modem_drivers.text import escape_bytes

from .. import exitcodes
from ..config import SetupError, create_files
from ..keys import (
    KeyFileError,
    encode_key,
    load_private_key,
    parse_public_key,
    public_of,
    write_private_key,
)
from ..modemtimings import modem_timings
from ..tcp import parse_endpoint
from ..wire.errors import MessageError
from ..wire.messages import SEVERITIES, Kind
from .agent.cli import agent as agent_commands
from .agent.modemlock import PERSON_WAIT, ModemBusy, modem_lock
from .config import DEFAULT_PATH, ClientConfig, check_client_config, load_client_config
from .paths import MODEM
from .progress import CallProgress, with_ticks
from .spool import Spool, SpoolError

if TYPE_CHECKING:
    # the dialer (the protocol, pyca/cryptography) is imported where a command calls:
    # `callhome agent run` idles without it (see tests/agent/test_footprint.py)
    from .dialer import CallReport

T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix: one line on stderr and an exit code, no traceback."""

    def __init__(self, message: str, code: int = exitcodes.USAGE) -> None:
        super().__init__(message)
        self.code = code


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return reporting_errors(lambda: asyncio.run(coro))


def reporting_errors(function: Callable[[], T]) -> T:
    """Run `function`; an error a user can meet becomes one line on stderr and its exit
    code (see exitcodes), never a traceback."""
    try:
        return function()
    except (ConfigError, KeyFileError, SetupError) as exc:
        click.echo(f"callhome: {exc}", err=True)
        sys.exit(exitcodes.USAGE)
    except SpoolError as exc:
        click.echo(f"callhome: spool: {exc}", err=True)
        sys.exit(exitcodes.STORAGE)
    except UserError as exc:
        click.echo(f"callhome: {exc}", err=True)
        sys.exit(exc.code)
    except MessageError as exc:
        click.echo(f"callhome: cannot send this report: {exc}", err=True)
        sys.exit(exitcodes.USAGE)
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
    @click.option(
        "-v", "--verbose", count=True, help="-v: progress, -vv: every byte to and from the modem."
    )
    @click.option(
        "--json-logs/--console-logs",
        default=None,
        help="Log format on stderr (default: JSON unless a terminal).",
    )
    @functools.wraps(function)
    def wrapper(*args: Any, verbose: int, json_logs: bool | None, **kwargs: Any) -> Any:
        level = {0: "warning", 1: "info"}.get(verbose, "debug")
        configure_logging(level, json=json_logs)
        return function(*args, **kwargs)

    return wrapper


def _seconds(value: float | None, param: click.Parameter) -> float | None:
    """A finite, positive number of seconds (click's ranges let `nan` through)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= 3600):
        raise click.BadParameter("must be a number of seconds between 0 and 3600", param=param)
    return value


@dataclass(frozen=True)
class ModemChoice:
    """How to open and set up a modem from the command line."""

    profile: str
    timings: Timings
    init: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()

    def open(self, url: str) -> Awaitable[HayesModem]:
        return HayesModem.open(
            url, profile=self.profile, timings=self.timings, init=self.init, skip=self.skip
        )


def modem_options(function: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--profile",
        default="auto",
        show_default=True,
        type=click.Choice(["auto", *DRIVER_PROFILES]),
        help="Modem family (auto: detected from ATI0/ATI3; minimal: required settings only).",
    )
    @click.option(
        "--init",
        "init",
        multiple=True,
        metavar="SETTING",
        help="A setting to send too (repeatable); one named like a profile setting "
        "(S0=1 for ATS0=0) replaces it.",
    )
    @click.option(
        "--skip",
        "skip",
        multiple=True,
        metavar="NAME",
        help="A profile setting not to send (repeatable): +VCID, &K, X ...",
    )
    @click.option(
        "--time-scale",
        type=float,
        default=1.0,
        show_default=True,
        help="Shrink every wait by this factor (for a scaled virtual network).",
    )
    @functools.wraps(function)
    def wrapper(
        *args: Any,
        profile: str,
        init: tuple[str, ...],
        skip: tuple[str, ...],
        time_scale: float,
        **kwargs: Any,
    ) -> Any:
        problem = check_range(time_scale, *TIME_SCALE)
        if problem:
            raise click.BadParameter(problem, param_hint="--time-scale")
        try:
            SetupOptions.from_config(init, skip)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--init/--skip") from None
        choice = ModemChoice(profile, modem_timings(time_scale), init, skip)
        return function(*args, modem_choice=choice, **kwargs)

    return wrapper


class _ClientGroup(click.Group):
    """The `callhome` group, with the commands other packages add (the demo comes from
    the receiver package, which the client itself never imports). They are loaded only
    when named or listed: every `callhome line-test` would otherwise import the whole
    centre and the virtual network first."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # imported here: importlib.metadata (email, zipfile, csv ...) is about 2 MB of
        # RSS that `callhome agent run` never needs (tests/agent/test_footprint.py)
        from importlib.metadata import entry_points

        extra = [entry.name for entry in entry_points(group="callhome.commands")]
        return sorted({*super().list_commands(ctx), *extra})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        from importlib.metadata import entry_points

        for entry in entry_points(group="callhome.commands", name=name):
            try:
                loaded = entry.load()
            except Exception as exc:  # a broken extension must not break the client
                click.echo(f"callhome: extension {entry.name!r} not loaded: {exc}", err=True)
                return None
            return loaded if isinstance(loaded, click.Command) else None
        return None


@click.group(
    cls=_ClientGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExit codes:\n"
    + "\n".join(f"  {code:>2}  {meaning}" for code, meaning in exitcodes.TABLE),
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="CALLHOME_CONFIG",
    default=str(DEFAULT_PATH),
    show_default=True,
    help="The client's config file (for init, send, queue, line-test).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str) -> None:
    """The callhome client: calls the support centre over a modem."""
    ctx.obj = Path(config_path)


def _client(config_path: Path) -> tuple[ClientConfig, Spool]:
    config = load_client_config(config_path)
    return config, Spool(config.spool)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", required=True, help="This device's name, as the centre enrols it.")
@click.option("--centre-key", required=True, help="The centre's public key.")
@click.option(
    "--number",
    "numbers",
    multiple=True,
    help="A number of the centre (repeatable; tried in order).",
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    help="A modem URL (repeatable; tried in order).",
)
@click.option(
    "--ip",
    "ips",
    multiple=True,
    help="The centre's TCP address, host:port (repeatable): tried before the modem.",
)
@click.option(
    "--profile", default="auto", show_default=True, type=click.Choice(["auto", *DRIVER_PROFILES])
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Rounds of dialling (all numbers on all modems) per call.",
)
@click.option(
    "--retry-delay",
    default="60s",
    show_default=True,
    help="First wait before another round; later ones grow, jittered, up to an hour.",
)
@click.option("--time-scale", type=float, default=1.0, hidden=True)
def init(
    directory: str,
    name: str,
    centre_key: str,
    numbers: tuple[str, ...],
    ports: tuple[str, ...],
    ips: tuple[str, ...],
    profile: str,
    attempts: int,
    retry_delay: str,
    time_scale: float,
) -> None:
    """Set up this device in DIRECTORY: key pair, config and spool. Never overwrites."""
    folder = Path(directory)
    if (numbers or ports or not ips) and not (numbers and ports):
        raise click.UsageError("give --number and --port (a modem path), or --ip, or both")
    for address in ips:
        try:
            parse_endpoint(address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ip") from None
    try:
        delay = round(parse_duration(retry_delay), 3)  # the file holds milliseconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--retry-delay") from None
    config = ClientConfig(
        path=folder / "client.toml",
        name=name,
        key=Path("device.key"),
        spool=Path("spool.db"),
        numbers=list(numbers),
        ports=list(ports),
        profile=profile,
        time_scale=time_scale,
        attempts=attempts,
        retry_delay=delay,
        path_specs=init_paths(ips, modem=bool(ports)),
    )
    try:
        config.centre_key = parse_public_key(centre_key)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--centre-key") from None
    for number in numbers:
        try:
            dial_string(number)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--number") from None
    reporting_errors(lambda: check_client_config(config, centre_key.strip()))
    key_file = folder / "device.key"
    made = reporting_errors(
        lambda: create_files(
            {
                folder / "spool.db": lambda path: Spool(path, create=True).close(),
                key_file: write_private_key,
                config.path: lambda path: path.write_text(config.dump(centre_key.strip())),
            }
        )
    )
    private = made[key_file]
    public = encode_key(public_of(private))
    click.echo(f"device {name} set up in {folder}")
    click.echo(f"device public key: {public}")
    click.echo(f"at the centre: callhome-receiver enroll {name} --pubkey {public}")


class _Narrator:
    """Prints each step of a call as it starts (to stderr when stdout carries JSON)."""

    def __init__(self, to_stderr: bool) -> None:
        self.started = time.monotonic()
        self.to_stderr = to_stderr

    def __call__(self, step: str, **fields: Any) -> None:
        text = {
            "opening": "opening {port}",
            "modem failed": "modem {port} failed: {error}",
            "dialling": "dialling {number} via {port} ({profile})",
            "dial failed": "{number}: {result}",
            "connected": "connected: {connect}",
            "handshake": "handshake",
            "transfer": "transfer: {messages} message(s)",
            "hanging up": "hanging up",
            "waiting": "every line failed; trying again in {seconds:g} s",
            "connecting": "connecting to {address} (path {path})",
            "connect failed": "path {path}: {error}",
        }.get(step, step)
        if step == "dialling":
            text += " ... ringing, training"
        click.echo(
            f"[{time.monotonic() - self.started:6.1f} s] " + text.format(**fields),
            err=self.to_stderr,
        )


@main.command()
@click.option(
    "--file", "report_file", type=click.File("r"), help="A JSON file with the report (an object)."
)
@click.option("--severity", type=click.Choice(SEVERITIES))
@click.option("--component")
@click.option("--state")
@click.option("--message")
@click.option(
    "--kind", type=click.Choice(["report", "inventory"]), default="report", show_default=True
)
@click.option("--no-call", is_flag=True, help="Only queue it; the next call carries it.")
@click.option("--json", "as_json", is_flag=True)
@logging_options
@click.pass_obj
def send(
    config_path: Path,
    report_file: Any,
    severity: str | None,
    component: str | None,
    state: str | None,
    message: str | None,
    kind: str,
    no_call: bool,
    as_json: bool,
) -> None:
    """Queue a report, then call the centre with everything queued."""
    content: dict[str, Any] = {}
    if report_file is not None:
        try:
            content = json.load(report_file)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--file") from None
        if not isinstance(content, dict):
            raise click.BadParameter("the report must be a JSON object", param_hint="--file")
        if content.get("severity") is not None and content["severity"] not in SEVERITIES:
            raise click.BadParameter(
                f"severity {content['severity']!r} is not one of {', '.join(SEVERITIES)}",
                param_hint="--file",
            )
    for key, value in (
        ("severity", severity),
        ("component", component),
        ("state", state),
        ("message", message),
    ):
        if value is not None:
            content[key] = value
    if not content:
        raise click.UsageError("give a report: --file, or --severity/--component/--state/--message")
    content.setdefault("time", int(time.time()))
    report = run_async(_send(config_path, Kind.from_label(kind), content, no_call, as_json))
    if report is None:
        return
    _print_call(report, as_json, title="send")
    sys.exit(report.exit_code)


async def _send(
    config_path: Path, kind: Kind, content: dict[str, Any], no_call: bool, as_json: bool
) -> CallReport | None:
    config, spool = _client(config_path)
    try:
        summary = (
            " ".join(str(content[k]) for k in ("severity", "component", "state") if k in content)
            or None
        )
        seq = spool.enqueue(kind, content, summary)
        click.echo(f"queued as message {seq}", err=as_json)
        if no_call:
            return None
        private = load_private_key(config.key)
        async with _modem(config):
            return await _call_with_progress(config, spool, private, as_json)
    finally:
        spool.close()


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def queue(config_path: Path, as_json: bool) -> None:
    """What waits in the spool for the next call."""

    def read() -> list[Any]:
        _config, spool = _client(config_path)
        try:
            return spool.queued(include_rejected=True)
        finally:
            spool.close()

    messages = reporting_errors(read)
    items = [
        {
            "seq": m.seq,
            "kind": m.kind.label,
            "created": _iso(m.created),
            "attempts": m.attempts,
            "status": m.status,
            "detail": m.detail,
            "summary": m.summary,
            "bytes": len(m.body),
        }
        for m in messages
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("the spool is empty")
        return
    click.echo(f"{'seq':>5} {'kind':<10} {'created':<20} {'tries':>5} {'bytes':>6}  status")
    for item in items:
        status = item["status"] + (f" ({item['detail']})" if item["detail"] else "")
        click.echo(
            f"{item['seq']:>5} {item['kind']:<10} {item['created']:<20} "
            f"{item['attempts']:>5} {item['bytes']:>6}  {status}  {item['summary'] or ''}"
        )


@main.command(name="line-test")
@click.option("--json", "as_json", is_flag=True)
@click.option("--path", "path_name", default=None, help="Test this path only (a [paths] name).")
@click.option("--all-paths", is_flag=True, help="Test every path in turn, one row each.")
@logging_options
@click.pass_obj
def line_test(config_path: Path, as_json: bool, path_name: str | None, all_paths: bool) -> None:
    """Call the centre with a test message and report how the call went."""
    if path_name is not None and all_paths:
        raise click.UsageError("give --path or --all-paths, not both")
    if all_paths:
        results = run_async(_line_test_paths(config_path, as_json))
        _print_paths(results, as_json)
        sys.exit(next((r.exit_code for _, r in results if r.exit_code), 0))
    report, seq = run_async(_line_test(config_path, as_json, path_name))
    acknowledged = seq in report.acknowledged or seq in report.duplicates
    if report.result == "ok" and not acknowledged:
        report.result = "protocol"
        report.detail = "the centre did not acknowledge the test"
    _print_call(report, as_json, title="line test")
    sys.exit(report.exit_code)


async def _line_test(
    config_path: Path, as_json: bool, path_name: str | None = None
) -> tuple[CallReport, int]:
    from .dialer import line_test_content

    config, spool = _client(config_path)
    try:
        content = line_test_content(spool)
        if path_name is not None:
            config = only_path(config, path_name)
            content["path_tested"] = path_name
        seq = spool.enqueue(Kind.LINE_TEST, content, "line test")
        private = load_private_key(config.key)
        async with _modem(config):
            report = await _call_with_progress(config, spool, private, as_json)
        return report, seq
    finally:
        spool.close()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_call(report: CallReport, as_json: bool, *, title: str) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    verdict = {
        "ok": "acknowledged by the centre",
        "refused": f"refused by the centre ({report.detail})",
        "dropped": "the call was cut before the centre answered everything",
    }.get(
        report.result, f"failed: {report.result}" + (f" ({report.detail})" if report.detail else "")
    )
    click.echo(f"\n{title}: {verdict}")
    rows: list[tuple[str, str]] = []
    if report.path is not None and report.port == "tcp":
        rows.append(("path", f"{report.path}: TCP to {report.number}"))
    elif report.number:
        rows.append(("number", f"{report.number} via {report.port} ({report.profile})"))
    if report.connect_seconds is not None:
        rows.append(("time to CONNECT", f"{report.connect_seconds:.1f} s"))
    if report.connect and report.port != "tcp":
        connect = report.connect
        parts = [f"{connect.get('dce_rate') or '?'} bit/s"]
        parts += [
            str(connect[k])
            for k in ("modulation", "error_correction", "compression")
            if connect.get(k)
        ]
        rows.append(("line", ", ".join(parts) + f"  ({connect['connect']})"))
    if report.handshake_seconds is not None:
        rows.append(("handshake", _handshake_text(report)))
    if report.connect:
        rows.append(("bytes", f"{report.bytes_sent} sent, {report.bytes_received} received"))
    if report.transfer_seconds is not None:
        rows.append(("data phase", f"{report.transfer_seconds:.2f} s"))
    if report.line_seconds is not None:
        rows.append(("on the line", f"{report.line_seconds:.1f} s"))
    if report.skew_ms is not None:
        rows.append(("clock skew", f"{report.skew_ms:+d} ms against the centre"))
    delivered = len(report.acknowledged) + len(report.duplicates)
    if report.sent:
        rows.append(
            (
                "messages",
                f"{delivered} of {len(report.sent)} acknowledged"
                + (f" ({len(report.duplicates)} already held)" if report.duplicates else ""),
            )
        )
    if report.rejected:
        rows.append(("rejected", ", ".join(f"{s}: {r}" for s, r in report.rejected.items())))
    if report.undelivered:
        rows.append(("still queued", ", ".join(map(str, report.undelivered))))
    rows.append(("result", report.result))
    for label, value in rows:
        click.echo(f"  {label:<16} {value}")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def keygen(path: str) -> None:
    """Create a new X25519 private key in PATH (mode 0600) and print its public key."""
    private = reporting_errors(lambda: write_private_key(path))
    click.echo(encode_key(public_of(private)))


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def pubkey(path: str) -> None:
    """Print the public key of the private key in PATH."""
    private = reporting_errors(lambda: load_private_key(path))
    click.echo(encode_key(public_of(private)))


@main.group()
def modem() -> None:
    """Talk to a modem directly (by pyserial URL: /dev/ttyUSB0, rfc2217://, socket://)."""


@modem.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@modem_options
@logging_options
def probe(url: str, as_json: bool, modem_choice: ModemChoice) -> None:
    """Identify the modem at URL: profile, identity, features present and refused (with
    the modem's exact answer), control lines."""
    result = run_async(_probe(url, modem_choice))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"port          {result['port']['url']} ({result['port']['kind']})")
    lines = result["port"]
    click.echo(
        "control lines "
        + ", ".join(
            f"{name.upper()} {'yes' if lines[name] else 'no'}" for name in ("dtr", "dcd", "ri")
        )
    )
    click.echo(f"carrier watch {'DCD' if result['dcd_trusted'] else 'NO CARRIER text'}")
    click.echo(f"profile       {result['profile']}")
    for key, value in result["identity"].items():
        click.echo(f"{key:<13} {value}")
    for heading, entries in (("present", result["present"]), ("refused", result["refused"])):
        click.echo(f"{heading:<13} {'(none)' if not entries else entries[0]}")
        for entry in entries[1:]:
            click.echo(f"{'':<13} {entry}")


async def _probe(url: str, choice: ModemChoice) -> dict[str, Any]:
    async with await choice.open(url) as modem:
        info = await modem.initialize()
        identity = {
            f"ATI{k}": " / ".join(escape_bytes(line) for line in v)
            for k, v in info.identity.items()
        }
        # the V.250 identification queries are extended commands: a modem that mis-parsed
        # one during set-up would take `AT+GCAP` for G, C and A (answer!), so only a modem
        # that answered extended settings properly is asked
        extended = [r for r in info.settings if r.setting.extended and r.sent]
        if extended and all(r.accepted or r.answer == "'ERROR'" for r in extended):
            for command in ("+GMI", "+GMM", "+GMR", "+GCAP"):
                try:
                    response = await modem.command(command)
                except ModemError:
                    continue
                if response.ok and response.info:
                    identity[f"AT{command}"] = " / ".join(escape_bytes(x) for x in response.info)
        summary = settings_summary(info.settings)
        return {
            "profile": info.profile,
            "port": info.port,
            "dcd_trusted": info.dcd_trusted,
            "identity": identity,
            "present": summary["present"],
            "refused": summary["refused"],
            "settings": [
                {
                    "command": r.setting.command.decode("latin-1"),
                    "feature": r.setting.feature,
                    "required": r.setting.required,
                    "accepted": r.accepted,
                    "sent": r.sent,
                    "answer": r.answer,
                }
                for r in info.settings
            ],
        }


@modem.command(name="at")
@click.argument("url")
@click.argument("commands", nargs=-1, required=True)
@click.option(
    "--setup/--no-setup",
    "initialise",
    default=False,
    show_default=True,
    help="Set the modem up first (reset and the profile's settings, with any --init).",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    callback=lambda ctx, param, value: _seconds(value, param),
    help="Seconds per command.",
)
@modem_options
@logging_options
def at_command(
    url: str,
    commands: tuple[str, ...],
    initialise: bool,
    timeout: float | None,
    modem_choice: ModemChoice,
) -> None:
    """Send COMMANDS (e.g. ATI3 'ATS7?') and print the modem's answers."""
    ok = run_async(_at(url, commands, initialise, timeout, modem_choice))
    sys.exit(exitcodes.OK if ok else exitcodes.MODEM)


async def _at(
    url: str,
    commands: tuple[str, ...],
    initialise: bool,
    timeout: float | None,
    choice: ModemChoice,
) -> bool:
    all_ok = True
    async with await choice.open(url) as modem:
        if initialise:
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
def dial(url: str, number: str, hold: float, as_json: bool, modem_choice: ModemChoice) -> None:
    """Dial NUMBER (digits, or host:port for an IP modem), report the connect record, hang
    up. The exit code says what happened: a call that ends while held (the far end busy
    or not answering after an early CONNECT, or the line lost) is not a success."""
    try:
        dial_string(number)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NUMBER") from None
    if not math.isfinite(hold) or hold < 0:
        raise click.BadParameter("must be a number of seconds >= 0", param_hint="--hold")
    result = run_async(_dial(url, number, hold, modem_choice))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"outcome   {result['outcome']} after {result['seconds']:.1f} s")
        if result.get("result"):
            click.echo(f"result    {result['result']}")
        if result.get("ended"):
            click.echo(f"ended     {result['ended']}")
        for key, value in (result.get("connect") or {}).items():
            if value is not None:
                click.echo(f"{key:<9} {value}")
        if result.get("hangup"):
            click.echo(f"hang-up   by {result['hangup']}")
    sys.exit(result["exit_code"])


async def _dial(url: str, number: str, hold: float, choice: ModemChoice) -> dict[str, Any]:
    timings = choice.timings
    async with await choice.open(url) as modem:
        await modem.initialize()
        outcome = await modem.dial(number)
        result: dict[str, Any] = {
            "outcome": outcome.outcome.value,
            "seconds": outcome.seconds,
            "result": escape_bytes(outcome.result_line) if outcome.result_line else None,
            "exit_code": exitcodes.for_dial(outcome.outcome),
        }
        call = outcome.call
        if call is None:
            return result
        result["connect"] = call.record.as_dict()
        if hold > 0:
            # a modem that says CONNECT on link-up reports the far end's BUSY or NO
            # ANSWER as text afterwards, then ends the call: watch for it while holding
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.ended.wait(), hold * (timings.guard / Timings().guard))
        else:
            await asyncio.sleep(timings.guard)  # a BUSY that follows CONNECT at once
        early = call.early_result()
        if early is not None or not call.open:
            final = Outcome.of(early) if early is not None else Outcome.NO_CARRIER
            result["outcome"] = final.value
            result["exit_code"] = exitcodes.for_dial(final)
            result["ended"] = (
                f"the far end said {early.name.replace('_', ' ')} after CONNECT"
                if early is not None
                else f"the call ended while held ({call.end_reason})"
            )
        if call.open:
            report = await modem.hangup()
            result["hangup"] = report.method
        result["bytes_received"] = call.bytes_in
        return result


def init_paths(ips: tuple[str, ...], *, modem: bool) -> dict[str, str]:
    """`init`'s [paths]: the IP addresses first (ip, ip2, ...), then the modem; none
    at all for a modem alone (the default)."""
    if not ips:
        return {}
    specs = {("ip" if index == 0 else f"ip{index + 1}"): ip for index, ip in enumerate(ips)}
    return specs | ({MODEM: MODEM} if modem else {})


def only_path(config: ClientConfig, name: str) -> ClientConfig:
    """`config` with the one path `name`, tried once (the caller asked for this path)."""
    specs = config.path_specs or {MODEM: MODEM}
    if name not in specs:
        raise UserError(f"{config.path}: no path named {name!r} (paths: {', '.join(specs)})")
    return dataclasses.replace(config, path_specs={name: specs[name]}, attempts=1)


async def _line_test_paths(config_path: Path, as_json: bool) -> list[tuple[str, CallReport]]:
    """A line test on each path in turn (each its own call, tried once)."""
    from .dialer import call_centre, line_test_content

    config, spool = _client(config_path)
    results: list[tuple[str, CallReport]] = []
    try:
        private = load_private_key(config.key)
        for name in config.path_specs or {MODEM: MODEM}:
            content = line_test_content(spool) | {"path_tested": name}
            seq = spool.enqueue(Kind.LINE_TEST, content, f"line test of {name}")
            report = await call_centre(
                only_path(config, name), spool, private, progress=_Narrator(True)
            )
            if report.result == "ok" and seq not in report.acknowledged + report.duplicates:
                report.result = "protocol"
                report.detail = "the centre did not acknowledge the test"
            results.append((name, report))
    finally:
        spool.close()
    return results


def _print_paths(results: list[tuple[str, CallReport]], as_json: bool) -> None:
    if as_json:
        items = [{"path_tested": name, **report.as_dict()} for name, report in results]
        click.echo(json.dumps(items, indent=2, default=str))
        return
    click.echo(f"{'path':<12} {'via':<28} {'handshake':>10} {'on line':>8}  result")
    for name, report in results:
        via = report.number if report.port == "tcp" else report.port or "-"
        handshake = "-" if report.handshake_seconds is None else f"{report.handshake_seconds:.2f} s"
        seconds = "-" if report.line_seconds is None else f"{report.line_seconds:.1f} s"
        result = report.result + (f" ({report.detail})" if report.detail else "")
        click.echo(f"{name:<12} {str(via)[:28]:<28} {handshake:>10} {seconds:>8}  {result}")


@contextlib.asynccontextmanager
async def _modem(config: ClientConfig) -> AsyncIterator[None]:
    """The modem, shared with the agent: wait for it a while, then say who holds it."""
    try:
        async with modem_lock(config.spool, "callhome", wait=PERSON_WAIT * config.time_scale):
            yield
    except ModemBusy as exc:
        raise UserError(
            f"{exc}; the message stays queued for its next call", exitcodes.MODEM
        ) from None


def _handshake_text(report: CallReport) -> str:
    """Every attempt counted: a retry shows, with what it cost."""
    seconds = report.handshake_seconds or 0.0
    attempts = max(1, report.handshake_attempts)
    text = f"{seconds:.2f} s, {attempts} attempt{'s' if attempts > 1 else ''}"
    if report.handshake_round_trip is not None:
        text += f" (round trip {report.handshake_round_trip:.2f} s)"
    return text


async def _call_with_progress(
    config: ClientConfig, spool: Spool, private: bytes, as_json: bool
) -> CallReport:
    """A progress bar on a terminal, plain lines elsewhere (stderr when stdout is JSON)."""
    from .dialer import call_centre

    progress = CallProgress(sys.stderr if as_json else sys.stdout)
    return await with_ticks(progress, call_centre(config, spool, private, progress=progress))


main.add_command(agent_commands)
