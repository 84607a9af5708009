"""How many reports per second the centre's store commits and acknowledges: the bank's
write path (group commit through `AsyncStore`) without modems or protocol.

    python -m benchmarks.store_throughput [--calls 1,16,256] [--sizes 300,4096,65536]
        [--seconds 3] [--runs 3] [--no-batching] [--dir PATH]

Each of `calls` concurrent "calls" does what the bank does for a call: record it,
advance the device's counter, then store reports one after another (each awaited, as
the acknowledgement waits for it), `--reports` per call, record the end, and start
again. SQLite in WAL mode with `synchronous=FULL` on the disk of `--dir` (not a tmpfs).
Prints reports/s committed-then-acknowledged, commits (WAL fsyncs) per report and the
p50/p99 of the time from a report's arrival to its acknowledgement, as medians of
`--runs`; `--no-batching` gives the old figure (one transaction per write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from receiver.store import AsyncStore, CallEnd, SQLiteStore


@dataclass
class Cell:
    reports_per_second: float
    commits_per_report: float
    p50_ms: float
    p99_ms: float


async def run_cell(
    folder: Path, calls: int, size: int, seconds: float, reports: int, batching: bool
) -> Cell:
    store = SQLiteStore(folder / "centre.db", create=True)
    devices = [
        store.enroll(f"d{i}", os.urandom(32), test_interval=86400, grace=900, site=None)
        for i in range(calls)
    ]
    async_store = AsyncStore(store) if batching else AsyncStore(store, window=0.0, max_batch=1)
    latencies: list[float] = []
    stored = 0
    deadline = time.perf_counter() + seconds
    payload = os.urandom(size)

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
                    device.id, 1, seq, "report", payload, {"severity": "info"}, call_id, 0.0
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,16,256")
    parser.add_argument("--sizes", default="300,4096,65536")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reports", type=int, default=4, help="reports per call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--dir", default=None, help="where the store goes (a real disk)")
    args = parser.parse_args()
    mode = "one commit per write" if args.no_batching else "group commit"
    print(f"store throughput, SQLite WAL synchronous=FULL, {mode}, medians of {args.runs}")
    print(
        f"{'calls':>5} {'size':>6} {'reports/s':>10} {'commits/rep':>11} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    for calls in (int(c) for c in args.calls.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            cells = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(dir=args.dir) as folder:
                    cells.append(
                        asyncio.run(
                            run_cell(
                                Path(folder),
                                calls,
                                size,
                                args.seconds,
                                args.reports,
                                not args.no_batching,
                            )
                        )
                    )

            def median(name: str, cells: list[Cell] = cells) -> float:
                return statistics.median(getattr(c, name) for c in cells)

            print(
                f"{calls:>5} {size:>6} {median('reports_per_second'):>10.0f} "
                f"{median('commits_per_report'):>11.3f} {median('p50_ms'):>7.1f} "
                f"{median('p99_ms'):>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
