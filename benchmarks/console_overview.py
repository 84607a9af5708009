"""How long the console's overview takes to render server-side with 100,000 devices
and 1,000 open incidents (the issue's budget: under 200 ms).

    python -m benchmarks.console_overview [--devices 100000] [--incidents 1000] [--runs 7]

The store is a real SQLite file (devices inserted in bulk, one in twenty late or down,
a thousand calls); incidents are held by the in-memory supervision double. Each run is
one GET / through aiohttp's in-process test server with a logged-in session: the store
read on the console's own thread, the device summary, the incidents, the template.
Figures are medians of `--runs`, with the parts timed on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from receiver.store import SQLiteStore
from receiver.web.app import Console, make_app
from receiver.web.config import WebConfig
from receiver.web.sources import MemorySupervision
from receiver.web.storage import ConsoleStore

NOW = 1_780_000_000.0


def build(path: Path, devices: int) -> SQLiteStore:
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
    db.commit()
    db.close()
    store = SQLiteStore(path)
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store.console_add_account("bench", cheap.hash("benchmark password"), "viewer", NOW)
    return store


async def run(devices: int, incidents: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sqlite = build(Path(folder) / "centre.db", devices)
        store = ConsoleStore(sqlite)
        supervision = MemorySupervision(store, sqlite)
        for number in range(incidents):
            supervision.open(
                number + 1,
                "device_down",
                f"device-{number:06d} is late",
                NOW - number,
                device=f"device-{number:06d}",
            )
        console = Console(
            store=store,
            sqlite=sqlite,
            config=WebConfig(port=0),
            supervision=supervision,
            clock=lambda: NOW,
        )
        client = TestClient(TestServer(make_app(console)))
        await client.start_server()
        try:
            page = await client.get("/login")
            token = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
            await client.post(
                "/login", data={"name": "bench", "password": "benchmark password", "csrf": token}
            )
            whole, summary, listing = [], [], []
            for _ in range(runs):
                start = time.perf_counter()
                response = await client.get("/")
                body = await response.text()
                whole.append(time.perf_counter() - start)
                assert response.status == 200 and "Overview" in body
                start = time.perf_counter()
                await supervision.summary(NOW, 50)
                summary.append(time.perf_counter() - start)
                start = time.perf_counter()
                listed = await client.get("/devices?state=down&sort=deadline")
                assert listed.status == 200
                await listed.text()
                listing.append(time.perf_counter() - start)
        finally:
            await client.close()
            console.store.close()
    ms = lambda samples: f"{statistics.median(samples) * 1000:.1f} ms"  # noqa: E731
    print(f"overview, {devices:,} devices, {incidents:,} open incidents, median of {runs}:")
    print(f"  whole request (GET /, server-side):   {ms(whole)}")
    print(f"    of which the device summary (SQL):  {ms(summary)}")
    print(f"  page size: {len(body):,} bytes")
    print(f"devices page (down ones by deadline, judged in SQL, 200 a page): {ms(listing)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--incidents", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(run(args.devices, args.incidents, args.runs))


if __name__ == "__main__":
    main()
