"""`callhome demo`: a support centre and its client systems on the virtual phone network.

One process runs it all, through the real code paths: the virtual network exposes every
modem as a pty; the centre's bank and each client drive their modems with the Hayes
driver; calls run the call-home protocol; the centre stores into SQLite. A short story:
every client line-tests (at once: the hunt group spreads them over the bank), one sends
a degraded-component report, one long report is cut mid-call and delivered, exactly
once, on the next call, and an unknown system is refused. Then each client runs the
diagnostics agent on simulated collectors in scaled time: scheduled line tests, a mirror
that degrades (an urgent call) and recovers (carried by the next call), a flapping fan
(one flapping event), a hung collector (UNKNOWN, reported). Then supervision, wired as
`callhome-receiver run` wires it (`cli.centre_bank`), on an interval of seconds: a
system falls silent (late, down, an incident routed to the centre on duty), a callback
tells a broken dial-out from a dead system, one system is on test, one is restored.
Then a summary.

The operator console serves the centre on a loopback address while the demo runs (a
`demo` operator account whose password is printed; `--no-console` to leave it out,
`--stay` to keep it up after the story): log in and watch the calls, the devices and
supervision's incidents change live.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from callhome.client.config import ClientConfig
from callhome.client.dialer import CallReport, call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import encode_key, public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.logs import configure_logging
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner

from . import cli_web
from .agent_reports import describe
from .cli import centre_bank
from .cli_supervision import Routed, announce, routing_for
from .config import CentreConfig
from .store import SQLiteStore
from .supervision import operations
from .supervision.callback import Policy
from .supervision.settings import SupervisionSettings
from .web.config import WebConfig, parse_listen

if TYPE_CHECKING:
    from .web.app import Console

CENTRE_NUMBER = "5550100"
BANK = (("bank0", "usr"), ("bank1", "conexant"), ("bank2", "generic"))
CLIENTS = (
    # name, profile, number, line rate
    ("plant-a", "generic", "5550001", 9600),
    ("plant-b", "usr", "5550002", 33600),
    ("plant-c", "conexant", "5550003", 14400),
)
ROGUE = ("rogue", "generic", "5550666", 2400)
SUPERVISED = (
    # name, profile, number, line rate: enrolled in part 6 on a short interval
    ("plant-d", "generic", "5550004", 9600),  # stops calling; later calls again
    ("plant-e", "usr", "5550005", 14400),  # its dial-out breaks: it only answers
    ("plant-f", "conexant", "5550006", 9600),  # on test (maintenance), silent
)
INTERVAL = 3.0
"""Part 6's expected interval and grace, real seconds: a day's supervision in scaled time
(24 h and 15 m on a real centre; the engine only sees the numbers)."""
GRACE = 2.0
ON_TEST = 3600.0


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, who: str, text: str) -> None:
        click.echo(f"[{time.monotonic() - self.started:5.1f} s] {who:<8} {text}")
        sys.stdout.flush()

    def client(self, who: str) -> Any:
        def progress(step: str, **fields: Any) -> None:
            text = {
                "dialling": "dialling {number} ({profile} modem)",
                "connected": "connected: {connect}",
                "transfer": "handshake done in {round_trip:.2f} s; sending {messages} message(s)",
                "dial failed": "{number}: {result}",
                "waiting": "no line free; trying again in {seconds:.1f} s",
            }.get(step)
            if text is not None:
                self.say(who, text.format(**fields))

        return progress

    def centre(self, what: str, **fields: Any) -> None:
        if what == "answered":
            self.say(
                "centre",
                f"{fields['port']} answered {fields['caller'] or 'a caller'}: {fields['connect']}",
            )
        elif what == "accepted":
            resume = fields["resume"]
            extra = (
                f", resuming message(s) {', '.join(map(str, resume))} from byte "
                f"{', '.join(map(str, resume.values()))}"
                if resume
                else ""
            )
            self.say("centre", f"{fields['port']}: {fields['device']} authenticated{extra}")
        elif what == "refused":
            self.say("centre", f"{fields['port']}: refused ({fields['reason']})")
        elif what == "stored":
            kind = "already held: " if fields["duplicate"] else "stored "
            self.say(
                "centre", f"{kind}{fields['message_kind']} {fields['seq']} from {fields['device']}"
            )


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="Keep everything here (default: a temporary folder, removed after).",
)
@click.option(
    "--time-scale",
    type=float,
    default=0.1,
    show_default=True,
    help="Real seconds per network second (1.0: real modem timing).",
)
@click.option(
    "--console/--no-console",
    "with_console",
    default=True,
    show_default=True,
    help="Serve the operator console while the demo runs (a demo account is printed).",
)
@click.option(
    "--console-listen",
    default="127.0.0.1:0",
    show_default=True,
    help="The console's loopback HOST:PORT (port 0: a free one, printed).",
)
@click.option(
    "--stay", is_flag=True, help="Keep the centre and its console up after the story, to Ctrl-C."
)
def demo(
    directory: str | None,
    time_scale: float,
    with_console: bool,
    console_listen: str,
    stay: bool,
) -> None:
    """A support centre and three client systems on the virtual phone network."""
    if time_scale <= 0:
        raise click.BadParameter("must be positive", param_hint="--time-scale")
    listen = _loopback(console_listen) if with_console else None
    if directory:
        folder = Path(directory)
        if folder.exists() and any(folder.iterdir()):
            click.echo(f"callhome: {folder} is not empty", err=True)
            sys.exit(2)
        folder.mkdir(parents=True, exist_ok=True)
        sys.exit(_run(folder, time_scale, listen, stay))
    with tempfile.TemporaryDirectory(prefix="callhome-demo-") as tmp:
        sys.exit(_run(Path(tmp), time_scale, listen, stay))


def _loopback(text: str) -> tuple[str, int]:
    """The console's address: loopback only, since its password is printed."""
    try:
        host, port = parse_listen(text)
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--console-listen") from None
    if not loopback:
        raise click.BadParameter(
            f"{host} is not a loopback address (the demo prints the console's password)",
            param_hint="--console-listen",
        )
    return host, port


def _run(folder: Path, time_scale: float, listen: tuple[str, int] | None, stay: bool) -> int:
    try:
        return asyncio.run(_demo(folder, time_scale, listen, stay))
    except KeyboardInterrupt:
        click.echo("callhome: demo interrupted", err=True)
        return 1
    except Exception as exc:  # the demo reports, it does not crash
        click.echo(
            f"callhome: the demo failed: {type(exc).__name__}: {exc} "
            f"(details in {folder / 'demo.log'})",
            err=True,
        )
        return 1


class _Client:
    def __init__(
        self,
        folder: Path,
        name: str,
        profile: str,
        number: str,
        rate: int,
        centre_public: bytes,
        url: str,
        scale: float,
    ) -> None:
        self.name = name
        self.folder = folder / name
        self.private = write_private_key(self.folder / "device.key")
        self.spool = Spool(self.folder / "spool.db", create=True)
        self.config = ClientConfig(
            path=self.folder / "client.toml",
            name=name,
            key=self.folder / "device.key",
            spool=self.folder / "spool.db",
            centre_key=centre_public,
            numbers=[CENTRE_NUMBER],
            ports=[url],
            profile="auto",
            time_scale=scale,
            attempts=3,
            retry_delay=5.0,
        )
        self.config.path.write_text(self.config.dump(encode_key(centre_public)))
        self.profile, self.number, self.rate = profile, number, rate

    @property
    def public(self) -> bytes:
        return public_of(self.private)


def _console(config: CentreConfig, database: Path, listen: tuple[str, int]) -> tuple[Console, str]:
    """The console as `run` serves it, on its own connection to the demo's store, and
    the password of its `demo` operator (made here, printed by the caller)."""
    from .cli_web import prepare
    from .web.auth import hash_password

    sync = SQLiteStore(database)
    console = prepare(config, WebConfig(*listen), sync)
    assert console is not None
    password = secrets.token_urlsafe(12)
    sync.console_add_account("demo", hash_password(password), "operator", time.time())
    return console, password


async def _stay(say: Narrator) -> None:
    """Until Ctrl-C (or SIGTERM): the centre keeps answering and the console serving."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say.say("centre", "the story is over; the centre and its console stay up (Ctrl-C ends)")
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


async def _demo(
    folder: Path, scale: float, listen: tuple[str, int] | None = None, stay: bool = False
) -> int:
    configure_logging("info", json=True, stream=(folder / "demo.log").open("a"))
    say = Narrator()
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    for name, profile in BANK:
        network.add_modem(name, profile)
    network.add_hunt_group(CENTRE_NUMBER, [name for name, _ in BANK])
    for name, profile, number, rate in (*CLIENTS, ROGUE, *SUPERVISED):
        network.add_modem(name, profile, number=number, line={"rate": rate})
    runner = NetworkRunner(network, time_scale=scale)
    await runner.start()
    ports = folder / "ports"
    urls = {}
    for name in network.lines:
        urls[name] = (await runner.expose(name, "pty", path=str(ports / name))).url

    centre_folder = folder / "centre"
    store = SQLiteStore(centre_folder / "centre.db", create=True)
    centre_private = write_private_key(centre_folder / "centre.key")
    centre_config = CentreConfig(
        path=centre_folder / "centre.toml", ports=[urls[name] for name, _ in BANK], time_scale=scale
    )
    # operators' commands (enrol, on test, callback policy) reach the engine within 0.2 s
    centre_config.supervision = SupervisionSettings(command_poll=0.2)
    centre_config.path.write_text(centre_config.dump())
    notes = folder / "notifications.jsonl"
    (centre_folder / "oncall.toml").write_text(_oncall_toml(notes))
    clients = {
        name: _Client(
            folder, name, profile, number, rate, public_of(centre_private), urls[name], scale
        )
        for name, profile, number, rate in (*CLIENTS, ROGUE, *SUPERVISED)
    }
    for name, _, _, _ in CLIENTS:
        store.enroll(name, clients[name].public, test_interval=86400, grace=900, site=None)

    click.echo(f"callhome demo in {folder}")
    click.echo(
        f"  centre: {len(BANK)} modems ({', '.join(p for _, p in BANK)}) on "
        f"{CENTRE_NUMBER}; enrolled: {', '.join(name for name, *_ in CLIENTS)}"
    )
    click.echo(f"  time runs {1 / scale:g}x faster than on a real line\n")

    console, password = (
        _console(centre_config, centre_folder / "centre.db", listen) if listen else (None, "")
    )

    def notify(what: str, **fields: Any) -> None:
        say.centre(what, **fields)
        if console is not None:
            console.live.bank_event(what, **fields)

    # the centre as `callhome-receiver run` wires it: supervision, follow-the-sun routing,
    # the console (told of the bank's calls and supervision's incidents)
    async_store = cli_web.bank_store(console, store)
    routed = Routed(routing_for(centre_config), async_store)
    bank = centre_bank(centre_config, centre_private, async_store, routed, console, notify)
    stop = asyncio.Event()
    failures: list[str] = []
    observed: dict[str, dict[str, float]] = {}
    try:
        async with cli_web.served(console, list(bank.workers)), routed:
            if console is not None:
                host, port = console.addresses[0][:2]
                url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
                click.echo(f"  console: {url} (log in as demo, password {password})\n")
            bank_task = asyncio.ensure_future(bank.run(stop))
            try:
                while not all(worker.state == "ready" for worker in bank.workers):
                    if bank_task.done():
                        raise RuntimeError("the bank stopped")
                    await asyncio.sleep(0.05)
                say.say("centre", f"bank ready: {len(bank.workers)} lines answer {CENTRE_NUMBER}")
                await _story(say, network, runner, clients, failures)
                await _supervision(
                    say,
                    clients,
                    centre_folder / "centre.db",
                    notes,
                    centre_config.supervision,
                    observed,
                    failures,
                )
                if stay:
                    await _stay(say)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await bank_task
    finally:
        async_store.close()
        for client in clients.values():
            client.spool.close()
        await runner.stop()
    _summary(folder / "centre" / "centre.db")
    _supervision_summary(folder / "centre" / "centre.db", observed)
    if failures:
        click.echo("\nthe story did not go as written:\n  " + "\n  ".join(failures))
        return 1
    click.echo(
        f"\neverything as expected. The log of every call is in {folder / 'demo.log'}"
        if not str(folder).startswith(tempfile.gettempdir())
        else "\neverything as expected."
    )
    return 0


async def _call(say: Narrator, client: _Client, purpose: str) -> CallReport:
    say.say(client.name, purpose)
    report = await call_centre(
        client.config, client.spool, client.private, progress=say.client(client.name)
    )
    if report.result == "ok":
        held = f", {len(report.duplicates)} already held" if report.duplicates else ""
        say.say(
            client.name,
            f"acknowledged: {len(report.acknowledged)} message(s){held}; "
            f"{report.bytes_sent} bytes sent, {report.bytes_received} "
            f"received, {report.line_seconds:.1f} s on the line",
        )
    elif report.result == "refused":
        say.say(client.name, f"refused by the centre ({report.detail})")
    else:
        queued = len(client.spool.queued())
        say.say(client.name, f"call failed: {report.result}; {queued} message(s) stay queued")
    return report


async def _story(
    say: Narrator,
    network: PhoneNetwork,
    runner: NetworkRunner,
    clients: dict[str, _Client],
    failures: list[str],
) -> None:
    def expect(condition: bool, text: str) -> None:
        if not condition:
            failures.append(text)

    click.echo("\n1. every system line-tests, all at once\n")
    for name, *_ in CLIENTS:
        clients[name].spool.enqueue(
            Kind.LINE_TEST, line_test_content(clients[name].spool), "line test"
        )
    reports = await asyncio.gather(
        *(_call(say, clients[name], "line test") for name, *_ in CLIENTS)
    )
    expect(all(r.result == "ok" for r in reports), "a line test failed")

    click.echo("\n2. plant-b: a power supply degrades\n")
    b = clients["plant-b"]
    b.spool.enqueue(
        Kind.REPORT,
        {
            "severity": "warning",
            "component": "psu2",
            "state": "degraded",
            "message": "psu2 input 182 V",
            "time": int(time.time()),
            "data": {"psu2": {"volts": 182}},
        },
        "warning psu2 degraded",
    )
    report = await _call(say, b, "report: psu2 degraded")
    expect(report.result == "ok", "plant-b's report was not acknowledged")

    click.echo("\n3. plant-c: a long report, and the line is cut halfway\n")
    c = clients["plant-c"]
    log_lines = [f"kernel: md0: disk{i % 4} read error, sector {i * 9973}" for i in range(400)]
    c.spool.enqueue(
        Kind.REPORT,
        {
            "severity": "error",
            "component": "raid0",
            "state": "failed",
            "time": int(time.time()),
            "log": log_lines,
            "dump": os.urandom(12_000),
        },
        "error raid0 failed",
    )
    network.set_next_call("plant-c", drop_after_bytes=4000)
    report = await _call(say, c, "report: raid0 failed (with a log and a dump)")
    expect(report.result != "ok", "the cut call succeeded")
    report = await _call(say, c, "calls again")
    expect(
        report.result == "ok" and not c.spool.queued(),
        "plant-c's report was not delivered on the second call",
    )

    click.echo("\n4. a system nobody enrolled calls in\n")
    rogue = clients["rogue"]
    rogue.spool.enqueue(Kind.LINE_TEST, line_test_content(rogue.spool), "line test")
    report = await _call(say, rogue, "line test")
    expect(report.result == "refused", "the rogue system was not refused")

    click.echo(
        f"\n5. the agents take over: {1 / AGENT_SCALE / 3600:g} h of their time per second\n"
    )
    await _agents(say, clients, expect, clients["plant-a"].folder.parent / "centre" / "centre.db")
    await asyncio.sleep(2.0 * runner.time_scale + 0.5)  # the centre records its calls


AGENT_SCALE = 1 / 14400
"""The agents' time in the demo: four hours a second (a day of line tests in six)."""
AGENT_STORY = {
    # client: (check name, script, [[check]] settings, what the centre must receive)
    "plant-a": (
        "mirror",
        "0s md/md0 OK clean [UU]\n2h md/md0 CRITICAL degraded [U_]: sdb failed\n"
        "10h md/md0 OK clean [UU]: rebuilt onto the spare\n",
        "",
        ("md/md0 OK -> CRITICAL", "md/md0 CRITICAL -> OK"),
    ),
    "plant-b": (
        "fans",
        "0s fan1 2400 fan1 2400 RPM\n1h fan1 cycle:600,2400 fan1 speed\n"
        "9h fan1 2400 fan1 2400 RPM\n",
        'direction = "below"\nwarning = 1000\nwarning_clear = 1100\nfor = "1h"\n',
        ("fan1 flapping", "fan1 stable again"),
    ),
    "plant-c": (
        "ipmi",
        "0s ipmi/psu1 OK psu1 presence detected\n2h hang on\n",
        'deadline = "10m"\nunknown_after = "2h"\n',
        ("ipmi/psu1 OK -> UNKNOWN",),
    ),
}


async def _agents(say: Narrator, clients: dict[str, _Client], expect: Any, database: Path) -> None:
    """Each enrolled client runs the agent on simulated collectors until the centre has
    stored what the story says (or a minute passes)."""
    from callhome.client.agent.config import load_agent_config
    from callhome.client.agent.daemon import Agent
    from callhome.client.agent.statefile import write_state

    agents = []
    for name, (check, script, settings, _) in AGENT_STORY.items():
        client = clients[name]
        (client.folder / f"{check}.script").write_text(script)
        with client.config.path.open("a") as file:
            file.write(
                # the story's calls share these modems without the agent's lock; plant-e
                # answers the callback by its own path (`_answer`)
                f'\n[agent]\ntime_scale = {AGENT_SCALE}\ninterval = "10m"\nanswer = false\n'
                f'[[check]]\nkind = "simulated"\nname = "{check}"\n'
                f'script = "{check}.script"\n{settings}'
            )
        config = load_agent_config(client.config.path, client.config.spool)
        # tested by hand twenty hours ago: the schedule's next test falls within seconds
        write_state(config.state, {"last_test": time.time() - 20 * 3600})
        agents.append(Agent(client.config, config, client.private, caller=_agent_caller(say, name)))
    started = time.monotonic()
    since = time.time()

    def missing() -> list[str]:
        """What the centre has not stored yet, read from its store."""
        centre = SQLiteStore(database, busy_timeout=5.0)
        try:
            stored = centre.messages(since=since - 1, limit=1000)
        finally:
            centre.close()
        texts: dict[str, list[str]] = {}
        for message in stored:
            texts.setdefault(message.device, []).append(
                describe(message.kind, message.content) or ""
            )
        return [
            f"{name}: {item}"
            for name, story in AGENT_STORY.items()
            for item in (*story[3], "health:")
            if not any(text.startswith(item) for text in texts.get(name, []))
        ]

    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(agent.run(stop)) for agent in agents]
    left = missing()
    try:
        while left and time.monotonic() - started < 60 and not any(t.done() for t in tasks):
            await asyncio.sleep(0.25)
            left = missing()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for item in left:
        expect(False, f"the centre never stored {item!r}")
    say.say("centre", "has every event of the story")


def _agent_caller(say: Narrator, name: str) -> Any:
    async def call(
        config: ClientConfig, spool: Spool, key: bytes, progress: Callable[..., None]
    ) -> CallReport:
        queued = [m.summary or m.kind.label for m in spool.queued()]
        say.say(name, "agent calls, carrying: " + "; ".join(queued))
        narrate = say.client(name)

        def both(step: str, **fields: Any) -> None:
            narrate(step, **fields)
            progress(step, **fields)  # the agent's status shows the call too

        report = await call_centre(config, spool, key, progress=both)
        acknowledged = len(report.acknowledged) + len(report.duplicates)
        say.say(name, f"agent: {report.result}, {acknowledged} message(s) acknowledged")
        return report

    return call


def _summary(database: Path) -> None:
    store = SQLiteStore(database)
    try:
        calls = list(reversed(store.calls(limit=100)))
        messages = list(reversed(store.messages(limit=100)))
    finally:
        store.close()
    click.echo(f"\ncalls at the centre ({len(calls)})")
    click.echo(
        f"  {'port':<6} {'caller':<9} {'device':<9} {'rate':>6} {'in':>6} {'out':>5} "
        f"{'msgs':>4}  outcome"
    )
    for call in calls:
        click.echo(
            f"  {call.port:<6} {call.caller_id or '-':<9} {call.device or '-':<9} "
            f"{call.rate or '-':>6} {call.bytes_in:>6} {call.bytes_out:>5} "
            f"{call.messages:>4}  {call.outcome}"
        )
    click.echo(f"\nmessages stored ({len(messages)})")
    for message in messages:
        click.echo(
            f"  {message.device:<9} {message.kind:<10} {message.severity or '':<8} "
            f"{message.component or '':<6} {message.state or ''}"
            + (f"  {text}" if (text := describe(message.kind, message.content)) else "")
        )


def _oncall_toml(notes: Path) -> str:
    """The demo centre's routing (oncall.toml): three centres handing the watch west,
    every notification written by a command to `notes`, one JSON object a line."""
    script = (
        "import json, sys; note = json.load(sys.stdin); "
        "open(sys.argv[1], 'a').write(json.dumps(note) + '\\n')"
    )
    argv = json.dumps([sys.executable, "-c", script, str(notes)])
    sites = (
        ("tokyo", "Asia/Tokyo", "09:00-18:00", "aiko"),
        ("paris", "Europe/Paris", "08:00-17:00", "alice"),
        ("newyork", "America/New_York", "08:00-17:00", "carol"),
    )
    text = [
        '[routing]\ndefault_policy = "demo"\n',
        f'[command.notes]\nargv = {argv}\ntimeout = "10s"\n',
        '[[policy]]\nname = "demo"\nrepeat = 1\n[[policy.step]]\nnotify = ["centre", "oncall"]\n'
        'wait = "1h"\n',
    ]
    for site, zone, hours, person in sites:
        text.append(
            f'[[site]]\nname = "{site}"\nzone = "{zone}"\nhours = {{ daily = "{hours}" }}\n'
            f'roster = "{site}-oncall"\ncommand = "notes"\n'
            f'[people.{person}]\ncommand = "notes"\n'
            f'[[roster]]\nname = "{site}-oncall"\nsite = "{site}"\n'
            f'[[roster.layer]]\nname = "weekly"\nmembers = ["{person}"]\nturn = "7d"\n'
            "start = 2026-01-05T09:00:00\n"
        )
    return "\n".join(text)


def _clock(at: float | None) -> str:
    return "-" if at is None else time.strftime("%H:%M:%S", time.gmtime(at))


async def _supervision(
    say: Narrator,
    clients: dict[str, _Client],
    database: Path,
    notes: Path,
    settings: SupervisionSettings,
    observed: dict[str, dict[str, float]],
    failures: list[str],
) -> None:
    """Part 6: three systems enrolled on a short interval. plant-d stops calling (late,
    down, an incident routed to the centre on duty; the centre's callback goes
    unanswered: it is down) and later calls again (restored); plant-e stops calling too
    but answers the callback (its dial-out is broken, not the line); plant-f goes on
    test and its silence alerts nobody."""
    d, e, f = (clients[name] for name, *_ in SUPERVISED)
    click.echo(
        f"\n6. supervision: {', '.join(c.name for c in (d, e, f))} must call every "
        f"{INTERVAL:g} s (a day, here), {GRACE:g} s of grace\n"
    )
    # the operator's connection, as the command line's: enrol, callback policy, on test
    ops = SQLiteStore(database, busy_timeout=5.0)
    stop_answering = asyncio.Event()
    answering: asyncio.Task[CallReport | None] | None = None
    try:
        for client in (d, e, f):
            ops.enroll(client.name, client.public, test_interval=INTERVAL, grace=GRACE, site=None)
            announce(ops, client.name)
        # plant-e: called back as soon as it is late; plant-d: when an operator asks
        for client, policy in ((d, Policy.COMMAND), (e, Policy.LATE)):
            operations.configure(
                ops, settings, client.name, time.time(), callback=policy, number=client.number
            )
        say.say("operator", f"{e.name}: the centre calls it back when it is late")
        # before its first call, not after all three: on a loaded machine the slowest of
        # those calls outlasted plant-f's interval and grace, and it went down first
        until = operations.start_test(ops, settings, f.name, time.time(), ON_TEST).test_until
        say.say("operator", f"{f.name} on test (maintenance) until {_clock(until)} UTC")
        for client in (d, e, f):
            client.spool.enqueue(Kind.LINE_TEST, line_test_content(client.spool), "line test")
        reports = await asyncio.gather(*(_call(say, c, "line test") for c in (d, e, f)))
        if not all(r.result == "ok" for r in reports):
            failures.append("a supervised system's first line test failed")
        say.say(d.name, "falls silent")
        say.say(e.name, "falls silent: its modem still answers, but it no longer dials out")
        answering = asyncio.ensure_future(_answer(say, e, stop_answering))

        def incident(device: str, kind: str) -> Any:
            return next((r for r in _incidents_of(ops, device) if r.kind == kind), None)

        def both_seen() -> bool:
            down = incident(d.name, "device_down")
            return (
                down is not None
                and incident(e.name, "dial_out_broken") is not None
                and _notified(notes, down.id)
            )

        watch = _Watch(say, ops, settings, {c.name for c in (d, e, f)}, observed)
        if not await watch.until(both_seen, 20.0):
            failures.append("supervision did not see plant-d down and plant-e's dial-out broken")
            return
        say.say("operator", f"callhome-receiver call {d.name}: is it down, or only its dial-out?")
        operations.request_callback(ops, d.name, time.time())
        if not await watch.until(lambda: "callback" in observed.get(d.name, {}), 15.0):
            failures.append("plant-d's callback did not reach its incident")
        d.spool.enqueue(Kind.LINE_TEST, line_test_content(d.spool), "line test")
        report = await _call(say, d, "back: calls again")
        if report.result != "ok":
            failures.append("plant-d's return call failed")

        def restored() -> bool:
            return any(
                r.device == d.name and r.kind == "device_down" and r.status == "resolved"
                for r in ops.incident_rows(status=None, limit=100)
            )

        if not await watch.until(restored, 10.0):
            failures.append("plant-d's incident did not resolve when it called again")
        status = operations.statuses(ops, settings)[f.name]
        if status.state.label != "on test" or _incidents_of(ops, f.name):
            failures.append("plant-f, on test, was alerted or left its test")
    finally:
        stop_answering.set()
        if answering is not None:
            await asyncio.gather(answering, return_exceptions=True)
        ops.close()


async def _answer(say: Narrator, client: _Client, stop: asyncio.Event) -> CallReport | None:
    """plant-e's agent, answering the centre while idle (its dial-out is what broke)."""
    from callhome.client.agent.answer import answer_once

    def queue_test() -> None:  # the session carries it: the centre hears a line test
        client.spool.enqueue(Kind.LINE_TEST, line_test_content(client.spool), "line test")

    while not stop.is_set():
        report = await answer_once(
            client.config,
            client.spool,
            client.private,
            numbers=[CENTRE_NUMBER],
            require_caller_id=False,
            rings=1,
            window=5.0,
            interrupt=stop,
            connected=lambda: queue_test(),
        )
        if report is not None:
            say.say(client.name, f"answered the centre's callback: {report.result}")
            return report
    return None


def _incidents_of(store: SQLiteStore, device: str) -> list[Any]:
    return [r for r in store.incident_rows(status=None, limit=100) if r.device == device]


def _notified(notes: Path, incident_id: int) -> bool:
    return any(n.get("incident_id") == incident_id for n in _notes(notes))


def _notes(notes: Path) -> list[dict[str, Any]]:
    if not notes.exists():
        return []
    return [json.loads(line) for line in notes.read_text().splitlines() if line.strip()]


class _Watch:
    """Narrates what supervision does, read from its store as an operator's console
    would; `observed` keeps when each device was first seen in each state (and when a
    callback entry reached its incident)."""

    def __init__(
        self,
        say: Narrator,
        store: SQLiteStore,
        settings: SupervisionSettings,
        names: set[str],
        observed: dict[str, dict[str, float]],
    ) -> None:
        self.say, self.store, self.settings, self.names = say, store, settings, names
        self.observed = observed
        self.states: dict[str, str] = {}
        self.entries: set[tuple[int, float, str]] = set()

    def look(self) -> None:
        for name, status in operations.statuses(self.store, self.settings).items():
            label = status.state.label
            if name in self.names and label != self.states.get(name):
                self.states[name] = label
                self.observed.setdefault(name, {}).setdefault(label, status.since)
                self.say.say("centre", f"{name} is {label} (since {_clock(status.since)})")
        for row in self.store.incident_rows(status=None, limit=100):
            if row.device not in self.names:
                continue
            for entry in self.store.incident_timeline(row.id):
                key = (row.id, entry.at, entry.what)
                if key in self.entries:
                    continue
                self.entries.add(key)
                if "callback" in entry.text.lower():
                    self.observed.setdefault(row.device, {}).setdefault("callback", entry.at)
                self.say.say("centre", f"incident {row.id} ({row.kind}) {entry.what}: {entry.text}")

    async def until(self, condition: Any, timeout: float) -> bool:
        started = time.monotonic()
        while True:
            self.look()
            if condition():
                return True
            if time.monotonic() - started > timeout:
                return False
            await asyncio.sleep(0.1)


def _supervision_summary(database: Path, observed: dict[str, dict[str, float]]) -> None:
    """What supervision did in part 6, in an operator's words, read from the store (the
    state a device passed through on its way is the narrator's: the store keeps the
    current one)."""
    store = SQLiteStore(database)
    try:
        incidents = {
            row.id: (row, store.incident_timeline(row.id))
            for row in store.incident_rows(status=None, limit=100)
        }
        told: dict[int, dict[str, set[str]]] = {}  # incident -> on duty -> recipients
        for sent in store.outbox(limit=1000):
            payload = json.loads(sent.item.payload)
            if sent.sent_at is not None:
                told.setdefault(payload["incident_id"], {}).setdefault(
                    payload.get("on_duty") or "nobody", set()
                ).add(sent.item.recipient.replace(":", " "))
        statuses = operations.statuses(store, SupervisionSettings())
    finally:
        store.close()
    click.echo("\nsupervision (from the centre's store)")
    for name, *_ in SUPERVISED:
        seen = observed.get(name, {})
        lines = [f"late at {_clock(seen.get('late'))}"] if "late" in seen else []
        for row, timeline in (item for item in incidents.values() if item[0].device == name):
            if row.kind == "device_down":
                lines.append(
                    f"down at {_clock(row.opened_at)}: incident {row.id} opened "
                    f"({row.kind}, {row.severity}): {row.summary}"
                )
            else:
                lines.append(
                    "callback: answered and got through, but never called out -> "
                    f"dial-out broken, not down: incident {row.id} opened at "
                    f"{_clock(row.opened_at)} ({row.kind}, {row.severity})"
                )
            for centre, recipients in sorted(told.get(row.id, {}).items()):
                lines.append(
                    f"routed to the centre on duty, {centre}: told {', '.join(sorted(recipients))}"
                )
            if not told.get(row.id):
                lines.append("routed to nobody (no notification sent)")
            for entry in timeline:
                if entry.what == "callback":
                    text = entry.text.removeprefix("callback: ")
                    lines.append(f"callback at {_clock(entry.at)}: {text}")
                elif entry.what == "restored":
                    lines.append(f"called again at {_clock(entry.at)}: restored ({entry.text})")
            if row.resolved_at is not None:
                lines.append(f"incident {row.id} resolved at {_clock(row.resolved_at)}")
        status = statuses.get(name)
        if status is not None and status.test_until is not None:
            lines.append(
                f"on test until {_clock(status.test_until)} UTC: silent past its deadline, "
                "and nobody was alerted"
            )
        if status is not None:
            explained = any(
                r.device == name and r.kind == "dial_out_broken" and r.status != "resolved"
                for r, _ in incidents.values()
            )
            lines.append(
                f"now {status.state.label}"
                + (" (silent; its open incident says why: it cannot dial out)" if explained else "")
            )
        click.echo(f"  {name}: " + "\n    ".join(lines))
