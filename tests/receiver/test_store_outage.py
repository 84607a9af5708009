"""A bank on PostgreSQL that loses its database: calls are refused busy (the device keeps
its messages for its next number), nothing is acknowledged that was not committed, and
the bank reconnects by itself with backoff once the database is back."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import pytest

from callhome.client.config import ClientConfig
from callhome.client.dialer import call_centre, line_test_content
from callhome.client.spool import Spool
from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind
from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner
from receiver.bank import Bank
from receiver.store import AsyncStore
from receiver.store_pg import PostgresStore

from .pgtest import (  # noqa: F401 - the fixtures
    ADMIN_DSN,
    admin,
    pg_database_fixture,
    pg_session_database_fixture,
)

SCALE = 0.05
PASSWORD = "s3cret-pw"


@pytest.fixture
def closable(pg_session_database, pg_database):
    """A store's place in the session's database, and that database's name: the test
    closes the database to connections for a moment (the tests run one at a time, and
    every other store is closed by then), and it is opened again whatever happens."""
    try:
        yield pg_database(), pg_session_database
    finally:
        admin(f'ALTER DATABASE "{pg_session_database}" ALLOW_CONNECTIONS true')


def cut(database: str) -> int:
    """Close the database to new connections and end the open ones, from the server."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as db:
        db.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'.encode())
        row = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


async def test_a_bank_that_loses_its_database_refuses_busy_and_reconnects(
    tmp_path, closable, capsys, caplog
):
    place, database = closable
    user, _, rest = place.partition("@")
    dsn = f"{user}:{PASSWORD}@{rest}"  # trust authentication: any password will do
    network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
    network.add_modem("bank0", "usr", number="5550100")
    network.add_modem("plant", "generic", number="5550001")
    runner = NetworkRunner(network, time_scale=SCALE)
    await runner.start()
    bank_url = (await runner.expose("bank0", "inproc")).url
    plant_url = (await runner.expose("plant", "inproc")).url
    store = PostgresStore(dsn, create=True, timeout=1.0)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    spool = Spool(tmp_path / "spool.db", create=True)
    config = ClientConfig(
        path=tmp_path / "client.toml",
        name="plant",
        centre_key=public_of(centre_key),
        numbers=["5550100"],
        ports=[plant_url],
        time_scale=SCALE,
        attempts=1,
    )
    bank = Bank([bank_url], AsyncStore(store), centre_key, scale=SCALE)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        while bank.workers[0].state != "ready":
            await asyncio.sleep(0.02)
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        assert (await call_centre(config, spool, device_key)).result == "ok"
        assert cut(database) >= 1
        spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
        refused = await call_centre(config, spool, device_key)
        assert refused.result == "refused" and len(spool.queued()) == 1  # kept for later
        assert bank.store_down is not None and "cannot reach the database" in bank.store_down
        assert bank.refusals == {"busy": 1}
        # while down the bank does not even try the database: busy again, at once
        again = await call_centre(config, spool, device_key)
        assert again.result == "refused" and bank.refusals == {"busy": 2}
        admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        for _ in range(600):  # the reconnection is the bank's, with its backoff
            if bank.store_down is None:
                break
            await asyncio.sleep(0.05)
        assert bank.store_down is None
        assert (await call_centre(config, spool, device_key)).result == "ok"
        assert spool.queued() == []
        assert len(store.messages()) == 2
        # the calls refused while the database was out of reach are recorded since; the
        # last call is recorded once the bank has hung up, which can follow the client's end
        for _ in range(600):
            calls = store.calls()
            if all(c.outcome != "in progress" for c in calls):
                break
            await asyncio.sleep(0.05)
        assert [c.outcome for c in calls] == [
            "completed",
            "refused: busy",
            "refused: busy",
            "completed",
        ]
        assert "store unavailable: " in (calls[1].error or "")
        assert "cannot reach the database" in (calls[1].error or "")
        logs = capsys.readouterr()
        assert "store.unavailable" in logs.out + logs.err
        assert "store.reconnected" in logs.out + logs.err
        assert PASSWORD not in logs.out + logs.err + caplog.text
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await serving
        spool.close()
        store.close()
        await runner.stop()
