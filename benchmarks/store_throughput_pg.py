"""benchmarks/store_throughput.py on PostgreSQL alone: reports per second committed and
then acknowledged through the bank's write path, one commit per write against group
commit, side by side.

    python -m benchmarks.store_throughput_pg [--calls 1,16,64] [--size 300]
        [--seconds 3] [--runs 3] [--dsn postgresql://root@127.0.0.1:5432/postgres]

The same calls as store_throughput.py (record a call, advance the counter, store
`--reports` reports one after another, each awaited, record the end), on a database
made for the run and dropped after it (a schema of its own for each cell). Printed per
number of calls: reports/s, commits per report and p50/p99 of the acknowledgement
latency, one commit per write against group commit, medians of `--runs`. For SQLite and
PostgreSQL side by side: `python -m benchmarks.store_throughput --backend both`.
"""

from __future__ import annotations

import argparse
import asyncio

from benchmarks.store_throughput import (
    ADMIN_DSN,
    Cell,
    columns,
    load,
    postgres_settings,
    postgres_stores,
    run_cell,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", default="1,16,64")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reports", type=int, default=4, help="reports per call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", default=ADMIN_DSN)
    args = parser.parse_args()
    with postgres_stores(args.dsn) as make:
        print(
            f"store throughput, PostgreSQL, {args.size}-byte reports, medians of {args.runs}; "
            f"load average {load()}"
        )
        print(postgres_settings(args.dsn))
        print(
            f"{'calls':>5} {'mode':>14} {'reports/s':>10} {'commits/rep':>11} "
            f"{'p50 ms':>7} {'p99 ms':>7}"
        )
        for calls in (int(c) for c in args.calls.split(",")):
            for batching in (False, True):
                cells: list[Cell] = [
                    asyncio.run(
                        run_cell(make(), calls, args.size, args.seconds, args.reports, batching)
                    )
                    for _ in range(args.runs)
                ]
                mode = "group commit" if batching else "one per write"
                print(f"{calls:>5} {mode:>14} {columns(cells)}", flush=True)
        print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
