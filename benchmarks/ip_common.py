"""What the IP benchmarks share: a real receiver process listening on loopback TCP
only, devices enrolled in its store, and a client call made with the library (the CLI's
start-up would dwarf the call)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from callhome.keys import load_private_key, public_of
from callhome.tcp import TcpCall, run_tcp_session, tcp_transfer_config
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from callhome.wire.noise import generate_private_key
from callhome.wire.session import ClientSession, Event, MessageAcknowledged
from receiver.store import SQLiteStore

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    folder: Path
    port: int
    centre_public: bytes
    process: subprocess.Popen[bytes]
    devices: list[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU of the receiver process so far."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """User and system CPU of the receiver process so far (the system part is
        mostly the loopback TCP stack: a send on loopback runs the receiving side too)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / ticks, int(fields[12]) / ticks

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_receiver(
    folder: Path,
    devices: int,
    ip_settings: str,
    *,
    store_dir: Path | None = None,
    event_loop: str = "asyncio",
) -> Receiver:
    """`callhome-receiver init` + [ip] settings + `devices` enrolled, then `run` (on
    `event_loop`: `[centre] event_loop`)."""
    subprocess.run(
        [sys.executable, "-m", "receiver", "-c", str(folder / "centre.toml"), "init", str(folder)],
        check=True,
        capture_output=True,
    )
    config = folder / "centre.toml"
    text = config.read_text()
    if store_dir is not None:  # the store elsewhere (tmpfs: the CPU bound, no fsync)
        text = text.replace('store = "centre.db"', f'store = "{store_dir / "centre.db"}"')
        SQLiteStore(store_dir / "centre.db", create=True).close()
    if event_loop != "asyncio":
        if "\nevent_loop = " in text:
            text = text.replace('\nevent_loop = "asyncio"', f'\nevent_loop = "{event_loop}"', 1)
        else:  # a receiver from before the setting (a before/after run)
            text = text.replace("[centre]\n", f'[centre]\nevent_loop = "{event_loop}"\n', 1)
    port = free_port()
    config.write_text(text + f'\n[ip]\nlisten = ["127.0.0.1:{port}"]\n{ip_settings}\n')
    store = SQLiteStore(store_dir / "centre.db" if store_dir else folder / "centre.db")
    keys = []
    for index in range(devices):
        key = generate_private_key()
        store.enroll(f"d{index}", public_of(key), test_interval=86400, grace=900, site=None)
        keys.append(key)
    store.close()
    centre_public = public_of(load_private_key(folder / "centre.key"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "receiver",
            "-c",
            str(config),
            "run",
            "--log-level",
            os.environ.get("BENCH_RECEIVER_LOG", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "receiver.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((folder / "receiver.log").read_text()[-2000:]) from None
            time.sleep(0.1)
    return Receiver(folder, port, centre_public, process, keys)


MESSAGE = encode_message(
    Kind.LINE_TEST,
    {"time": 1_700_000_000, "skew_ms": 3, "previous": {"result": "ok", "total_ms": 40}},
    load_dictionary(CURRENT_DICTIONARY),
)


async def one_call(
    port: int,
    centre_public: bytes,
    key: bytes,
    counter: int,
    *,
    source: str = "127.0.0.1",
    connects: list[float] | None = None,
    failures: dict[str, int] | None = None,
) -> float | None:
    """A line-test call: handshake, one message, its acknowledgement, close. Returns
    the seconds from connecting to the acknowledgement, None if it failed; the seconds
    the TCP connection took go to `connects`, and why a call failed to `failures`
    ("connect", "reset at once": the centre sent no byte, "timeout", "after the
    handshake")."""

    def failed(reason: str) -> None:
        if failures is not None:
            failures[reason] = failures.get(reason, 0) + 1

    loop = asyncio.get_running_loop()
    started = loop.time()
    sock = socket.socket()
    try:
        sock.setblocking(False)
        # The port is chosen at connect(), not at bind(): bind() alone never takes a port
        # that a closed call still holds in TIME_WAIT, so after ~28,000 calls a minute
        # every bind failed (and the search for a free port grew slower run by run);
        # connect() may reuse them on loopback (net.ipv4.tcp_tw_reuse = 2).
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10.0)
        _transport, call = await loop.create_connection(lambda: TcpCall(incoming=False), sock=sock)
    except (OSError, TimeoutError):
        sock.close()
        failed("connect")
        return None
    if connects is not None:
        connects.append(loop.time() - started)
    session = ClientSession(
        static_private=key,
        server_public=centre_public,
        call_counter=counter,
        epoch=1,
        config=tcp_transfer_config(),
    )
    session.queue(1 + counter, MESSAGE)
    session.finish()
    session.start(loop.time())
    acked: list[float] = []

    async def handle(event: Event) -> None:
        if isinstance(event, MessageAcknowledged):
            acked.append(loop.time() - started)

    try:
        await asyncio.wait_for(run_tcp_session(call, session, handle), 30.0)
    except TimeoutError:
        failed("timeout")
        await call.hangup()
        return None
    await call.hangup()
    if not acked:
        failed("reset at once" if call.bytes_in == 0 else "after the handshake")
    return acked[0] if acked else None
