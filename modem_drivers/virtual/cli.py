"""`callhome-sim`: run a virtual phone network, or watch a scripted call on one."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import serial
import structlog

from ..configfile import ConfigError
from ..logs import configure_logging
from ..text import escape_bytes
from .config import EXAMPLE, SimConfig, load_config
from .network import PhoneNetwork
from .profiles import PROFILES
from .runner import NetworkRunner

log = structlog.get_logger("callhome.sim")


@click.group()
def main() -> None:
    """A virtual phone network of V.250 modems, reachable as ptys, TCP or RFC 2217 ports."""


@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--time-scale", type=float, help="Real seconds per network second.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--json-logs/--console-logs",
    default=None,
    help="Log format (default: JSON unless stderr is a terminal).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    help="Where pty links of modems without a path go.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False),
    help="Write the modems' URLs here as JSON once every port is ready.",
)
def run(
    config_file: str,
    time_scale: float | None,
    log_level: str | None,
    json_logs: bool | None,
    run_dir: str | None,
    ready_file: str | None,
) -> None:
    """Run the network described by CONFIG (TOML) until Ctrl-C or SIGTERM."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        click.echo(f"callhome-sim: {exc}", err=True)
        sys.exit(2)
    if time_scale is not None:
        if time_scale <= 0:
            click.echo("callhome-sim: --time-scale must be positive", err=True)
            sys.exit(2)
        config.time_scale = time_scale
    configure_logging(log_level or config.log_level, json=json_logs)
    directory = Path(run_dir) if run_dir else Path(tempfile.gettempdir()) / "callhome-sim"
    try:
        code = asyncio.run(_serve(config, directory, ready_file))
    except OSError as exc:
        click.echo(f"callhome-sim: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


async def _serve(config: SimConfig, run_dir: Path, ready_file: str | None) -> int:
    network = config.build_network(trace=_trace_to_log)
    runner = NetworkRunner(network, time_scale=config.time_scale)
    await runner.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for spec in config.modems:
            path = spec.path
            if spec.port == "pty" and path is None:
                path = str(run_dir / spec.name)
            await runner.expose(spec.name, spec.port, path=path, port=spec.tcp_port)
        for fault in config.faults:
            runner.at(
                fault.at,
                lambda f=fault: runner.apply_fault(  # type: ignore[misc]
                    f.kind, f.modem, seconds=f.seconds, count=f.count, data=f.data
                ),
            )
        endpoints = runner.describe()
        for spec, endpoint in zip(config.modems, endpoints, strict=True):
            endpoint["number"] = spec.number
            endpoint["profile"] = spec.profile
        _print_endpoints(endpoints, network)
        if ready_file:
            # Atomically: whoever polls for the file must never read half of it.
            target = Path(ready_file)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(json.dumps({"modems": endpoints}, indent=2))
            partial.replace(target)
        log.info("sim.ready", modems=len(endpoints), time_scale=config.time_scale)
        await stop.wait()
    finally:
        log.info("sim.stopping")
        await runner.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    calls = list(network.history)
    click.echo(
        f"{len(calls)} call(s) ended; {sum(1 for c in calls if c.connected is not None)} connected."
    )
    return 0


def _print_endpoints(endpoints: list[dict[str, Any]], network: PhoneNetwork) -> None:
    hunt = {
        line.name: number
        for number, lines in network.numbers.items()
        if len(lines) > 1
        for line in lines
    }
    click.echo(f"{'modem':<12} {'profile':<9} {'number':<12} url")
    for endpoint in endpoints:
        number = endpoint.get("number") or hunt.get(endpoint["modem"], "-")
        if endpoint["modem"] in hunt:
            number = f"{hunt[endpoint['modem']]}*"
        click.echo(
            f"{endpoint['modem']:<12} {endpoint['profile']:<9} {number:<12} {endpoint['url']}"
        )
    if hunt:
        click.echo("(* hunt group)")
    sys.stdout.flush()


def _trace_to_log(event: str, **fields: Any) -> None:
    if event.startswith("call."):
        log.info(event, **fields)
    else:
        log.debug(event, **fields)


@main.command()
def profiles() -> None:
    """List the modem profiles."""
    for profile in PROFILES.values():
        click.echo(f"{profile.name:<9} {profile.description}")


@main.command()
def example() -> None:
    """Print an example network file."""
    click.echo(EXAMPLE, nl=False)


@main.command()
@click.option(
    "--time-scale",
    type=float,
    default=0.25,
    show_default=True,
    help="Real seconds per network second.",
)
def demo(time_scale: float) -> None:
    """A scripted call between two virtual modems over ptys, with its transcript."""
    configure_logging("warning", json=False)
    sys.exit(asyncio.run(_demo(time_scale)))


async def _demo(time_scale: float) -> int:
    network = PhoneNetwork()
    network.add_modem("client", "generic", number="5550001")
    network.add_modem("centre", "usr", number="5550100")
    network.set_line("client", rate=9600, latency=0.08)
    runner = NetworkRunner(network, time_scale=time_scale)
    await runner.start()
    with tempfile.TemporaryDirectory(prefix="callhome-sim-") as tmp:
        client = await runner.expose("client", "pty", path=f"{tmp}/client")
        centre = await runner.expose("centre", "pty", path=f"{tmp}/centre")
        click.echo(f"client modem: {client.url}\ncentre modem: {centre.url}\n")
        script = _DemoScript(client.url, centre.url, runner, time_scale)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, script.run)
        await runner.stop()
    for record in network.history:
        click.echo(
            f"\ncall {record.caller} -> {record.number} ({record.callee}): {record.outcome}, "
            f"{record.rate} bit/s, {record.bytes_caller_to_callee} B sent, "
            f"{record.bytes_callee_to_caller} B received"
        )
    return 0 if ok else 1


class _DemoScript:
    """Plays both DTEs with plain pyserial and prints every byte each way."""

    def __init__(self, client: str, centre: str, runner: NetworkRunner, scale: float) -> None:
        self.client = serial.serial_for_url(client, timeout=0)
        self.centre = serial.serial_for_url(centre, timeout=0)
        self.runner = runner
        self.scale = scale
        self.lock = threading.Lock()

    def show(self, who: str, arrow: str, data: bytes) -> None:
        click.echo(f"[{self.runner.now():7.2f} s] {who:<6} {arrow} {escape_bytes(data)}")

    def send(self, who: str, port: serial.Serial, data: bytes) -> None:
        self.show(who, "->", data)
        port.write(data)

    def expect(self, who: str, port: serial.Serial, token: bytes, network_seconds: float) -> bool:
        deadline = time.monotonic() + network_seconds * self.scale + 2
        seen = b""
        while time.monotonic() < deadline:
            chunk = port.read(4096)
            if chunk:
                self.show(who, "<-", chunk)
                seen += chunk
                if token in seen:
                    return True
            else:
                time.sleep(0.01)
        click.echo(f"  (no {token!r} from the {who} modem)")
        return False

    def pause(self, network_seconds: float) -> None:
        time.sleep(network_seconds * self.scale)

    def run(self) -> bool:
        a, c = self.client, self.centre
        steps: list[Callable[[], bool | None]] = [
            lambda: self.send("centre", c, b"ATE0V1X4&C1&D2S0=0+VCID=1\r"),
            lambda: self.expect("centre", c, b"OK", 2),
            lambda: self.send("client", a, b"ATE0V1X4&C1&D2+ER=1;+MR=1\r"),
            lambda: self.expect("client", a, b"OK", 2),
            lambda: self.send("client", a, b"ATDT5550100\r"),
            lambda: self.expect("centre", c, b"NMBR", 10),
            lambda: self.expect("centre", c, b"RING", 10),
            lambda: self.send("centre", c, b"ATA\r"),
            lambda: self.expect("centre", c, b"CONNECT", 15),
            lambda: self.expect("client", a, b"CONNECT", 15),
            lambda: self.send("client", a, b"hello centre, this is 5550001\r\n"),
            lambda: self.expect("centre", c, b"5550001", 5),
            lambda: self.send("centre", c, b"hello client, all received\r\n"),
            lambda: self.expect("client", a, b"received", 5),
            lambda: self.pause(1.5),
            lambda: self.send("client", a, b"+++"),
            lambda: self.expect("client", a, b"OK", 4),
            lambda: self.send("client", a, b"ATH0\r"),
            lambda: self.expect("client", a, b"OK", 4),
            lambda: self.expect("centre", c, b"NO CARRIER", 6),
        ]
        try:
            return all(step() is not False for step in steps)
        finally:
            a.close()
            c.close()
