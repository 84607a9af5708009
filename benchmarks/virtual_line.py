"""Virtual network benchmarks: rate accuracy and how many busy modems one process carries.

    python -m benchmarks.virtual_line [--runs 3] [--seconds 10] [--modems 64,128,256,384]

1. Rate accuracy: two calls at once, one at 2,400 and one at 33,600 bit/s, each DTE
   writing as fast as CTS allows through a pty; bytes delivered to the far DTE over
   `--seconds` of real time against R/10 (goal: within 2 %). Median of `--runs`.
2. Capacity: N modems (N/2 calls at 33,600 bit/s, both directions streaming, in-process
   ports) in real time; the slowest direction's delivered rate against R/10 and the
   process CPU share. "Sustained" means every direction within 2 % of R/10.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time

from modem_drivers import inproc
from modem_drivers.logs import configure_logging
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner

CHUNK = 512


class _Counter(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.received = 0
        self.started: float | None = None
        self.online = asyncio.Event()
        self.marks: list[tuple[float, int]] = []

    def data_received(self, data: bytes) -> None:
        if not self.online.is_set():
            self.buffer += data
            if b"CONNECT" in self.buffer and self.buffer.endswith(b"\r\n"):
                self.online.set()
            return
        self.received += len(data)


async def _wait_for(protocol: _Counter, token: bytes, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while token not in protocol.buffer:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {token!r}: {bytes(protocol.buffer)!r}")
        await asyncio.sleep(0.005)


async def _pump(
    transport: asyncio.Transport, lines: inproc.ModemLines, stop: asyncio.Event, payload: bytes
) -> None:
    while not stop.is_set():
        if lines.cts:
            transport.write(payload)
        await asyncio.sleep(0.005)


def _pty_pump(fd: int, stop_at: float) -> None:
    """A DTE writing as fast as the pty takes it (the modem's CTS back-pressure)."""
    payload = b"\x5a" * CHUNK
    while time.monotonic() < stop_at:
        os.write(fd, payload)


async def _connect_pair(network: PhoneNetwork, a: str, b: str, number: str):
    pa, pb = _Counter(), _Counter()
    ta, la = inproc.connect(f"inproc://{a}", pa)
    tb, lb = inproc.connect(f"inproc://{b}", pb)
    ta.write(b"ATE0&K3\r")
    tb.write(b"ATE0S0=1\r")
    await _wait_for(pa, b"OK")
    await _wait_for(pb, b"OK")
    pa.buffer.clear()
    ta.write(f"ATD{number}\r".encode())
    await asyncio.wait_for(asyncio.gather(pa.online.wait(), pb.online.wait()), 60)
    return (ta, la, pa), (tb, lb, pb)


async def rate_accuracy(seconds: float) -> dict[int, float]:
    network = PhoneNetwork()
    network.timing = type(network.timing)(ring_on=0.2, ring_off=0.2)
    for rate in (2400, 33600):
        network.add_modem(
            f"src{rate}",
            "generic",
            number=f"1{rate}",
            line={"rate": rate, "latency": 0.05, "training_time": 0.2},
        )
        network.add_modem(f"dst{rate}", "generic", number=f"2{rate}")
    runner = NetworkRunner(network)
    await runner.start()
    results: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (2400, 33600):
            await runner.expose(f"src{rate}", "pty", path=f"{tmp}/src{rate}")
            await runner.expose(f"dst{rate}", "inproc")
        loop = asyncio.get_running_loop()
        receivers = {}
        fds = {}
        for rate in (2400, 33600):
            # the DTE keeps the pty open: closing it would drop DTR and hang up
            fd = fds[rate] = os.open(f"{tmp}/src{rate}", os.O_RDWR | os.O_NOCTTY)
            os.write(fd, b"ATE0&K3\r")
            counter = _Counter()
            transport, _ = inproc.connect(f"inproc://dst{rate}", counter)
            transport.write(b"ATE0S0=1\r")
            await _wait_for(counter, b"OK")
            await asyncio.sleep(0.05)
            os.read(fd, 100)
            os.write(fd, f"ATD2{rate}\r".encode())
            await asyncio.wait_for(counter.online.wait(), 30)
            receivers[rate] = counter
        await asyncio.sleep(0.3)
        stop_at = time.monotonic() + seconds + 1.0
        writers = [
            loop.run_in_executor(None, _pty_pump, fds[rate], stop_at) for rate in (2400, 33600)
        ]
        await asyncio.sleep(0.5)  # past the latency and the buffers filling
        start = {rate: r.received for rate, r in receivers.items()}
        await asyncio.sleep(seconds)
        for rate, receiver in receivers.items():
            results[rate] = (receiver.received - start[rate]) / (rate / 10 * seconds)
        await asyncio.gather(*writers)
        for fd in fds.values():
            os.close(fd)
    await runner.stop()
    return results


async def capacity(modems: int, seconds: float) -> tuple[float, float, float]:
    network = PhoneNetwork()
    network.timing = type(network.timing)(ring_on=0.2, ring_off=0.2)
    pairs = modems // 2
    for i in range(pairs):
        network.add_modem(
            f"a{i}", "generic", number=f"1{i:04d}", line={"rate": 33600, "training_time": 0.5}
        )
        network.add_modem(f"b{i}", "generic", number=f"2{i:04d}")
    runner = NetworkRunner(network)
    await runner.start()
    for name in network.lines:
        await runner.expose(name, "inproc")
    connections = await asyncio.gather(
        *(_connect_pair(network, f"a{i}", f"b{i}", f"2{i:04d}") for i in range(pairs))
    )
    stop = asyncio.Event()
    payload = b"\xa5" * CHUNK
    pumps = [
        asyncio.ensure_future(_pump(t, lines, stop, payload))
        for pair in connections
        for (t, lines, _) in pair
    ]
    await asyncio.sleep(1.0)
    counters = [p for pair in connections for (_, _, p) in pair]
    start = [c.received for c in counters]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    delivered = [(c.received - s) / (3360 * elapsed) for c, s in zip(counters, start, strict=True)]
    stop.set()
    await asyncio.gather(*pumps)
    await runner.stop()
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / elapsed
    return min(delivered), statistics.median(delivered), cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--modems", default="64,128,256,384")
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    args = parser.parse_args()
    configure_logging("error", json=False)

    print(
        f"rate accuracy: delivered bytes / (R/10 x {args.seconds:g} s), pty writer, "
        f"{args.runs} runs"
    )
    runs = [asyncio.run(rate_accuracy(args.seconds)) for _ in range(args.runs)]
    for rate in (2400, 33600):
        ratios = [run[rate] for run in runs]
        print(
            f"  {rate:>6} bit/s: median {statistics.median(ratios):.4f}  "
            f"(runs: {', '.join(f'{r:.4f}' for r in ratios)})  goal 0.98..1.02"
        )

    print(
        f"\ncapacity: modems with calls in progress at 33,600 bit/s, both directions "
        f"streaming, {args.capacity_seconds:g} s each"
    )
    print(f"  {'modems':>6} {'slowest':>8} {'median':>8} {'cpu':>6}  sustained")
    for count in (int(n) for n in args.modems.split(",")):
        slowest, median, cpu = asyncio.run(capacity(count, args.capacity_seconds))
        ok = "yes" if slowest >= 0.98 else "no"
        print(f"  {count:>6} {slowest:>8.4f} {median:>8.4f} {cpu:>6.2f}  {ok}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
