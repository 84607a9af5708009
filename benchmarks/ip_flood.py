"""A flood of unauthenticated handshake attempts against the TCP listener while enrolled
devices keep calling: the devices' acknowledgement latency and the receiver's memory.

    python -m benchmarks.ip_flood [--rate 10000] [--seconds 10] [--flooders 2]
        [--sources 1] [--devices 64] [--runs 3]

Each flooder process (at nice 19: it stands for other machines) opens TCP connections
from 127.0.0.2 (and up, `--sources` addresses), sends a forged HS1 (a well-framed
handshake message of random bytes), and resets the connection, at `--rate` attempts a
second in all. Meanwhile each device, from an address of its own (127.0.1.x), makes a
line-test call (handshake, one message, acknowledgement, close) about once a second;
each run first lets the devices call as long again without the flood, so that on a
shared machine the flood's own effect on their latency is the difference.
The receiver is the real `callhome-receiver run` with the default [ip] limits; figures:
the attempts a second actually made, over the flooders' own time (Python on a shared
machine may fall short of `--rate`: it is printed), the devices' calls, TCP connect
times and ack latency (p50, p99), the receiver's CPU and resident memory (start, peak,
end), and its refusal counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

from .ip_common import Receiver, one_call, start_receiver


def _flood(args: tuple[int, float, float, list[str]]) -> tuple[int, float]:
    """The attempts this flooder made, and the seconds it took: its own flooding time
    (the run's wall time is longer: process dispatch, the devices' last calls; on a busy
    machine a flooder at nice 19 may overrun its `seconds` too)."""
    port, rate, seconds, sources = args
    # the flooders stand for other machines: on a shared box they must not take the
    # receiver's CPU, only its sockets (the kernel's work for each connection stays)
    os.nice(19)
    linger = struct.pack("ii", 1, 0)  # close = RST: no TIME_WAIT, no port exhaustion
    start = time.monotonic()
    tried = delivered = 0
    batch = 50
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            return delivered, now - start
        due = int((now - start) * rate) - tried
        if due <= 0:
            time.sleep(batch / rate / 2)
            continue
        for index in range(min(due, batch)):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            # blocking, so that the HS1 follows an established connection (on loopback
            # the connect takes microseconds while the listener's backlog has room)
            sock.settimeout(1.0)
            try:
                sock.bind((sources[(tried + index) % len(sources)], 0))
                sock.connect(("127.0.0.1", port))
            except ConnectionResetError:
                # connected, then refused: the receiver's rate limit resets a connection
                # as it accepts it, often before this process (at nice 19) is back from
                # connect(); an attempt all the same
                delivered += 1
            except OSError:
                pass  # never connected (a full backlog under load): the receiver saw nothing
            else:
                # connected: an attempt the receiver sees, whether the send reaches it or
                # finds the connection already reset (ECONNRESET, or EPIPE once the reset
                # has been read)
                delivered += 1
                try:
                    sock.send(b"\x00\x6b\x01" + os.urandom(106))
                except OSError:
                    pass
            sock.close()
        tried += min(due, batch)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def _devices(
    receiver: Receiver,
    seconds: float,
    base: int,
    connects: list[float],
    failures: dict[str, int] | None = None,
) -> tuple[list[float], int]:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    latencies: list[float] = []
    failed = 0

    async def device(index: int) -> None:
        nonlocal failed
        counter = base
        await asyncio.sleep(index / len(receiver.devices))  # spread over the second
        while loop.time() < end:
            started = loop.time()
            counter += 1
            result = await one_call(
                receiver.port,
                receiver.centre_public,
                receiver.devices[index],
                counter,
                source=f"127.0.1.{index + 1}",
                connects=connects,
                failures=failures,
            )
            if result is None:
                failed += 1
            else:
                latencies.append(result)
            await asyncio.sleep(max(0.0, 1.0 - (loop.time() - started)))

    await asyncio.gather(*(device(i) for i in range(len(receiver.devices))))
    return latencies, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flooders", type=int, default=2)
    parser.add_argument("--sources", type=int, default=1)
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    assert options.devices <= 250
    sources = [f"127.0.2.{i + 1}" if i else "127.0.0.2" for i in range(options.sources)]
    p99s: list[float] = []
    quiet_p99s: list[float] = []
    rates: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        receiver = start_receiver(Path(folder), options.devices, "")
        try:
            rss_start = receiver.rss_kib()
            peak = [rss_start]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.25):
                    peak.append(receiver.rss_kib())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with multiprocessing.get_context("spawn").Pool(options.flooders) as pool:
                for run in range(options.runs):
                    # the same devices first without the flood, then with it: on a
                    # shared machine, the flood's own cost is the difference
                    quiet, _ = asyncio.run(
                        _devices(receiver, options.seconds, (2 * run + 1) * 1_000_000, [])
                    )
                    quiet_p99s.append(_percentile(quiet, 0.99))
                    cpu_before, started = receiver.cpu_seconds(), time.monotonic()
                    flooding = pool.map_async(
                        _flood,
                        [
                            (
                                receiver.port,
                                options.rate / options.flooders,
                                options.seconds,
                                sources[f :: options.flooders] or sources,
                            )
                            for f in range(options.flooders)
                        ],
                    )
                    connects: list[float] = []
                    failures: dict[str, int] = {}
                    latencies, failed = asyncio.run(
                        _devices(
                            receiver,
                            options.seconds,
                            (2 * run + 2) * 1_000_000,
                            connects,
                            failures,
                        )
                    )
                    flooded = flooding.get()
                    attempts = sum(count for count, _seconds in flooded)
                    attempt_rate = sum(count / seconds for count, seconds in flooded)
                    elapsed = time.monotonic() - started
                    cpu = receiver.cpu_seconds() - cpu_before
                    p99 = _percentile(latencies, 0.99)
                    rss = receiver.rss_kib() // 1024
                    connect = [_percentile(connects, q) * 1000 for q in (0.5, 0.99)]
                    p99s.append(p99)
                    rates.append(attempt_rate)
                    print(
                        f"run {run + 1}: without the flood, {len(quiet)} calls acknowledged, "
                        f"ack latency p50 {_percentile(quiet, 0.5) * 1000:.0f} ms, p99 "
                        f"{quiet_p99s[-1] * 1000:.0f} ms; with {attempt_rate:.0f} forged "
                        f"attempts/s ({attempts} in all): {len(latencies)} acknowledged, "
                        f"{failed} failed {json.dumps(failures)}, ack "
                        f"latency p50 {_percentile(latencies, 0.5) * 1000:.0f} ms, p99 "
                        f"{p99 * 1000:.0f} ms (TCP connect p50 {connect[0]:.0f} ms, p99 "
                        f"{connect[1]:.0f} ms); receiver CPU {cpu / elapsed * 100:.0f}% of a "
                        f"core, RSS {rss} MiB"
                    )
            sampling.set()
            rss_end = receiver.rss_kib()
        finally:
            receiver.stop()
        status = json.loads((Path(folder) / "ip-status.json").read_text())
    print(
        f"\nmedian of {options.runs}: {statistics.median(rates):.0f} forged attempts/s, "
        f"device ack latency p99 {statistics.median(p99s) * 1000:.0f} ms (without the flood "
        f"{statistics.median(quiet_p99s) * 1000:.0f} ms, load {os.getloadavg()[0]:.1f}); "
        "receiver RSS "
        f"{rss_start // 1024} MiB at start, peak {max(peak) // 1024} MiB, end {rss_end // 1024} MiB"
    )
    print(
        f"receiver counters: admitted {status['admitted']}, authenticated "
        f"{status['authenticated']}, refused {json.dumps(status['refused'])}; "
        f"{status['sources_tracked']} sources tracked ({os.cpu_count()} CPUs, "
        f"{options.flooders} flooder processes, {len(sources)} flooding addresses)"
    )


if __name__ == "__main__":
    main()
