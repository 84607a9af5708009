"""The whole call, side by side with lrzsz, on the same virtual lines.

    python -m benchmarks.peers [--runs 3] [--quick] [--rate 2400] [--ber 0] [--only NAME]

The project (the agent's call: `call_centre` to an in-process `Bank`, not counting Python
start-up) and lrzsz (`sz`/`rz`: ZMODEM, ZMODEM `-w 4096`, YMODEM-1K, XMODEM-1K, dialled
and hung up the way a terminal program does: ATD, CONNECT, transfer, guarded `+++`,
ATH0) send the same payloads over the same `callhome-sim` lines, each DTE on a pty:
an incompressible 4 KiB and 64 KiB file, a held-out report from
`benchmarks.corpora.evaluation` and a held-out agent event (`evaluation.agent_events`:
what the agent sends most), each sent by lrzsz as its compact JSON. Lines at 2,400 and
33,600 bit/s, BER 0 and 1e-5 (V.42 off, so errors reach the protocols). Medians of
`--runs`, in line (network) seconds:

- bytes up/down: what crossed the line each way during the call;
- data: first protocol byte to the last (ours: handshake + transfer; lrzsz: sz's run);
- CONNECT-done: CONNECT to on hook; dial-hangup: ATD to on hook;
- each against 10*N/R, the time the payload alone takes at the line rate.

The network runs faster than real time (`SCALES`); process start-up and scheduling do
not scale, so they weigh more in line seconds than they would on a real line (for both
sides), and so do lrzsz's own real-time timeouts (10 s waits for a lost header). Needs
`apt-get install lrzsz`. `--quick` (33,600 bit/s only), `--rate` and `--ber` (each
may be given more than once), `--only` (one payload), `--sender` and `--no-64k` reduce
the matrix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2

from benchmarks.corpora import evaluation
from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.logs import configure_logging
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.store import AsyncStore, SQLiteStore

SCALES = {2400: 0.25, 33600: 0.5}
"""Real seconds per line second at each rate."""
PEERS = {
    "zmodem": (["sz", "-b", "-q"], ["rz", "-b", "-q", "-y"]),
    "zmodem -w 4096": (["sz", "-b", "-q", "-w", "4096"], ["rz", "-b", "-q", "-y"]),
    "ymodem-1k": (["sz", "-b", "-q", "--ymodem", "-k"], ["rz", "-b", "-q", "-y", "--ymodem"]),
    "xmodem-1k": (["sz", "-b", "-q", "--xmodem", "-k"], ["rz", "-b", "-q", "-y", "--xmodem"]),
}
BANK, PEER, PLANT = "5550100", "5550200", "5550001"


@dataclass
class Result:
    up: int = 0
    down: int = 0
    data: float = 0.0
    connect_done: float = 0.0
    dial_hangup: float = 0.0
    ok: bool = True
    note: str = ""


@dataclass
class Payload:
    name: str
    file: bytes
    """What lrzsz sends."""
    content: dict[str, Any]
    """What the project sends (the same bytes, or the report itself)."""


def payloads(large: bool) -> list[Payload]:
    rng = random.Random(18)
    reports = sorted(evaluation.corpus(24), key=lambda c: len(cbor2.dumps(c)))
    report = reports[len(reports) // 2]  # a median-sized held-out report
    events = sorted(evaluation.agent_events(24), key=lambda c: len(cbor2.dumps(c)))
    event = events[len(events) // 2]  # what the agent sends most: one held-out event
    blob4, blob64 = rng.randbytes(4096), rng.randbytes(65536)
    items = [
        Payload("report", json.dumps(report, separators=(",", ":")).encode(), report),
        Payload("event", json.dumps(event, separators=(",", ":")).encode(), event),
        Payload("4 KiB random", blob4, {"component": "dump", "blob": blob4}),
    ]
    if large:
        items.append(Payload("64 KiB random", blob64, {"component": "dump", "blob": blob64}))
    return items


# -- a terminal program's side of the modem (for lrzsz) ----------------------------------


class Tty:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        # raw, and no CRTSCTS: a pty has no CTS (with it, sz and rz wait 30 s to exit)
        tty.setraw(self.fd)
        self.buffer = b""

    async def expect(self, *tokens: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not any(token in self.buffer for token in tokens):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waiting for {tokens}: got {self.buffer[-200:]!r}")
            with contextlib.suppress(BlockingIOError):
                self.buffer += os.read(self.fd, 4096)
            await asyncio.sleep(0.002)
        seen, self.buffer = self.buffer, b""
        return seen

    async def chat(self, line: bytes, *tokens: bytes, timeout: float) -> bytes:
        self.buffer = b""
        os.write(self.fd, line + b"\r")
        return await self.expect(*tokens, timeout=timeout)

    def close(self) -> None:
        os.close(self.fd)


async def peer_call(
    runner: NetworkRunner, ports: dict[str, str], payload: Payload, peer: str, folder: Path
) -> Result:
    scale = runner.time_scale
    send_cmd, receive_cmd = PEERS[peer]
    source = folder / "payload.bin"
    source.write_bytes(payload.file)
    inbox = folder / "inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir()
    plant, centre = Tty(ports["plant"]), Tty(ports["peer"])
    try:
        for side, extra in ((plant, b""), (centre, b"S0=0")):
            await side.chat(b"ATZ", b"OK", timeout=5)
            await side.chat(b"ATE0V1Q0&K3&D2" + extra, b"OK", timeout=5)
        record_before = runner.network.line("plant").call
        dialled = runner.now()
        plant.buffer = b""
        os.write(plant.fd, b"ATD" + PEER.encode() + b"\r")
        await centre.expect(b"RING", timeout=60 * scale + 5)
        await centre.chat(b"ATA", b"CONNECT", timeout=90 * scale + 5)
        await plant.expect(b"CONNECT", timeout=90 * scale + 5)
        await asyncio.sleep(0.05 * scale)  # the rest of the CONNECT line
        connected = runner.now()
        call = runner.network.line("plant").call
        assert call is not None and call is not record_before
        for side in (plant, centre):
            os.set_blocking(side.fd, True)
        target = ["payload.bin"] if "xmodem" in peer else []  # relative: rz refuses paths
        receiver = await asyncio.create_subprocess_exec(
            *receive_cmd,
            *target,
            stdin=centre.fd,
            stdout=centre.fd,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=inbox,
        )
        started = runner.now()
        sender = await asyncio.create_subprocess_exec(
            *send_cmd,
            str(source),
            stdin=plant.fd,
            stdout=plant.fd,
            stderr=asyncio.subprocess.DEVNULL,
        )
        limit = 60 + 40 * len(payload.file) * 10 / call.record.rate * scale
        # The transfer is over when the first of the two ends with success: lrzsz's sz
        # flushes its output (TCIOFLUSH) right after the final "OO", which on a pty
        # (no drain) can discard it, and rz then waits 3 x 10 s for it; its YMODEM rz
        # ends without acknowledging the end-of-batch header, and sz waits for that.
        note = ""
        waits = {
            asyncio.ensure_future(sender.wait()): "sz",
            asyncio.ensure_future(receiver.wait()): "rz",
        }
        finished, pending = await asyncio.wait(
            waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        done = runner.now()
        for task in list(pending):
            if waits[task] == "sz":  # it holds the port the hang-up needs: end it now
                with contextlib.suppress(ProcessLookupError):
                    sender.kill()
                await sender.wait()
                pending.discard(task)
                note = "sz stopped when rz ended"
        for side in (plant, centre):
            os.set_blocking(side.fd, False)
        # hang up as a terminal program does: guard, +++, guard, OK, ATH0
        await asyncio.sleep(1.1 * scale)
        plant.buffer = b""
        os.write(plant.fd, b"+++")
        await plant.expect(b"OK", timeout=3 * scale + 5)
        await plant.chat(b"ATH0", b"OK", timeout=5)
        on_hook = runner.now()
        if pending and finished:  # the other end, after the hang-up: not timed
            _, pending = await asyncio.wait(pending, timeout=2.0)
        for task in pending:
            process = sender if waits[task] == "sz" else receiver
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            note = f"{waits[task]} stopped when the other ended"
        codes = [task.result() for task in finished] or [-1]
        received = inbox / "payload.bin"
        ok = codes[0] == 0 and received.exists()
        if ok:
            data = received.read_bytes()
            # XMODEM pads the last block with ^Z: a known cost of that protocol
            ok = data == payload.file or data.rstrip(b"\x1a") == payload.file.rstrip(b"\x1a")
        record = call.record
        return Result(
            record.bytes_caller_to_callee,
            record.bytes_callee_to_caller,
            done - started,
            on_hook - connected,
            on_hook - dialled,
            ok,
            note if ok else f"exit {codes}",
        )
    finally:
        plant.close()
        centre.close()
        await asyncio.sleep(0.5 * scale)


# -- the project's call ---------------------------------------------------------------


@dataclass
class Centre:
    bank: Bank
    store: SQLiteStore
    key: bytes
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


async def own_call(
    runner: NetworkRunner, ports: dict[str, str], payload: Payload, folder: Path, centre: Centre
) -> Result:
    scale = runner.time_scale
    device_key = folder / "device.key"
    if not device_key.exists():
        private = write_private_key(device_key)
        centre.store.enroll("plant", public_of(private), test_interval=86400, grace=900, site=None)
    private = _load(device_key)
    spool_path = folder / "spool.db"
    spool = Spool(spool_path, create=not spool_path.exists())
    config = ClientConfig(
        path=folder / "client.toml",
        name="plant",
        centre_key=public_of(centre.key),
        numbers=[BANK],
        ports=[ports["plant"]],
        time_scale=scale,
        attempts=1,
    )
    spool.enqueue(Kind.REPORT, payload.content)
    # each call finds the bank's port idle, as each lrzsz call finds its modem: a call
    # right after the last would ring only once the bank noticed the last one end
    while centre.bank.workers[0].in_call or centre.bank.workers[0].state != "ready":
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5 * scale)
    report = await call_centre(config, spool, private)
    ok = report.result == "ok"
    data = ((report.handshake_seconds or 0) + (report.transfer_seconds or 0)) / scale
    line = (report.line_seconds or 0) / scale
    connect = (report.connect_seconds or 0) / scale
    return Result(
        report.bytes_sent,
        report.bytes_received,
        data,
        line - connect,
        line,
        ok,
        "" if ok else report.result,
    )


def _load(path: Path) -> bytes:
    from callhome.keys import load_private_key

    return load_private_key(path)


# -- the matrix -----------------------------------------------------------------------


RATES = (2400, 33600)
BERS = (0.0, 1e-5)


async def measure(
    runs: int,
    quick: bool,
    large: bool,
    only: str | None = None,
    who_only: str | None = None,
    rates: tuple[int, ...] = (),
    bers: tuple[float, ...] = (),
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    rates = rates or ((33600,) if quick else RATES)
    bers = bers or BERS
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for rate in rates:
            scale = SCALES[rate]
            network = PhoneNetwork()
            for name, number in (("plant", PLANT), ("bank", BANK), ("peer", PEER)):
                network.add_modem(name, "generic" if name == "plant" else "usr", number=number)
            runner = NetworkRunner(network, time_scale=scale)
            await runner.start()
            ports = {
                name: (await runner.expose(name, "pty", path=str(folder / name))).url
                for name in ("plant", "bank", "peer")
            }
            store = SQLiteStore(folder / f"centre-{rate}.db", create=True)
            key = write_private_key(folder / f"centre-{rate}.key")
            bank = Bank([ports["bank"]], AsyncStore(store), key, scale=scale)
            centre = Centre(bank, store, key)
            centre.task = asyncio.ensure_future(bank.run(centre.stop))
            while bank.workers[0].state != "ready":
                await asyncio.sleep(0.02)
            own = folder / f"own-{rate}"
            own.mkdir()
            try:
                for ber in bers:
                    for name in ("plant", "bank", "peer"):
                        network.set_line(name, rate=rate, ber=ber, v42=False, latency=0.05)
                    for payload in payloads(large or only is not None):
                        if only is not None and payload.name != only:
                            continue
                        n = len(payload.file)
                        ideal = 10 * n / rate
                        for who in ("callhome", *PEERS):
                            if who_only is not None and who != who_only:
                                continue
                            results = []
                            for _ in range(runs):
                                if who == "callhome":
                                    result = await own_call(runner, ports, payload, own, centre)
                                else:
                                    result = await peer_call(runner, ports, payload, who, folder)
                                results.append(result)
                            good = [r for r in results if r.ok] or results
                            med = {
                                k: statistics.median(getattr(r, k) for r in good)
                                for k in ("up", "down", "data", "connect_done", "dial_hangup")
                            }
                            row = (
                                f"{rate}",
                                f"{ber:g}",
                                payload.name,
                                f"{n}",
                                who,
                                f"{med['up']:.0f}/{med['down']:.0f}",
                                f"{med['data']:.1f} ({med['data'] / ideal:.2f}x)",
                                f"{med['connect_done']:.1f} ({med['connect_done'] / ideal:.2f}x)",
                                f"{med['dial_hangup']:.1f} ({med['dial_hangup'] / ideal:.2f}x)",
                                f"{sum(r.ok for r in results)}/{runs}",
                            )
                            rows.append(row)
                            print(" | ".join(row), flush=True)
            finally:
                centre.stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(centre.task, 30)
                await runner.stop()
    return rows


HEADER = (
    "rate",
    "BER",
    "payload",
    "N bytes",
    "sender",
    "bytes up/down",
    "data s (x 10N/R)",
    "CONNECT-done s",
    "dial-hangup s",
    "ok",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="33,600 bit/s only")
    parser.add_argument("--no-64k", action="store_true", help="without the 64 KiB payload")
    parser.add_argument("--only", help="one payload: report, event, '4 KiB random', ...")
    parser.add_argument("--sender", help="one sender: callhome, zmodem, ...")
    parser.add_argument(
        "--rate", type=int, action="append", choices=sorted(SCALES), help="line rate (bit/s)"
    )
    parser.add_argument("--ber", type=float, action="append", help="bit error rate, e.g. 1e-5")
    args = parser.parse_args(argv)
    if any(not 0.0 <= ber < 0.01 for ber in args.ber or ()):
        parser.error("--ber: a bit error rate from 0 to 0.01")
    names = [p.name for p in payloads(True)]
    if args.only is not None and args.only not in names:
        parser.error(f"--only: one of {', '.join(names)}")
    if args.sender is not None and args.sender not in ("callhome", *PEERS):
        parser.error(f"--sender: one of callhome, {', '.join(PEERS)}")
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("sz") is None or shutil.which("rz") is None:
        print("needs lrzsz: apt-get install lrzsz", file=sys.stderr)
        return 2
    configure_logging("warning")
    print(" | ".join(HEADER), flush=True)
    rows = asyncio.run(
        measure(
            args.runs,
            args.quick,
            not args.no_64k,
            args.only,
            args.sender,
            tuple(args.rate or ()),
            tuple(args.ber or ()),
        )
    )
    print("\n| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
