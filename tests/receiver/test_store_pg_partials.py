"""On PostgreSQL a partial copy appended by one receiver while another stores the same
message can be left over (neither transaction sees the other's row); it must never be
offered for resume. Deterministic: the append's transaction is held open across the
other receiver's store."""

from __future__ import annotations

import os

import psycopg

from receiver.store import AppendPartial
from receiver.store_pg import PostgresStore, _append_partial

from .pgtest import (  # noqa: F401 - the fixtures
    pg_database_fixture,
    pg_session_database_fixture,
    require_postgres,
)


def test_no_partial_copy_outlives_its_stored_message(pg_database):
    require_postgres()
    dsn = pg_database()
    tokyo = PostgresStore(dsn, create=True)
    device = tokyo.enroll("plant-a", os.urandom(32), test_interval=3600.0, grace=600.0, site=None)
    try:
        # paris: the end of a dropped call saves what it had of message 7 ...
        with psycopg.connect(dsn) as paris:
            with paris.cursor() as cursor:
                _append_partial(cursor, AppendPartial(device.id, 1, 7, 0, b"x" * 100))
                # ... while tokyo, which the device called next, stores the whole of it
                assert tokyo.store_message(device.id, 1, 7, "report", b"x" * 300, {}, None, 1.0)
            paris.commit()
        assert tokyo.has_message(device.id, 1, 7)
        assert tokyo.partials(device.id, 1) == {}, "a stored message offered for resume"
    finally:
        tokyo.close()
