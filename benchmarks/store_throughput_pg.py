"""benchmarks/store_throughput.py on PostgreSQL: reports per second committed and then
acknowledged through the bank's write path, with and without group commit.

    python -m benchmarks.store_throughput_pg [--calls 1,16,64] [--size 300]
        [--seconds 3] [--runs 3] [--dsn postgresql://root@127.0.0.1:5432/postgres]

The same calls as store_throughput.py (record a call, advance the counter, store
`--reports` reports one after another, each awaited, record the end), on a database
made for the run and dropped after it (a schema of its own for each cell). Printed per
number of calls: reports/s, commits per report and p50/p99 of the acknowledgement
latency, one commit per write against group commit, medians of `--runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import store_throughput
from receiver.store_pg import PostgresStore


class _Schemas:
    """Stands in for store_throughput's SQLiteStore: each store it opens is a fresh
    PostgreSQL schema in the run's database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.made = 0

    def __call__(self, _path: Path, *, create: bool = False) -> PostgresStore:
        self.made += 1
        schema = f"cell_{self.made}"
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {schema}".encode())
        options = urllib.parse.quote(f"-c search_path={schema}")
        return PostgresStore(f"{self.dsn}?options={options}", create=create)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,16,64")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reports", type=int, default=4, help="reports per call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    database = f"callhome_bench_{uuid.uuid4().hex[:8]}"
    url = urllib.parse.urlsplit(args.dsn)
    dsn = urllib.parse.urlunsplit((url.scheme, url.netloc, f"/{database}", "", ""))
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"'.encode())
    store_throughput.SQLiteStore = _Schemas(dsn)  # type: ignore[misc,assignment]
    print(f"store throughput, PostgreSQL, {args.size}-byte reports, medians of {args.runs}")
    print(
        f"{'calls':>5} {'mode':>14} {'reports/s':>10} {'commits/rep':>11} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    try:
        for calls in (int(c) for c in args.calls.split(",")):
            for batching in (False, True):
                cells: list[Any] = [
                    asyncio.run(
                        store_throughput.run_cell(
                            Path("."), calls, args.size, args.seconds, args.reports, batching
                        )
                    )
                    for _ in range(args.runs)
                ]

                def median(name: str, cells: list[Any] = cells) -> float:
                    return statistics.median(getattr(c, name) for c in cells)

                mode = "group commit" if batching else "one per write"
                print(
                    f"{calls:>5} {mode:>14} {median('reports_per_second'):>10.0f} "
                    f"{median('commits_per_report'):>11.3f} {median('p50_ms'):>7.1f} "
                    f"{median('p99_ms'):>7.1f}",
                    flush=True,
                )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())


if __name__ == "__main__":
    main()
