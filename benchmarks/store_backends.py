"""The two stores side by side: messages committed one by one (each `store_message` is
its own transaction, as the bank commits them today, before group commit), through
`AsyncStore` as the bank calls it, with the latency of each commit.

    python -m benchmarks.store_backends [--messages 2000] [--runs 3] [--dsn postgresql://...]

The PostgreSQL store runs in a database made for the run and dropped after it (default
server: root on 127.0.0.1:5432, as `.ci/run` starts it). Prints, per backend, the median
over the runs of messages committed per second and of the p50 and p99 latency of one
commit as the caller sees it (the thread hop included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import psycopg.conninfo

from receiver.store import AsyncStore, SQLiteStore, Store
from receiver.store_pg import PostgresStore


async def run_once(store: Store, messages: int) -> tuple[float, float, float]:
    facade = AsyncStore(store)
    device = store.enroll("bench", os.urandom(32), test_interval=60, grace=0, site=None)
    content = os.urandom(400)  # about a compressed report
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for seq in range(messages):
            before = time.perf_counter()
            await facade.store_message(
                device.id, 1, seq, "report", content, {"severity": "info"}, None, time.time()
            )
            latencies.append(time.perf_counter() - before)
    finally:
        facade.close()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        messages / elapsed,
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def measure(name: str, make: Callable[[], Store], messages: int, runs: int) -> None:
    results = [asyncio.run(run_once(make(), messages)) for _ in range(runs)]
    rate = statistics.median(r[0] for r in results)
    p50 = statistics.median(r[1] for r in results)
    p99 = statistics.median(r[2] for r in results)
    print(
        f"{name:<11} {rate:>9,.0f} msg/s   p50 {p50 * 1000:6.2f} ms   p99 {p99 * 1000:6.2f} ms"
        f"   ({messages} messages, median of {runs} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        count = iter(range(args.runs))
        measure(
            "sqlite",
            lambda: SQLiteStore(Path(folder) / f"c{next(count)}.db", create=True),
            args.messages,
            args.runs,
        )
    name = f"callhome_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        dsn = psycopg.conninfo.make_conninfo(args.dsn, dbname=name)
        schemas = iter(range(args.runs))

        def make_pg() -> Store:
            schema = f"run{next(schemas)}"
            with psycopg.connect(dsn, autocommit=True) as db:
                db.execute(f"CREATE SCHEMA {schema}".encode())
            return PostgresStore(
                psycopg.conninfo.make_conninfo(dsn, options=f"-c search_path={schema}"),
                create=True,
            )

        measure("postgresql", make_pg, args.messages, args.runs)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


if __name__ == "__main__":
    main()
