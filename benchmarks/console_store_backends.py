"""The console's store reads on SQLite and on PostgreSQL, with the same devices.

    python -m benchmarks.console_store_backends [--devices 100000] [--runs 7]
        [--dsn postgresql://root@127.0.0.1:5432/postgres]

Each backend gets the same `--devices` devices (one in twenty late or down, as in
benchmarks/console_overview.py); PostgreSQL's go into a database made for the run and
dropped after it. Every device also has a row in supervision's table (the late and
down ones late or down there too), as under a running supervision. Printed: the median
of `--runs` calls of each console read the overview and the device list make, without
supervision (judged from the last call) and with it, per backend, in milliseconds; and
the whole request of the device list of the down ones (`GET /devices?state=down`,
server-side: aiohttp's in-process test server, logged in, supervision's states).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from receiver.store import SQLiteStore, Store
from receiver.store_pg import PostgresStore
from receiver.supervision.console import StoreSupervision
from receiver.supervision.settings import SupervisionSettings
from receiver.web.app import Console, make_app
from receiver.web.config import WebConfig
from receiver.web.storage import ConsoleStore

NOW = 1_780_000_000.0
COLUMNS = "name, public_key, enrolled_at, test_interval, grace, site, last_counter, last_seen"
SUPERVISED = (
    "INSERT INTO supervision (device_id, state, since, last) "
    f"SELECT id, CASE WHEN last_seen < {NOW - 86400} "
    "THEN 2 + id - 2 * (id / 2) ELSE 1 END, "  # late (2) or down (3); else up (1)
    f"{NOW - 3600}, last_seen FROM devices"
)


def rows(devices: int) -> list[tuple[Any, ...]]:
    return [
        (
            f"device-{number:06d}",
            number.to_bytes(32, "big"),
            NOW - 86400 * 30,
            3600.0,
            900.0,
            f"site-{number % 50}",
            1,
            NOW - (2 * 86400.0 if number % 20 == 0 else 600.0),
        )
        for number in range(devices)
    ]


def sqlite_store(path: Path, data: list[tuple[Any, ...]]) -> SQLiteStore:
    SQLiteStore(path, create=True).close()
    with sqlite3.connect(path) as db:
        db.executemany(f"INSERT INTO devices ({COLUMNS}) VALUES ({', '.join('?' * 8)})", data)
        db.execute(SUPERVISED)
    return SQLiteStore(path)


def postgres_store(dsn: str, data: list[tuple[Any, ...]]) -> PostgresStore:
    PostgresStore(dsn, create=True).close()
    with psycopg.connect(dsn) as db, db.cursor() as cursor:
        with cursor.copy(f"COPY devices ({COLUMNS}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        cursor.execute(SUPERVISED)
        cursor.execute("ANALYZE devices")
        cursor.execute("ANALYZE supervision")
    return PostgresStore(dsn)


READS: dict[str, Callable[[Store], object]] = {
    "console_device_states (overview)": lambda s: s.console_device_states(NOW, limit=50),
    "console_devices name, page 1": lambda s: s.console_devices(NOW),
    "console_devices down by deadline": lambda s: s.console_devices(
        NOW, state="down", sort="deadline"
    ),
    "console_devices site + text": lambda s: s.console_devices(
        NOW, site="site-7", text="DEVICE-0001"
    ),
    "console_sites": lambda s: s.console_sites(),
    "console_supervision_states (overview)": lambda s: s.console_supervision_states(NOW, limit=50),
    "console_supervision_states (metrics)": lambda s: s.console_supervision_states(NOW, limit=0),
    "console_supervised_devices name, page 1": lambda s: s.console_supervised_devices(NOW),
    "console_supervised_devices down": lambda s: s.console_supervised_devices(
        NOW, state="down", sort="deadline"
    ),
    "console_supervised_devices path ip": lambda s: s.console_supervised_devices(NOW, path="ip"),
}


HTTP = "GET /devices?state=down (server-side)"


async def measure_http(store: Store, runs: int) -> float:
    """The median of `runs` whole requests of the down devices' list, logged in."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store.console_add_account("bench", cheap.hash("benchmark password"), "viewer", NOW)
    console_store = ConsoleStore(store)
    console = Console(
        store=console_store,
        sqlite=store,
        config=WebConfig(port=0),
        supervision=StoreSupervision(console_store, store, SupervisionSettings()),
        clock=lambda: NOW,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(console)))
    await client.start_server()
    try:
        page = await client.get("/login")
        token = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
        await client.post(
            "/login", data={"name": "bench", "password": "benchmark password", "csrf": token}
        )
        samples = []
        for _ in range(runs + 1):  # the first warms the caches
            start = time.perf_counter()
            response = await client.get("/devices?state=down&sort=deadline")
            body = await response.text()
            samples.append(time.perf_counter() - start)
            assert response.status == 200 and "device(s)" in body
        return statistics.median(samples[1:]) * 1000
    finally:
        await client.close()
        console_store.close()


def measure(store: Store, runs: int) -> dict[str, float]:
    result = {}
    for label, read in READS.items():
        read(store)  # warm the caches
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            read(store)
            samples.append(time.perf_counter() - start)
        result[label] = statistics.median(samples) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    data = rows(args.devices)
    database = f"callhome_bench_{uuid.uuid4().hex[:8]}"
    url = urllib.parse.urlsplit(args.dsn)
    dsn = urllib.parse.urlunsplit((url.scheme, url.netloc, f"/{database}", url.query, ""))
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"'.encode())
    try:
        with tempfile.TemporaryDirectory() as folder:
            figures = {}
            for kind, store in (
                ("sqlite", sqlite_store(Path(folder) / "centre.db", data)),
                ("postgresql", postgres_store(dsn, data)),
            ):
                try:
                    figures[kind] = measure(store, args.runs)
                    figures[kind][HTTP] = asyncio.run(measure_http(store, args.runs))
                finally:
                    store.close()
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())
    print(f"{args.devices:,} devices, median of {args.runs} calls, ms:")
    print(f"  {'read':<42} {'sqlite':>8} {'postgresql':>11}")
    for label in (*READS, HTTP):
        print(
            f"  {label:<42} {figures['sqlite'][label]:>8.1f} {figures['postgresql'][label]:>11.1f}"
        )


if __name__ == "__main__":
    main()
