"""The bank's capacity: N ports in one receiver, every line busy at 33,600 bit/s.

    python -m benchmarks.bank_capacity [--ports 16,64,128,256] [--kinds pty,tcp]
        [--seconds 40] [--size 40000] [--runs 1] [--workers 4] [--event-loop uvloop]

For each cell, three kinds of process: `callhome-sim run` (the virtual network in real
time: N bank modems in one hunt group and N device modems, exposed as ptys or TCP),
`callhome-receiver run` on the N bank ports, and `--workers` client processes sharing
the N devices, each device sending one report of `--size` random (incompressible)
bytes per call, call after call, for `--seconds`. Printed per cell:

- goodput per port, min and median over the calls, as a fraction of R/10 (the line's
  bytes per second): the report's bytes over the time from the end of the handshake
  to the end of the exchange; `min` and `median` are medians over the runs, `worst` is
  the slowest call of any run;
- the receiver's CPU (cores: CPU seconds over wall seconds while the calls ran), its CPU
  per payload byte and its peak RSS; the simulator's and the clients' CPU (cores and
  per payload byte) beside it, since they share the machine; and the 1-minute load
  average when the cell ended (the machine may be shared with more than this run);
- wire/B: the bytes the clients sent over the line per payload byte of the calls that
  succeeded (framing, encryption and retransmissions: on a starved machine late ACKs
  make the sender resend, which costs every process more CPU per payload byte).

Figures, not pass/fail: the goal is 256 ports at >= 0.95 of R/10 with the receiver at
<= 1 core; on a machine whose cores are shared, read the other processes' CPU too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RATE = 33600
HUNT = "5550100"


def sim_config(ports: int, kind: str) -> str:
    """TCP ports are left to the system (tcp_port 0): the ready file names them."""
    lines = [
        "time_scale = 1.0",
        'log_level = "warning"',
        "[line]",
        f"rate = {RATE}",
        "v42 = true",
        "training_time = 1.0",
        "latency = 0.05",
    ]
    for role in ("bank", "dev"):
        for index in range(ports):
            name = f"{role}{index}"
            lines += ["[[modem]]", f'name = "{name}"', 'profile = "usr"', f'port = "{kind}"']
            if role == "dev":
                lines.append(f'number = "555{2000 + index:04d}"')
    lines += ["[[hunt_group]]", f'number = "{HUNT}"']
    lines.append("members = [" + ", ".join(f'"bank{i}"' for i in range(ports)) + "]")
    return "\n".join(lines) + "\n"


def profiled(out: str, module: str) -> None:
    """Run `module` as __main__ (arguments from sys.argv) under a CPU-time profile."""
    import cProfile
    import runpy

    sys.argv[0] = module
    profiler = cProfile.Profile(time.process_time)
    try:
        profiler.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(out)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(path: Path, seconds: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear in {seconds} s")
        time.sleep(0.1)


def run_cell(
    folder: Path,
    ports: int,
    kind: str,
    seconds: float,
    size: int,
    workers: int,
    profile: Path | None = None,
    event_loop: str = "asyncio",
) -> dict[str, Any]:
    from callhome.keys import public_of, write_private_key
    from receiver.store import SQLiteStore

    config = folder / "net.toml"
    config.write_text(sim_config(ports, kind))
    ready = folder / "ready.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # --profile: the simulator runs under cProfile counting CPU time, not wall time (it
    # stops cleanly on SIGTERM, so the profile is written), and so do the client workers
    sim_command = (
        [
            sys.executable,
            "-c",
            "from benchmarks.bank_capacity import profiled; "
            f"profiled({str(profile / f'sim-{kind}{ports}.prof')!r}, 'modem_drivers.virtual')",
        ]
        if profile
        else [str(Path(sys.executable).parent / "callhome-sim")]
    )
    sim = subprocess.Popen(
        [
            *sim_command,
            "run",
            str(config),
            "--json-logs",
            "--run-dir",
            str(folder / "ports"),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "sim.log", "wb"),  # noqa: SIM115
        env=env,
    )
    processes: list[subprocess.Popen[bytes]] = [sim]
    spools = folder
    try:
        wait_for(ready, 120, sim)
        urls = {m["modem"]: m["url"] for m in json.loads(ready.read_text())["modems"]}
        centre = folder / "centre"
        init = subprocess.run(
            [
                sys.executable,
                "-m",
                "receiver",
                "-c",
                str(centre / "centre.toml"),
                "init",
                str(centre),
                *[a for i in range(ports) for a in ("--port", urls[f"bank{i}"])],
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        centre_key = init.stdout.split("centre public key: ")[1].split()[0]
        centre_config = centre / "centre.toml"
        centre_config.write_text(
            centre_config.read_text().replace(
                'event_loop = "asyncio"', f'event_loop = "{event_loop}"', 1
            )
        )
        devices = []
        # each real device has a disk of its own; here hundreds share one process and one
        # disk, and the spool's fsyncs block that process's loop for all of them: the
        # spools go to memory (the receiver's store stays on the disk)
        shm = Path("/dev/shm")
        spools = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else folder
        store = SQLiteStore(centre / "centre.db")
        try:
            for index in range(ports):
                device_folder = spools / f"dev{index}"
                device_folder.mkdir()
                key = write_private_key(device_folder / "device.key")
                store.enroll(
                    f"dev{index}", public_of(key), test_interval=86400, grace=900, site=None
                )
                devices.append(
                    {
                        "name": f"dev{index}",
                        "url": urls[f"dev{index}"],
                        "folder": str(device_folder),
                        "key": key.hex(),
                    }
                )
        finally:
            store.close()
        receiver_log = folder / "receiver.log"
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "receiver",
                "-c",
                str(centre / "centre.toml"),
                "run",
                "--json-logs",
                "--log-level",
                "info",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(receiver_log, "wb"),  # noqa: SIM115
            env=env,
        )
        processes.append(receiver)
        deadline = time.monotonic() + 120 + ports
        while receiver_log.read_bytes().count(b'"port.up"') < ports:
            if receiver.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the receiver did not bring its ports up: see {receiver_log}")
            time.sleep(0.2)
        spec = {"centre_key": centre_key, "seconds": seconds, "size": size}
        clients = []
        for worker in range(workers):
            mine = devices[worker::workers]
            spec_file = folder / f"worker{worker}.json"
            profile_file = str(profile / f"client-{kind}{ports}-{worker}.prof") if profile else None
            spec_file.write_text(json.dumps({**spec, "devices": mine, "profile": profile_file}))
            clients.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.bank_capacity",
                        "--client-worker",
                        str(spec_file),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=open(folder / f"worker{worker}.log", "wb"),  # noqa: SIM115
                    env=env,
                )
            )
        processes.extend(clients)
        started = time.monotonic()
        before = {p.pid: cpu_seconds(p.pid) for p in (sim, receiver)}
        results: list[dict[str, Any]] = []
        client_cpu = 0.0
        for client in clients:
            out, _ = client.communicate(timeout=seconds + 600)
            data = json.loads(out or b"{}")
            results.extend(data.get("calls", []))
            client_cpu += data.get("cpu", 0.0)
        wall = time.monotonic() - started
        receiver_cpu = cpu_seconds(receiver.pid) - before[receiver.pid]
        sim_cpu = cpu_seconds(sim.pid) - before[sim.pid]
        rss = rss_mib(receiver.pid)
    finally:
        if spools != folder:
            shutil.rmtree(spools, ignore_errors=True)
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    good = [c for c in results if c["result"] == "ok" and c["transfer_seconds"]]
    fractions = sorted(c["bytes"] / c["transfer_seconds"] / (RATE / 10) for c in good)
    payload = sum(c["bytes"] for c in good)
    sent = sum(c.get("sent", 0) for c in good)
    return {
        "ports": ports,
        "kind": kind,
        "calls": len(results),
        "ok": len(good),
        "min": fractions[0] if fractions else 0.0,
        "median": statistics.median(fractions) if fractions else 0.0,
        "receiver_cores": receiver_cpu / wall,
        "us_per_byte": 1e6 * receiver_cpu / payload if payload else float("nan"),
        "rss_mib": rss,
        "wire_per_byte": sent / payload if payload else float("nan"),
        "sim_cores": sim_cpu / wall,
        "client_cores": client_cpu / wall,
        "sim_us_per_byte": 1e6 * sim_cpu / payload if payload else float("nan"),
        "client_us_per_byte": 1e6 * client_cpu / payload if payload else float("nan"),
    }


async def client_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from callhome.client.config import ClientConfig
    from callhome.client.dialer import call_centre
    from callhome.client.spool import Spool
    from callhome.keys import parse_public_key
    from callhome.wire.messages import Kind
    from modem_drivers.logs import configure_logging

    configure_logging("warning")
    centre_key = parse_public_key(spec["centre_key"])
    deadline = time.monotonic() + spec["seconds"]
    calls: list[dict[str, Any]] = []

    async def device(entry: dict[str, Any]) -> None:
        folder = Path(entry["folder"])
        spool = Spool(folder / "spool.db", create=True)
        config = ClientConfig(
            path=folder / "client.toml",
            name=entry["name"],
            centre_key=centre_key,
            numbers=[HUNT],
            ports=[entry["url"]],
            time_scale=1.0,
            attempts=1,
            retry_delay=1.0,
        )
        private = bytes.fromhex(entry["key"])
        try:
            while time.monotonic() < deadline:
                spool.enqueue(
                    Kind.REPORT, {"component": entry["name"], "data": os.urandom(spec["size"])}
                )
                report = await call_centre(config, spool, private)
                calls.append(
                    {
                        "result": report.result,
                        "transfer_seconds": report.transfer_seconds,
                        "bytes": spec["size"] * len(report.acknowledged),
                        "sent": report.bytes_sent,
                    }
                )
        finally:
            spool.close()

    await asyncio.gather(*(device(entry) for entry in spec["devices"]))
    usage = os.times()
    return {"calls": calls, "cpu": usage.user + usage.system}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", default="16,64,128,256")
    parser.add_argument("--kinds", default="pty,tcp")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--size", type=int, default=40000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--event-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the receiver's ([centre] event_loop)",
    )
    parser.add_argument(
        "--profile", type=Path, help="write cProfile files of the simulator and clients here"
    )
    parser.add_argument("--client-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_worker:
        spec = json.loads(Path(args.client_worker).read_text())
        if spec.get("profile"):
            import cProfile

            with cProfile.Profile(time.process_time) as profiler:
                result = asyncio.run(client_worker(spec))
            profiler.dump_stats(spec["profile"])
        else:
            result = asyncio.run(client_worker(spec))
        print(json.dumps(result))
        return
    print(
        f"bank capacity at {RATE} bit/s (R/10 = {RATE // 10} B/s), {args.size} B reports, "
        f"{args.seconds:.0f} s per cell, medians of {args.runs}, receiver on {args.event_loop}"
    )
    print(
        f"{'ports':>5} {'kind':>4} {'calls':>5} {'ok':>4} {'worst':>5} {'min':>5} {'median':>6} "
        f"{'recv cores':>10} {'us/B':>5} {'RSS MiB':>7} {'sim':>5} {'us/B':>5} "
        f"{'clients':>7} {'us/B':>5} {'wire/B':>6}  loadavg"
    )
    for ports in (int(p) for p in args.ports.split(",")):
        for kind in args.kinds.split(","):
            cells = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as folder:
                    try:
                        cells.append(
                            run_cell(
                                Path(folder),
                                ports,
                                kind,
                                args.seconds,
                                args.size,
                                args.workers,
                                args.profile,
                                args.event_loop,
                            )
                        )
                    except (SystemExit, subprocess.SubprocessError, OSError) as exc:
                        print(f"{ports:>5} {kind:>4} failed: {exc}", flush=True)
            if not cells:
                continue

            def med(key: str, cells: list[dict[str, Any]] = cells) -> float:
                return statistics.median(float(c[key]) for c in cells)

            load = Path("/proc/loadavg").read_text().split()[0]
            print(
                f"{ports:>5} {kind:>4} {med('calls'):>5.0f} {med('ok'):>4.0f} "
                f"{min(c['min'] for c in cells):>5.3f} {med('min'):>5.3f} {med('median'):>6.3f} "
                f"{med('receiver_cores'):>10.2f} "
                f"{med('us_per_byte'):>5.2f} {med('rss_mib'):>7.0f} {med('sim_cores'):>5.2f} "
                f"{med('sim_us_per_byte'):>5.2f} {med('client_cores'):>7.2f} "
                f"{med('client_us_per_byte'):>5.2f} {med('wire_per_byte'):>6.3f}  {load}",
                flush=True,
            )


if __name__ == "__main__":
    main()
