"""How long the console's overview takes to render server-side with 100,000 devices
and 1,000 open incidents (the issue's budget: under 200 ms).

    python -m benchmarks.console_overview [--devices 100000] [--incidents 1000] [--runs 7]

The store is a real SQLite file (devices inserted in bulk, one in twenty late or down,
a thousand calls). Two consoles side by side, in one run:

- "last call": incidents in the in-memory supervision double, device states judged from
  each device's last call (what a centre without supervision sees);
- "supervision": what `run` and `web` serve with supervision on (`StoreSupervision`):
  every device with a row in supervision's table (one in twenty late or down, a few on
  test), a thousand open incidents in the store, device states read from supervision's
  table.

Each run is one GET / through aiohttp's in-process test server with a logged-in
session: the store read on the console's own thread, the device summary, the
incidents, the template. Figures are medians of `--runs`, with the parts timed on their
own, the two consoles interleaved run by run.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from receiver.store import SQLiteStore
from receiver.supervision.console import StoreSupervision
from receiver.supervision.engine import State
from receiver.supervision.settings import SupervisionSettings
from receiver.web.app import Console, make_app
from receiver.web.config import WebConfig
from receiver.web.sources import MemorySupervision, Supervision
from receiver.web.storage import ConsoleStore

NOW = 1_780_000_000.0


def build(path: Path, devices: int, incidents: int, *, supervised: bool) -> SQLiteStore:
    SQLiteStore(path, create=True).close()
    db = sqlite3.connect(path)
    rows = []
    for number in range(devices):
        # one in twenty has not called for two days: late or down
        seen = NOW - (2 * 86400.0 if number % 20 == 0 else 600.0)
        rows.append(
            (
                f"device-{number:06d}",
                number.to_bytes(32, "big"),
                NOW - 86400 * 30,
                3600.0,
                900.0,
                f"site-{number % 50}",
                1,
                seen,
            )
        )
    db.executemany(
        "INSERT INTO devices (name, public_key, enrolled_at, test_interval, grace, site, "
        "last_counter, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.executemany(
        "INSERT INTO calls (port, device_id, started, ended, outcome) VALUES (?, ?, ?, ?, ?)",
        [(f"bank{n % 4}", n + 1, NOW - n, NOW - n + 30, "completed") for n in range(1000)],
    )
    if supervised:
        db.executemany(
            "INSERT INTO supervision (device_id, state, since, last) VALUES (?, ?, ?, ?)",
            [
                (
                    number + 1,
                    int(
                        (State.DOWN if number % 40 == 0 else State.LATE)
                        if number % 20 == 0
                        else State.ON_TEST
                        if number % 1000 == 1
                        else State.UP
                    ),
                    NOW - 3600.0,
                    NOW - (2 * 86400.0 if number % 20 == 0 else 600.0),
                )
                for number in range(devices)
            ],
        )
        db.executemany(
            "INSERT INTO incidents (id, kind, severity, key, summary, device, status, "
            "opened_at) VALUES (?, 'device_down', 'major', ?, ?, ?, 'open', ?)",
            [
                (
                    n + 1,
                    f"device_down:device-{n * 20:06d}",
                    f"device-{n * 20:06d} is down",
                    f"device-{n * 20:06d}",
                    NOW - n,
                )
                for n in range(incidents)
            ],
        )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store.console_add_account("bench", cheap.hash("benchmark password"), "viewer", NOW)
    return store


async def console_for(
    folder: Path, devices: int, incidents: int, *, supervised: bool
) -> tuple[TestClient[Any, Any], Console, Supervision]:
    sqlite = build(folder / "centre.db", devices, incidents, supervised=supervised)
    store = ConsoleStore(sqlite)
    source: Supervision
    if supervised:
        source = StoreSupervision(store, sqlite, SupervisionSettings())
    else:
        memory = MemorySupervision(store, sqlite)
        for number in range(incidents):
            memory.open(
                number + 1,
                "device_down",
                f"device-{number:06d} is late",
                NOW - number,
                device=f"device-{number:06d}",
            )
        source = memory
    console = Console(
        store=store, sqlite=sqlite, config=WebConfig(port=0), supervision=source, clock=lambda: NOW
    )
    client = TestClient(TestServer(make_app(console)))
    await client.start_server()
    page = await client.get("/login")
    token = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
    await client.post(
        "/login", data={"name": "bench", "password": "benchmark password", "csrf": token}
    )
    return client, console, source


async def measure(
    client: TestClient[Any, Any], source: Supervision, times: dict[str, list[float]]
) -> int:
    start = time.perf_counter()
    response = await client.get("/")
    body = await response.text()
    times["whole"].append(time.perf_counter() - start)
    assert response.status == 200 and "Overview" in body
    start = time.perf_counter()
    await source.summary(NOW, 50)
    times["summary"].append(time.perf_counter() - start)
    start = time.perf_counter()
    listed = await client.get("/devices?state=down&sort=deadline")
    assert listed.status == 200
    await listed.text()
    times["listing"].append(time.perf_counter() - start)
    return len(body)


async def run(devices: int, incidents: int, runs: int) -> None:
    names = ("last call", "supervision")
    times: dict[str, dict[str, list[float]]] = {
        name: {"whole": [], "summary": [], "listing": []} for name in names
    }
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        consoles = {
            "last call": await console_for(Path(a), devices, incidents, supervised=False),
            "supervision": await console_for(Path(b), devices, incidents, supervised=True),
        }
        try:
            for _ in range(runs):
                for name, (client, _console, source) in consoles.items():
                    sizes[name] = await measure(client, source, times[name])
        finally:
            for client, console, _source in consoles.values():
                await client.close()
                console.store.close()
    ms = lambda samples: f"{statistics.median(samples) * 1000:.1f} ms"  # noqa: E731
    print(f"overview, {devices:,} devices, {incidents:,} open incidents, median of {runs}:")
    print(f"{'':42}{names[0]:>14}{names[1]:>14}")
    rows = (
        ("whole request (GET /, server-side)", "whole"),
        ("  of which the device summary (SQL)", "summary"),
        ("devices page (down, by deadline, 200)", "listing"),
    )
    for label, key in rows:
        print(f"{label:42}" + "".join(f"{ms(times[name][key]):>14}" for name in names))
    print(f"{'page size (bytes)':42}" + "".join(f"{sizes[name]:>14,}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--incidents", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(run(args.devices, args.incidents, args.runs))


if __name__ == "__main__":
    main()
