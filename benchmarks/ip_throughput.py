"""Line-test calls over loopback TCP against one receiver process: completed calls a
second (handshake, one message, its acknowledgement, close) and the receiver's CPU per
call.

    python -m benchmarks.ip_throughput [--seconds 5] [--runs 3] [--workers 2]
        [--concurrency 32] [--devices 512] [--tmpfs] [--event-loop uvloop]

The receiver is the real `callhome-receiver run` (TCP only, logs at error level); the
calls come from `--workers` client processes, each keeping `--concurrency` calls in
flight. Every call is recorded and its message committed (SQLite, synchronous=FULL)
before the acknowledgement, so with the store on a disk the figure is the disk's fsync
rate; `--tmpfs` puts the store in /dev/shm to show the CPU bound. The clients share the
machine's cores with the receiver: the CPU per call is the receiver's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

from .ip_common import one_call, start_receiver


def _worker(args: tuple[int, bytes, list[bytes], int, float, int]) -> tuple[int, int, list[float]]:
    port, centre, keys, concurrency, seconds, base = args

    async def main() -> tuple[int, int, list[float]]:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        done, failed, latencies = 0, 0, []
        counters = dict.fromkeys(range(len(keys)), base)

        async def caller(lane: int) -> None:
            nonlocal done, failed
            mine = list(range(lane, len(keys), concurrency))
            index = 0
            while loop.time() < end:
                device = mine[index % len(mine)]
                index += 1
                counters[device] += 1
                result = await one_call(port, centre, keys[device], counters[device])
                if result is None:
                    failed += 1
                else:
                    done += 1
                    latencies.append(result)

        await asyncio.gather(*(caller(lane) for lane in range(concurrency)))
        return done, failed, latencies

    try:  # the load generator: the less CPU it takes, the more the rate says of the receiver
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--devices", type=int, default=512)
    parser.add_argument("--tmpfs", action="store_true", help="the store in /dev/shm")
    parser.add_argument(
        "--event-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the receiver's ([centre] event_loop)",
    )
    options = parser.parse_args()
    per_worker = options.devices // options.workers
    assert per_worker >= options.concurrency, "at least one device per call in flight"
    with (
        tempfile.TemporaryDirectory() as folder,
        tempfile.TemporaryDirectory(dir="/dev/shm" if options.tmpfs else None) as store_dir,
    ):
        receiver = start_receiver(
            Path(folder),
            options.devices,
            # one source (loopback) makes every call: the per-source limits must allow it
            "rate = 100000.0\nburst = 100000\nmax_handshakes_per_source = 100000\n"
            "max_handshakes = 4096\nmax_connections = 8192",
            store_dir=Path(store_dir) if options.tmpfs else None,
            event_loop=options.event_loop,
        )
        rates, cpus, p50s, p99s = [], [], [], []
        try:
            with multiprocessing.get_context("spawn").Pool(options.workers) as pool:
                for run in range(options.runs):
                    jobs = [
                        (
                            receiver.port,
                            receiver.centre_public,
                            receiver.devices[w * per_worker : (w + 1) * per_worker],
                            options.concurrency,
                            options.seconds,
                            run * 1_000_000,
                        )
                        for w in range(options.workers)
                    ]
                    (user_before, sys_before), started = receiver.cpu_times(), time.monotonic()
                    results = pool.map(_worker, jobs)
                    elapsed = time.monotonic() - started
                    user_after, sys_after = receiver.cpu_times()
                    user, system = user_after - user_before, sys_after - sys_before
                    cpu = user + system
                    done = sum(r[0] for r in results)
                    failed = sum(r[1] for r in results)
                    latencies = sorted(x for r in results for x in r[2])
                    rate = done / elapsed
                    rates.append(rate)
                    cpus.append(cpu / max(done, 1) * 1000)
                    p50s.append(latencies[len(latencies) // 2] if latencies else float("nan"))
                    p99s.append(
                        latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
                    )
                    print(
                        f"run {run + 1}: {done} calls in {elapsed:.1f} s = {rate:.0f} calls/s, "
                        f"{failed} failed; receiver CPU {cpu:.2f} s = {cpus[-1]:.2f} ms/call "
                        f"({user / max(done, 1) * 1000:.2f} user, "
                        f"{system / max(done, 1) * 1000:.2f} system); "
                        f"ack latency p50 {p50s[-1] * 1000:.1f} ms, p99 {p99s[-1] * 1000:.1f} ms"
                    )
        finally:
            receiver.stop()
    print(
        f"\nmedian of {options.runs}: {statistics.median(rates):.0f} completed calls/s, "
        f"receiver CPU {statistics.median(cpus):.2f} ms per call (its ceiling: "
        f"{1000 / statistics.median(cpus):.0f} calls/s on one free core), ack latency p50 "
        f"{statistics.median(p50s) * 1000:.1f} ms, p99 {statistics.median(p99s) * 1000:.1f} ms "
        f"(receiver on {options.event_loop}, "
        f"store {'on tmpfs' if options.tmpfs else 'on disk'}, {os.cpu_count()} CPUs, "
        f"{options.workers} client processes x {options.concurrency} calls in flight)"
    )


if __name__ == "__main__":
    main()
