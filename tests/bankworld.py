"""One centre's bank and one client system on the virtual phone network, in-process.

Many tests need the same small world: a bank port `bank0` (number 5550100) and a client
modem `plant` (5550001) on an in-process line, the centre's and the device's keys, the
device enrolled in the centre's store, the client's spool and its config. `bank_world`
builds it and takes it down again; `BankWorld.serving` runs a bank until the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callhome.client.config import ClientConfig
from callhome.client.dialer import CallReport, call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.store import AsyncStore, SQLiteStore

SCALE = 0.05
"""Line time runs twenty times faster than real time."""

BANK_NUMBER = "5550100"
PLANT_NUMBER = "5550001"


@dataclass
class BankWorld:
    tmp_path: Path
    network: PhoneNetwork
    runner: NetworkRunner
    bank_url: str
    plant_url: str
    store: Any  # a SQLiteStore or a PostgresStore
    centre_key: bytes
    device_key: bytes
    spool: Spool
    scale: float = SCALE

    def config(self, **overrides: Any) -> ClientConfig:
        """The client's config: one number, the plant's modem, one attempt."""
        fields: dict[str, Any] = {
            "path": self.tmp_path / "client.toml",
            "name": "plant",
            "centre_key": public_of(self.centre_key),
            "numbers": [BANK_NUMBER],
            "ports": [self.plant_url],
            "time_scale": self.scale,
            "attempts": 1,
        }
        fields.update(overrides)
        return ClientConfig(**fields)

    def bank(self, store: Any = None, **options: Any) -> Bank:
        """A bank on `bank0`, over the world's store unless another wrapper is given."""
        wrapped = AsyncStore(self.store) if store is None else store
        return Bank([self.bank_url], wrapped, self.centre_key, scale=self.scale, **options)

    @contextlib.asynccontextmanager
    async def serving(self, bank: Bank, *, stop_within: float = 30.0) -> AsyncIterator[Bank]:
        """Run `bank` until the block ends; the block starts once its first port is ready,
        and fails if the bank stopped before it was told to."""
        stop = asyncio.Event()
        serving = asyncio.ensure_future(bank.run(stop))
        try:
            while bank.workers[0].state != "ready":
                if serving.done():
                    serving.result()  # the bank's own error, not a hang
                await asyncio.sleep(0.02)
            yield bank
            if serving.done():  # a bank stops only when told to
                serving.result()
                raise AssertionError("the bank stopped by itself")
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, stop_within)

    async def line_test(self, config: ClientConfig | None = None) -> CallReport:
        """Queue a line test and call the centre once."""
        self.spool.enqueue(Kind.LINE_TEST, line_test_content(self.spool))
        return await call_centre(config or self.config(), self.spool, self.device_key)

    async def settled(self, within: float = 30.0) -> list[Any]:
        """The centre's calls once none is still in progress: the bank records a call's
        end when it has hung up, which can follow the client's own end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            calls = self.store.calls()
            if all(call.outcome != "in progress" for call in calls) or loop.time() > deadline:
                return list(calls)
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def bank_world(
    tmp_path: Path,
    *,
    store: Callable[[Path], Any] | None = None,
    bank_profile: str = "usr",
    test_interval: int = 86400,
    grace: int = 900,
    site: str | None = None,
    bank_port: str = "inproc",
) -> AsyncIterator[BankWorld]:
    """The world, with `plant` enrolled; `store` makes the centre's store (SQLite in
    tmp_path by default); `bank_port="pty"` puts the bank on a pty (no DCD: calls end
    by NO CARRIER) instead of an in-process port."""
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    network.add_modem("bank0", bank_profile, number=BANK_NUMBER)
    network.add_modem("plant", "generic", number=PLANT_NUMBER)
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    spool: Spool | None = None
    centre_store: Any = None
    try:
        path = str(tmp_path / "bank0") if bank_port == "pty" else None
        bank_url = (await runner.expose("bank0", bank_port, path=path)).url
        plant_url = (await runner.expose("plant", "inproc")).url
        make_store = store or (lambda path: SQLiteStore(path / "centre.db", create=True))
        centre_store = make_store(tmp_path)
        centre_key = write_private_key(tmp_path / "centre.key")
        device_key = write_private_key(tmp_path / "device.key")
        centre_store.enroll(
            "plant", public_of(device_key), test_interval=test_interval, grace=grace, site=site
        )
        spool = Spool(tmp_path / "spool.db", create=True)
        yield BankWorld(
            tmp_path,
            network,
            runner,
            bank_url,
            plant_url,
            centre_store,
            centre_key,
            device_key,
            spool,
        )
    finally:
        if spool is not None:
            spool.close()
        if centre_store is not None:
            centre_store.close()
        await runner.stop()
