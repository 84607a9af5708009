"""A bank on PostgreSQL that loses its database: calls are refused busy (the device keeps
its messages for its next number), nothing is acknowledged that was not committed, and
the bank reconnects by itself with backoff once the database is back."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from callhome.client.dialer import call_centre, line_test_content
from callhome.wire.messages import Kind
from receiver.store import StoreUnavailable
from receiver.store_pg import PostgresStore
from tests.bankworld import bank_world

from .pgtest import (  # noqa: F401 - the fixtures
    ADMIN_DSN,
    admin,
    pg_database_fixture,
    pg_session_database_fixture,
)

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
    postgres = lambda _path: PostgresStore(dsn, create=True, timeout=1.0)  # noqa: E731
    async with bank_world(tmp_path, store=postgres) as world:
        spool, store, device_key = world.spool, world.store, world.device_key
        config = world.config()
        bank = world.bank()
        async with world.serving(bank):
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
            # the calls refused while the database was out of reach are recorded since
            calls = await world.settled()
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


def test_a_store_is_usable_soon_after_a_long_outage_ends(closable):
    """The pool behind the store retries a lost connection with its own backoff (1, 2,
    4, 8 s... up to its reconnect timeout, 300 s by default): left alone, a store that
    was out for 8 s waits about as long again after the database is back, and the bank
    stays busy all that while (its own backoff is capped, the pool's was not). The
    store bounds the pool's hidden backoff by its `timeout`."""
    place, database = closable
    store = PostgresStore(place, create=True, timeout=1.0)
    try:
        store.version()
        assert cut(database) >= 1
        down = time.monotonic()
        while time.monotonic() - down < 8.0:  # calls fail all through the outage
            with pytest.raises(StoreUnavailable, match="not currently accepting"):
                store.version()
        admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        back = time.monotonic()
        while True:
            try:
                store.version()
                break
            except StoreUnavailable:
                assert time.monotonic() - back < 60.0, "the store never came back"
        # unbounded, the pool's next try is 5.5-8.5 s away; bounded, at most `timeout`
        assert time.monotonic() - back < 3.0
    finally:
        store.close()


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.CannotConnectNow("the database system is shutting down"),  # 57P03
        psycopg.OperationalError(  # libpq's connection errors carry no SQLSTATE
            'connection failed: FATAL:  database "x" is not currently accepting connections'
        ),
    ],
)
def test_a_server_starting_or_stopping_is_an_outage_the_bank_retries(error):
    """The bank retries `StoreUnavailable` (refusing busy meanwhile): a server starting
    up or shutting down, or a database closed to connections, is one."""
    store = PostgresStore.__new__(PostgresStore)  # only the classification is tested
    store.dsn, store.where = "postgresql://u:pw@127.0.0.1/db", "postgresql://u@127.0.0.1/db"
    failure = store._failure(error)
    assert type(failure) is StoreUnavailable
    assert "cannot reach the database" in str(failure) and "pw" not in str(failure)
