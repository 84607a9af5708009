"""The agent's footprint, as figures (goals from issue 11 in brackets).

    python -m benchmarks.agent_footprint [--runs 3] [--idle-seconds 30] [--days 7]

1. Idle: `callhome agent run` as a process with the real collectors of this machine
   (mdraid, filesystems, hwmon, systemd) and a simulated one, every 10 s; CPU share of
   one core and RSS over `--idle-seconds` after a warm-up (≤ 0.2 %, ≤ 40 MB).
2. One full collection of those collectors, in-process: CPU seconds, children included
   (≤ 1 s).
3. A healthy device on the virtual network for `--days` of scaled agent time: calls a
   day and bytes a day on the wire, both ways, inventory included (≤ 1, ≤ 400).
4. A RAID member fails (the simulated collector is told) until the report is stored at
   the centre, on the virtual network in real time at 33,600 bit/s: dial, training and
   handshake included (≤ 15 s).

Medians of `--runs` where it says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from callhome.client.agent.collectors.simulated import SimulatedCollector, parse_line
from callhome.client.agent.config import load_agent_config
from callhome.client.agent.daemon import Agent
from callhome.client.agent.running import collect
from callhome.client.agent.statefile import write_state
from callhome.client.config import ClientConfig
from callhome.client.dialer import CallReport, call_centre
from callhome.client.spool import Spool
from callhome.keys import encode_key, public_of, write_private_key
from modem_drivers.logs import configure_logging
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.store import AsyncStore, SQLiteStore

CENTRE = "5550100"
KEY = "A" * 43 + "="
REAL_CHECKS = """
[[check]]
kind = "mdraid"
[[check]]
kind = "filesystems"
[[check]]
kind = "hwmon"
[[check]]
kind = "systemd"
[[check]]
kind = "simulated"
name = "sim"
script = "sim.txt"
"""
HEALTHY = "0s md/md0 OK clean [UU]\n0s fan1 2400 fan1\n0s psu1 OK present\n"


def _client_toml(folder: Path, agent: str, centre_key: str = KEY, port: str = "/dev/null") -> Path:
    path = folder / "client.toml"
    path.write_text(
        f'[device]\nname = "dev"\nkey = "device.key"\nspool = "spool.db"\n'
        f'[centre]\npublic_key = "{centre_key}"\nnumbers = ["{CENTRE}"]\n'
        f'[modem]\nports = ["{port}"]\n' + agent
    )
    (folder / "sim.txt").write_text(HEALTHY)
    return path


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


HIDE_RICH = "import sys; sys.modules['rich'] = None; from callhome.client.cli import main; main()"
"""`callhome` as installed without the test extras: `rich` comes only with import-linter,
and structlog's console renderer imports it when it is there (about 4.5 MB)."""


def idle(seconds: float, *, hide_rich: bool = False, answer: bool = False) -> tuple[float, float]:
    """(CPU % of one core, RSS MB) of `callhome agent run`, idle after a warm-up; with
    `answer`, waiting for the centre's call on a virtual modem (`callhome-sim`, a pty)."""
    with tempfile.TemporaryDirectory(prefix="agent-idle-") as tmp:
        folder = Path(tmp)
        sim = None
        port = "/dev/null"
        if answer:
            sim, port = sim_modem(folder)
        # every 10 s, six times as often as the default: the window sees collections
        path = _client_toml(
            folder,
            f'[agent]\ninterval = "10s"\ninventory_interval = 0\nanswer = {str(answer).lower()}\n'
            + REAL_CHECKS,
            port=port,
        )
        Spool(folder / "spool.db", create=True).close()
        write_private_key(folder / "device.key")
        write_state(folder / "spool.db.agent.json", {"last_test": time.time()})
        start = ["-c", HIDE_RICH] if hide_rich else ["-m", "callhome"]
        process = subprocess.Popen(
            [sys.executable, *start, "-c", str(path), "agent", "run", "--json-logs"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(5.0)  # imports, first collection
            cpu0, wall0 = _proc_cpu(process.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, wall1 = _proc_cpu(process.pid), time.monotonic()
            rss = _proc_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
            if sim is not None:
                sim.terminate()
                sim.wait(30)
    return 100 * (cpu1 - cpu0) / (wall1 - wall0), rss


def sim_modem(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A one-modem virtual network in its own process; (the process, the modem's pty)."""
    (folder / "net.toml").write_text(
        f'[[modem]]\nname = "dev"\nprofile = "usr"\nport = "pty"\npath = "{folder / "dev"}"\n'
        'number = "5550001"\n'
    )
    ready = folder / "ready.json"
    sim = subprocess.Popen(
        [
            *(sys.executable, "-m", "modem_drivers.virtual", "run", str(folder / "net.toml")),
            *("--ready-file", str(ready), "--log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline and sim.poll() is None:
        time.sleep(0.05)
    if not ready.exists():
        sim.kill()
        raise RuntimeError("callhome-sim did not start")
    return sim, str(folder / "dev")


async def one_collection() -> float:
    """CPU seconds (this process and its children) of one round of every collector."""
    with tempfile.TemporaryDirectory(prefix="agent-collect-") as tmp:
        folder = Path(tmp)
        path = _client_toml(folder, REAL_CHECKS)
        config = load_agent_config(path, folder / "spool.db")

        def used() -> float:
            # process_time is precise; getrusage may count in scheduler ticks
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            return time.process_time() + children.ru_utime + children.ru_stime

        before = used()
        for check in config.checks:
            await collect(check.collector, check.deadline, name=check.name)
        return used() - before


class _Centre:
    """A one-modem centre and one device on the virtual network, in this process."""

    def __init__(self, folder: Path, scale: float, rate: int) -> None:
        self.folder, self.scale, self.rate = folder, scale, rate
        self.stored: list[tuple[float, str]] = []

    async def __aenter__(self) -> _Centre:
        network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
        network.add_modem("bank0", "usr")
        network.add_hunt_group(CENTRE, ["bank0"])
        network.add_modem("dev", "usr", number="5550001", line={"rate": self.rate})
        self.runner = NetworkRunner(network, time_scale=self.scale)
        await self.runner.start()
        urls = {
            name: (
                await self.runner.expose(name, "pty", path=str(self.folder / "ports" / name))
            ).url
            for name in ("bank0", "dev")
        }
        self.store = SQLiteStore(self.folder / "centre.db", create=True)
        private = write_private_key(self.folder / "centre.key")
        device = self.folder / "dev"
        device.mkdir()
        self.device_key = write_private_key(device / "device.key")
        self.store.enroll(
            "dev", public_of(self.device_key), test_interval=86400, grace=900, site=None
        )
        Spool(device / "spool.db", create=True).close()
        self.client_path = _client_toml(
            device,
            "",
            encode_key(public_of(private)),
            urls["dev"],
        )
        text = self.client_path.read_text().replace(
            "[modem]\n", f'[calls]\nretry_delay = "5s"\n[modem]\ntime_scale = {self.scale}\n'
        )
        self.client_path.write_text(text)
        self.async_store = AsyncStore(self.store)
        self.bank = Bank(
            [urls["bank0"]], self.async_store, private, scale=self.scale, notify=self._notify
        )
        self.stop = asyncio.Event()
        self.task = asyncio.ensure_future(self.bank.run(self.stop))
        while not all(worker.state == "ready" for worker in self.bank.workers):
            await asyncio.sleep(0.05)
        return self

    def _notify(self, what: str, **fields: Any) -> None:
        if what == "stored":
            self.stored.append((time.monotonic(), fields["message_kind"]))

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            await self.task
        self.async_store.close()
        await self.runner.stop()

    def agent(self, settings: str, caller: Any = None) -> Agent:
        with self.client_path.open("a") as file:
            file.write(settings)
        from callhome.client.config import load_client_config

        client = load_client_config(self.client_path)
        config = load_agent_config(self.client_path, client.spool)
        return Agent(
            client,
            config,
            self.device_key,
            rng=random.Random(1),
            **({"caller": caller} if caller else {}),
        )


async def healthy_days(days: int) -> tuple[int, float, float]:
    """(calls, bytes of a plain line-test call, bytes the first inventory added) of a
    healthy device over `days` of scaled time."""
    calls: list[int] = []

    async def caller(config: ClientConfig, spool: Spool, key: bytes) -> CallReport:
        report = await call_centre(config, spool, key)
        calls.append(report.bytes_sent + report.bytes_received)
        return report

    scale = 1 / 28800  # a day in three seconds
    with tempfile.TemporaryDirectory(prefix="agent-days-") as tmp:
        async with _Centre(Path(tmp), 0.05, 33600) as centre:
            write_state(
                centre.client_path.parent / "spool.db.agent.json",
                {"last_test": time.time()},  # tested just now, at the start of the week
            )
            agent = centre.agent(
                f'[agent]\ntime_scale = {scale}\ninterval = "1h"\nanswer = false\n'
                '[[check]]\nkind = "simulated"\nname = "sim"\nscript = "sim.txt"\n',
                caller,
            )
            stop = asyncio.Event()
            task = asyncio.ensure_future(agent.run(stop))
            await asyncio.sleep(days * 86400 * scale + 0.5)
            stop.set()
            await task
    plain = statistics.median(calls[1:]) if len(calls) > 1 else float("nan")
    return len(calls), plain, calls[0] - plain


async def failure_to_stored() -> float:
    """Seconds from a RAID member failure to the report stored, real time, 33,600 bit/s."""
    with tempfile.TemporaryDirectory(prefix="agent-raid-") as tmp:
        async with _Centre(Path(tmp), 1.0, 33600) as centre:
            write_state(
                centre.client_path.parent / "spool.db.agent.json", {"last_test": time.time()}
            )
            agent = centre.agent(
                '[agent]\ninterval = "1s"\ninventory_interval = 0\nanswer = false\n'
                '[[check]]\nkind = "simulated"\nname = "sim"\nscript = "sim.txt"\n'
            )
            stop = asyncio.Event()
            task = asyncio.ensure_future(agent.run(stop))
            await asyncio.sleep(2.0)  # collected healthy
            collector = agent.config.checks[0].collector
            assert isinstance(collector, SimulatedCollector)
            failed = time.monotonic()
            step = parse_line("md/md0 CRITICAL degraded [U_]: sdb failed", timed=False)
            assert step is not None
            collector.apply(step)
            while not any(kind == "report" for _, kind in centre.stored):
                await asyncio.sleep(0.02)
            stored = next(t for t, kind in centre.stored if kind == "report")
            stop.set()
            await task
    return stored - failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--parts", default="1234", help="Which figures (default: all).")
    args = parser.parse_args()
    configure_logging("error", json=True, stream=open(os.devnull, "w"))  # noqa: SIM115

    if "1" in args.parts:
        idles = [idle(args.idle_seconds) for _ in range(args.runs)]
        cpu = statistics.median(c for c, _ in idles)
        rss = statistics.median(r for _, r in idles)
        print(
            f"1. idle agent: {cpu:.3f} % of one core, {rss:.1f} MB RSS  (goal <= 0.2 %, <= 40 MB)"
        )
        bare = [idle(args.idle_seconds, hide_rich=True)[1] for _ in range(args.runs)]
        print(f"   without the test extras (no rich): {statistics.median(bare):.1f} MB RSS")
        answering = [idle(args.idle_seconds, answer=True) for _ in range(args.runs)]
        print(
            "   answering (the default), a virtual modem waiting for the centre's call: "
            f"{statistics.median(c for c, _ in answering):.3f} % of one core, "
            f"{statistics.median(r for _, r in answering):.1f} MB RSS"
        )
    if "2" in args.parts:
        collections = [asyncio.run(one_collection()) for _ in range(max(args.runs, 5))]
        print(
            f"2. one full collection: {statistics.median(collections) * 1000:.1f} ms CPU  "
            "(goal <= 1 s)"
        )
    if "3" in args.parts:
        total, plain, inventory = asyncio.run(healthy_days(args.days))
        print(
            f"3. healthy device: one call a day (the line test; {total} calls in {args.days} "
            f"scaled days, each call taking scaled hours); {plain:.0f} bytes both ways per "
            f"line-test call, the first full inventory +{inventory:.0f} bytes once: "
            f"{plain + inventory / 7:.0f} bytes/day with it spread over a week  "
            "(goal <= 1, <= 400)"
        )
    if "4" in args.parts:
        latencies = [asyncio.run(failure_to_stored()) for _ in range(args.runs)]
        print(
            f"4. RAID failure to stored report at 33,600 bit/s: "
            f"{statistics.median(latencies):.1f} s median of {args.runs} "
            f"(min {min(latencies):.1f}, max {max(latencies):.1f})  (goal <= 15 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
