"""An in-process centre with a TCP listener, and a bare client for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from callhome.keys import public_of, write_private_key
from callhome.link import run_session
from callhome.tcp import connect_tcp, tcp_transfer_config
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from callhome.wire.session import ClientSession, Event, MessageAcknowledged
from receiver.bank import Bank
from receiver.ip import IpLimits, IpListener
from receiver.store import AsyncStore, SQLiteStore


@dataclass
class Centre:
    store: SQLiteStore
    bank: Bank
    listener: IpListener
    key: bytes

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.bound[0]


@contextlib.asynccontextmanager
async def centre(
    tmp_path: Path, limits: IpLimits | None = None, proxies: list[str] | None = None
) -> AsyncIterator[Centre]:
    store = SQLiteStore(tmp_path / "centre.db", create=True)
    key = write_private_key(tmp_path / "centre.key")
    bank = Bank([], AsyncStore(store), key, listening=True)
    listener = IpListener(
        bank, ["127.0.0.1:0"], limits, status_path=tmp_path / "ip-status.json", proxies=proxies
    )
    await listener.start()
    bank.services.append(listener)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        yield Centre(store, bank, listener, key)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


def enroll(centre: Centre, tmp_path: Path, name: str) -> bytes:
    device_key = write_private_key(tmp_path / f"{name}.key")
    centre.store.enroll(name, public_of(device_key), test_interval=86400, grace=900, site=None)
    return device_key


async def send_report(
    centre: Centre,
    device_key: bytes,
    counter: int,
    seq: int = 1,
    *,
    header: bytes = b"",
    **content: object,
) -> list[Event]:
    """One call over TCP carrying one report (after `header`: a proxy's); the client's
    events."""
    host, port = centre.address
    call = await connect_tcp(host, port, 5.0)
    if header:
        call.write(header)
    session = ClientSession(
        static_private=device_key,
        server_public=public_of(centre.key),
        call_counter=counter,
        epoch=7,
        config=tcp_transfer_config(),
    )
    session.queue(
        seq, encode_message(Kind.REPORT, dict(content), load_dictionary(CURRENT_DICTIONARY))
    )
    session.finish()
    loop = asyncio.get_running_loop()
    session.start(loop.time())
    events: list[Event] = []

    async def handle(event: Event) -> None:
        events.append(event)

    await run_session(call, session, handle)
    await call.hangup()
    return events


def acknowledged(events: list[Event]) -> list[int]:
    return [e.seq for e in events if isinstance(e, MessageAcknowledged)]


class CuttingRelay:
    """A TCP relay to `target` that resets both sides once `cut_after` bytes from the
    device have passed: a network path that fails mid-call."""

    def __init__(self, target: str, cut_after: int) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.cut_after = cut_after
        self.forwarded = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def down() -> None:
            while data := await up_reader.read(4096):
                writer.write(data)

        async def up() -> None:
            while data := await reader.read(512):
                room = self.cut_after - self.forwarded
                up_writer.write(data[:room])
                self.forwarded += min(room, len(data))
                if self.forwarded >= self.cut_after:
                    for side in (writer, up_writer):
                        side.transport.abort()
                    return

        with contextlib.suppress(OSError):
            await asyncio.gather(down(), up())

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
