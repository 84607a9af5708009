"""PostgreSQL for the store tests: a database per test session and a fresh schema per
test, dropped afterwards even when the test fails.

The server is `CALLHOME_TEST_PG` (default: root on 127.0.0.1:5432, trust auth, as
`.ci/run` starts it). Without a server the PostgreSQL cases are skipped with a reason
that says so; when `CI` is set in the environment a missing server is a failure, so CI
cannot pass by skipping them.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from receiver.store import SQLiteStore, Store

ADMIN_DSN = os.environ.get("CALLHOME_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")
UNREACHABLE = "PostgreSQL not reachable at {where} ({error})"

_reachable: str | bool | None = None  # None: not tried; True: up; str: why not


def _probe() -> str | bool:
    global _reachable
    if _reachable is None:
        try:
            import psycopg

            psycopg.connect(ADMIN_DSN, connect_timeout=3).close()
            _reachable = True
        except Exception as exc:
            _reachable = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return _reachable


def require_postgres() -> None:
    """Skip (or, under CI, fail) the calling test when PostgreSQL cannot be reached."""
    why = _probe()
    if why is True:
        return
    from receiver.store_pg import redact

    message = UNREACHABLE.format(where=redact(ADMIN_DSN), error=why)
    if os.environ.get("CI"):
        pytest.fail(f"CI is set: {message}: the PostgreSQL store tests must run", pytrace=False)
    pytest.skip(f"PostgreSQL store tests SKIPPED: {message}")


def dsn_for(database: str, schema: str | None = None, password: str | None = None) -> str:
    """A postgresql:// URL for `database` on the test server (`schema` first in its
    search_path), as an operator would write it."""
    url = urllib.parse.urlsplit(ADMIN_DSN)
    netloc = url.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:{urllib.parse.quote(password)}@{host}"
    query = (
        urllib.parse.urlencode(
            {"options": f"-c search_path={schema}"}, quote_via=urllib.parse.quote
        )
        if schema
        else ""
    )
    return urllib.parse.urlunsplit((url.scheme, netloc, f"/{database}", query, ""))


def admin(sql: str, dsn: str = ADMIN_DSN) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(sql.encode())


@pytest.fixture(scope="session", name="pg_session_database")
def pg_session_database_fixture() -> Iterator[str]:
    """One database for the session's PostgreSQL tests, dropped at the end whatever
    happened (CREATE DATABASE costs ~0.1-0.7 s; a schema per test costs ~10 ms)."""
    require_postgres()
    name = f"callhome_test_{uuid.uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(name="pg_database")
def pg_database_fixture(pg_session_database: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty stores' places: each a schema of its own in the session's
    database, named by a DSN whose search_path points at it; dropped after the test."""
    made: list[str] = []

    def make() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin(f"CREATE SCHEMA {schema}", dsn_for(pg_session_database))
        made.append(schema)
        return dsn_for(pg_session_database, schema)

    try:
        yield make
    finally:
        for schema in made:
            admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE", dsn_for(pg_session_database))


class Backend:
    """One store backend under test: opens (or reopens) the same store."""

    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind
        self.location = location

    def open(self, **options: object) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(self.location, **options)  # type: ignore[arg-type]
        from receiver.store_pg import PostgresStore

        return PostgresStore(self.location, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return self.kind


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store test runs on SQLite and on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "centre.db"))
    make = request.getfixturevalue("pg_database")
    return Backend("postgresql", make())
