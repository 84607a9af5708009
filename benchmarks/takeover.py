"""Supervision takeover: how long after its leader is killed (SIGKILL) another of three
receivers on one PostgreSQL database leads supervision.

Starts three real `callhome-receiver run` processes (TCP listeners on loopback, no
modem) on a database it creates and drops, then --rounds times: kill the leader, time
until another logs `supervision.leading` (the log is read every 10 ms), start the killed
one again. Prints the median, minimum and maximum, the lease check interval and the
machine's load.

    .venv/bin/python benchmarks/takeover.py                  # 5 rounds, lease_check 2s
    .venv/bin/python benchmarks/takeover.py --rounds 9 --lease-check 0.5s
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

ADMIN = os.environ.get("CALLHOME_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")
SITES = ("paris", "newyork", "tokyo")
RECEIVER = (sys.executable, "-m", "receiver")


def leading(log: Path, after: int) -> bool:
    lines = log.read_text(errors="replace").splitlines()[after:]
    return any('"supervision.leading"' in line for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease-check", default="2s")
    args = parser.parse_args()
    name = f"callhome_takeover_{uuid.uuid4().hex[:8]}"
    base = ADMIN.rsplit("/", 1)[0]
    with psycopg.connect(ADMIN, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"'.encode())
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            first = root / SITES[0]
            subprocess.run(
                [sys.executable, "-m", "receiver", "init", str(first), "--store", f"{base}/{name}"],
                check=True,
                capture_output=True,
            )
            template = (first / "centre.toml").read_text()
            for site in SITES:
                folder = root / site
                folder.mkdir(exist_ok=True)
                if site != SITES[0]:
                    (folder / "centre.key").write_bytes((first / "centre.key").read_bytes())
                    (folder / "centre.key").chmod(0o600)
                text = template.replace("[centre]\n", f'[centre]\nreceiver = "{site}"\n', 1)
                text += '\n[ip]\nlisten = ["127.0.0.1:0"]\n'
                text += f'\n[supervision]\nlease_check = "{args.lease_check}"\n'
                (folder / "centre.toml").write_text(text)

            def start(site: str) -> None:
                log = (root / site / "receiver.log").open("ab")
                processes[site] = subprocess.Popen(
                    [*RECEIVER, "-c", str(root / site / "centre.toml"), "run", "--json-logs"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

            def lines(site: str) -> int:
                path = root / site / "receiver.log"
                return len(path.read_text(errors="replace").splitlines()) if path.exists() else 0

            for site in SITES:
                start(site)
            took: list[float] = []
            for _ in range(args.rounds):
                with psycopg.connect(f"{base}/{name}") as db:
                    deadline = time.monotonic() + 60
                    while True:
                        row = db.execute(
                            "SELECT holder FROM receiver_leases WHERE name = 'supervisor'"
                        ).fetchone()
                        db.rollback()
                        if row and leading(root / row[0] / "receiver.log", 0):
                            break
                        assert time.monotonic() < deadline, "no leader"
                        time.sleep(0.05)
                leader = str(row[0])
                marks = {site: lines(site) for site in SITES}
                processes[leader].send_signal(signal.SIGKILL)
                killed = time.monotonic()
                processes[leader].wait()
                others = [s for s in SITES if s != leader]
                while not any(leading(root / s / "receiver.log", marks[s]) for s in others):
                    assert time.monotonic() - killed < 60, "no takeover"
                    time.sleep(0.01)
                took.append(time.monotonic() - killed)
                start(leader)
                time.sleep(1.0)  # let it come up (it does not lead: the lease is held)
            print(f"rounds: {args.rounds}, lease_check: {args.lease_check}")
            print(
                f"takeover after SIGKILL: median {statistics.median(took):.2f} s, "
                f"min {min(took):.2f} s, max {max(took):.2f} s"
            )
            print(f"load: {Path('/proc/loadavg').read_text().strip()}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        with psycopg.connect(ADMIN, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


if __name__ == "__main__":
    main()
