"""How many reports per second the centre's store commits and acknowledges: the bank's
write path (group commit through `AsyncStore`) without modems or protocol, on SQLite,
on PostgreSQL, or both side by side in one run.

    python -m benchmarks.store_throughput [--backend sqlite|postgresql|both]
        [--calls 1,16,256] [--sizes 300,4096,65536] [--seconds 3] [--runs 3]
        [--no-batching] [--no-handover] [--dir PATH] [--dsn postgresql://root@127.0.0.1:5432/postgres]

Each of `calls` concurrent "calls" does what the bank does for a call: record it,
advance the device's counter, then store reports one after another (each awaited, as
the acknowledgement waits for it), `--reports` per call, record the end, and start
again. SQLite in WAL mode with `synchronous=FULL` on the disk of `--dir` (not a tmpfs);
PostgreSQL in a database made for the run on the `--dsn` server (a schema of its own
for each cell) and dropped after it, with the server's own settings (`fsync`,
`synchronous_commit`: printed). With `both`, each run measures the cell on SQLite then
on PostgreSQL, so that both see the same moment of a shared machine.

Prints reports/s committed-then-acknowledged, commits per report and the p50/p99 of the
time from a report's arrival to its acknowledgement, as medians of `--runs`, and the
machine's load average before and after; `--no-batching` gives the old figure (one
transaction per write). Each report also writes its supervision inbox row in its
transaction, as `callhome-receiver run` does; `--no-handover` leaves it out (the bank
before 2026-12, or without supervision).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from receiver.store import AsyncStore, CallEnd, SQLiteStore, Store

BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
HANDOVER = (
    '{"at": 1796301365.3996127, "callback": false, "caller": "0146001234", "device": '
    '"DEVICE", "device_time": null, "kind": "report", "note": "stored", "path": "modem", '
    '"port": "paris:/dev/ttyUSB3"}'
)
"""A supervision inbox row as the bank writes it (`supervision.service.handed_over`)."""


@dataclass
class Cell:
    reports_per_second: float
    commits_per_report: float
    p50_ms: float
    p99_ms: float


async def run_cell(
    store: Store,
    calls: int,
    size: int,
    seconds: float,
    reports: int,
    batching: bool,
    handover: bool = True,
) -> Cell:
    """Drive the new, empty `store` for `seconds` (it is closed after)."""
    devices = [
        store.enroll(f"d{i}", os.urandom(32), test_interval=86400, grace=900, site=None)
        for i in range(calls)
    ]
    async_store = AsyncStore(store) if batching else AsyncStore(store, window=0.0, max_batch=1)
    latencies: list[float] = []
    stored = 0
    deadline = time.perf_counter() + seconds
    payload = os.urandom(size)
    store.receiver = "paris"

    async def caller(index: int) -> None:
        nonlocal stored
        device = devices[index]
        counter = seq = 0
        while time.perf_counter() < deadline:
            call_id = await async_store.start_call(f"bank{index}", None, time.time())
            counter += 1
            await async_store.advance_counter(device.id, counter, time.time())
            for _ in range(reports):
                seq += 1
                arrived = time.perf_counter()
                await async_store.store_message(
                    device.id,
                    1,
                    seq,
                    "report",
                    payload,
                    {"severity": "info"},
                    call_id,
                    0.0,
                    handover=HANDOVER.replace("DEVICE", device.name) if handover else None,
                )
                latencies.append(time.perf_counter() - arrived)
                stored += 1
            await async_store.finish_call(
                call_id,
                CallEnd(
                    time.time(), "completed", device.id, 33600, None, None, 0, 0, reports, None
                ),
            )

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(calls)))
    elapsed = time.perf_counter() - started
    commits = async_store.commits
    async_store.close()
    latencies.sort()
    return Cell(
        reports_per_second=stored / elapsed,
        commits_per_report=commits / max(1, stored),
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


@contextlib.contextmanager
def sqlite_stores(folder: str | None) -> Iterator[Callable[[], Store]]:
    """New SQLite stores, each in a directory of its own under `folder`, deleted when
    the next is made (the store before it is closed by then) or at the end."""
    places: list[tempfile.TemporaryDirectory[str]] = []

    def make() -> Store:
        while places:
            places.pop().cleanup()
        places.append(tempfile.TemporaryDirectory(dir=folder))
        return SQLiteStore(Path(places[-1].name) / "centre.db", create=True)

    try:
        yield make
    finally:
        while places:
            places.pop().cleanup()


@contextlib.contextmanager
def postgres_stores(admin_dsn: str) -> Iterator[Callable[[], Store]]:
    """New PostgreSQL stores, each a schema of its own in a database made for the run
    on `admin_dsn`'s server and dropped after it. Exits with one line if the server
    cannot be used."""
    import psycopg

    from receiver.store_pg import PostgresStore, explain

    database = f"callhome_bench_{uuid.uuid4().hex[:8]}"
    url = urllib.parse.urlsplit(admin_dsn)
    dsn = urllib.parse.urlunsplit((url.scheme, url.netloc, f"/{database}", "", ""))
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{database}"'.encode())
    except psycopg.Error as exc:
        raise SystemExit(f"store_throughput: {explain(exc, admin_dsn)}") from None
    made = 0

    def make() -> Store:
        nonlocal made
        made += 1
        schema = f"cell_{made}"
        with psycopg.connect(dsn, autocommit=True) as db:
            # the store before this one is closed by now: its rows can go
            db.execute(f"DROP SCHEMA IF EXISTS cell_{made - 1} CASCADE".encode())
            db.execute(f"CREATE SCHEMA {schema}".encode())
        options = urllib.parse.quote(f"-c search_path={schema}")
        return PostgresStore(f"{dsn}?options={options}", create=True)

    try:
        yield make
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())


def postgres_settings(admin_dsn: str) -> str:
    """The server's settings that decide what a commit costs, as one line."""
    import psycopg

    with psycopg.connect(admin_dsn, connect_timeout=5) as db:
        rows = db.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version') ORDER BY name"
        ).fetchall()
    return ", ".join(f"{name}={setting}" for name, setting in rows)


def load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def median(cells: list[Cell], name: str) -> float:
    return float(statistics.median(getattr(cell, name) for cell in cells))


def columns(cells: list[Cell]) -> str:
    return (
        f"{median(cells, 'reports_per_second'):>10.0f} "
        f"{median(cells, 'commits_per_report'):>11.3f} {median(cells, 'p50_ms'):>7.1f} "
        f"{median(cells, 'p99_ms'):>7.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="sqlite")
    parser.add_argument("--calls", default="1,16,256")
    parser.add_argument("--sizes", default="300,4096,65536")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reports", type=int, default=4, help="reports per call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--no-handover", action="store_true")
    parser.add_argument("--dir", default=None, help="where SQLite stores go (a real disk)")
    parser.add_argument("--dsn", default=ADMIN_DSN, help="PostgreSQL server (admin role)")
    args = parser.parse_args()
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    mode = "one commit per write" if args.no_batching else "group commit"
    mode += ", without inbox rows" if args.no_handover else ", with inbox rows"
    with contextlib.ExitStack() as stack:
        factories = {
            name: stack.enter_context(
                sqlite_stores(args.dir) if name == "sqlite" else postgres_stores(args.dsn)
            )
            for name in backends
        }
        print(
            f"store throughput, {mode}, {args.reports} reports per call, medians of "
            f"{args.runs} runs of {args.seconds:g} s; load average {load()}"
        )
        if "sqlite" in backends:
            print("SQLite: WAL, synchronous=FULL")
        if "postgresql" in backends:
            print(f"PostgreSQL: {postgres_settings(args.dsn)}")
        head = f"{'reports/s':>10} {'commits/rep':>11} {'p50 ms':>7} {'p99 ms':>7}"
        width = len(head)
        print(f"{'':>12}" + "".join(f" | {BACKENDS[name]:^{width}}" for name in backends))
        print(f"{'calls':>5} {'size':>6}" + f" | {head}" * len(backends))
        for calls in (int(c) for c in args.calls.split(",")):
            for size in (int(s) for s in args.sizes.split(",")):
                cells: dict[str, list[Cell]] = {name: [] for name in backends}
                for _ in range(args.runs):
                    for name in backends:
                        cells[name].append(
                            asyncio.run(
                                run_cell(
                                    factories[name](),
                                    calls,
                                    size,
                                    args.seconds,
                                    args.reports,
                                    not args.no_batching,
                                    not args.no_handover,
                                )
                            )
                        )
                print(
                    f"{calls:>5} {size:>6}"
                    + "".join(f" | {columns(cells[name])}" for name in backends),
                    flush=True,
                )
        print(f"load average after: {load()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
