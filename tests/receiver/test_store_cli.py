"""The command line with a PostgreSQL store: `init --store DSN`, `migrate`, the DSN from
the environment, errors as one line with exit code 11 and no password, and `store copy`
from SQLite to PostgreSQL and back with every row accounted for."""

from __future__ import annotations

import os
import sqlite3

import psycopg
import psycopg.conninfo
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from callhome import exitcodes
from receiver import store as store_module
from receiver.cli import main
from receiver.store import CallEnd, OutboxItem, SQLiteStore
from receiver.store_copy import copy_store
from receiver.store_pg import ENV_DSN, PostgresStore, migrate_database, pg_migrations

from .pgtest import (  # noqa: F401 - the fixtures
    pg_database_fixture,
    pg_session_database_fixture,
)

PASSWORD = "s3cret-pw"
KEY = bytes(range(32))


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def with_password(dsn: str) -> str:
    # trust authentication accepts any password: enough to see that it never shows
    user, _, rest = dsn.partition("@")
    return f"{user}:{PASSWORD}@{rest}"


def test_init_with_a_postgresql_store_then_enroll_and_migrate(tmp_path, pg_database):
    dsn = with_password(pg_database())
    folder = tmp_path / "centre"
    done = run("init", str(folder), "--store", dsn)
    assert done.exit_code == 0, done.output
    assert PASSWORD not in done.output and "store: postgresql://" in done.output
    assert not (folder / "centre.db").exists()
    assert "the password is not written in" in done.output
    assert PASSWORD not in (folder / "centre.toml").read_text()
    config = str(folder / "centre.toml")
    assert run("-c", config, "enroll", "plant-a", "--pubkey", _pubkey()).exit_code == 0
    listed = run("-c", config, "devices", "--json")
    assert listed.exit_code == 0 and '"plant-a"' in listed.output
    again = run("-c", config, "migrate")
    assert again.exit_code == 0 and "up to date" in again.output
    assert PASSWORD not in again.output
    # a second init on the same database refuses, and leaves no files behind
    other = tmp_path / "other"
    refused = run("init", str(other), "--store", dsn)
    assert refused.exit_code == exitcodes.USAGE
    assert "already holds a callhome store" in refused.output
    assert not other.exists() or not any(other.iterdir())


def test_migrate_brings_an_older_database_up_to_date(tmp_path, pg_database):
    dsn = pg_database()
    with psycopg.connect(dsn, autocommit=True) as db:
        migrate_database(db, pg_migrations()[:1])
    folder = tmp_path / "centre"
    assert run("init", str(folder)).exit_code == 0
    config = str(folder / "centre.toml")
    env = {ENV_DSN: dsn}  # the environment names the store: it wins over the config
    refused = run("-c", config, "devices", env=env)
    assert refused.exit_code == exitcodes.STORAGE
    assert "run `callhome-receiver migrate`" in refused.output
    assert refused.output.count("\n") == 1
    done = run("-c", config, "migrate", env=env)
    assert done.exit_code == 0, done.output
    assert f"migrated from schema 1 to {len(store_module.MIGRATIONS)}" in done.output
    assert run("-c", config, "devices", env=env).exit_code == 0


def test_an_unreachable_database_is_one_line_exit_11_without_the_password(tmp_path):
    folder = tmp_path / "centre"
    down = f"postgresql://centre:{PASSWORD}@127.0.0.1:1/callhome"
    result = run("init", str(folder), "--store", down)
    assert result.exit_code == exitcodes.STORAGE
    assert result.output == (
        "callhome-receiver: postgresql://centre@127.0.0.1:1/callhome: cannot reach the "
        "database: Connection refused\n"
    ) or result.output.startswith(
        "callhome-receiver: postgresql://centre@127.0.0.1:1/callhome: cannot reach"
    )
    assert PASSWORD not in result.output and result.output.count("\n") == 1
    assert not folder.exists() or not (folder / "centre.key").exists()
    assert run("init", str(folder)).exit_code == 0
    config = str(folder / "centre.toml")
    for command in (["devices"], ["migrate"], ["calls"]):
        failed = run("-c", config, *command, env={ENV_DSN: down})
        assert failed.exit_code == exitcodes.STORAGE, command
        assert PASSWORD not in failed.output and failed.output.count("\n") == 1
    bad = run("-c", config, "devices", env={ENV_DSN: "postgresql://a b"})
    assert bad.exit_code == exitcodes.STORAGE and "bad DSN" in bad.output
    assert run("init", str(tmp_path / "x"), "--store", "centre.db").exit_code == exitcodes.USAGE


def test_a_bad_dsn_in_the_config_names_file_and_key(tmp_path):
    folder = tmp_path / "centre"
    assert run("init", str(folder)).exit_code == 0
    config = folder / "centre.toml"
    text = config.read_text().replace('store = "centre.db"', 'store = "postgresql://a b"')
    config.write_text(text)
    result = run("-c", str(config), "devices")
    assert result.exit_code == exitcodes.USAGE
    assert f"{config}: centre.store: not a usable PostgreSQL DSN" in result.output


def fill(store) -> None:
    """A little of everything, with gaps in the ids (deleted rows) and awkward values."""
    a = store.enroll("plant-a", KEY, test_interval=86400, grace=900, site="eu")
    b = store.enroll("plant-ü", os.urandom(32), test_interval=60.5, grace=0, site=None)
    store.revoke("plant-ü", 5.25)
    store.advance_counter(a.id, 41, 7.0)
    first = store.start_call("bank0", "5550001", 10.0)
    store.start_call("bank1", None, 11.0)
    store.finish_call(
        first,
        CallEnd(12.0, "completed", a.id, 9600, "V32B", "LAPM", 300, 90, 2, None, {"replays": 1}),
    )
    store.store_message(a.id, 7, 1, "report", b"\x00\xff" * 50, {"severity": "error"}, first, 1.5)
    store.store_message(b.id, 8, 2, "line-test", b"", {}, None, 2.5)
    store.append_partial(a.id, 7, 3, 0, b"half")
    store.sun_commit(
        [OutboxItem("k", "i", "email", "a@x", "ann", "s", "b\n", '{"x": 1}')],
        [(1, "p", "{}")],
        [],
        3.0,
        {"cursor": "9"},
    )


def test_copy_from_sqlite_to_postgresql_and_back_keeps_every_row(tmp_path, pg_database):
    source = tmp_path / "centre.db"
    sqlite_store = SQLiteStore(source, create=True)
    fill(sqlite_store)
    sqlite_store.close()
    dsn = with_password(pg_database())
    done = run("store", "copy", str(source), dsn)
    assert done.exit_code == 0, done.output
    assert PASSWORD not in done.output
    lines = {line.split()[0]: line.split()[1:] for line in done.output.splitlines()[2:]}
    assert lines["devices"][0] == "2" and lines["messages"][0] == "2"
    assert lines["sun_outbox"][0] == "1" and lines["partial_chunks"][0] == "1"
    copied = PostgresStore(dsn)
    original = SQLiteStore(source)
    try:
        assert copied.devices() == original.devices()
        assert copied.calls() == original.calls()
        assert copied.messages() == original.messages()
        assert copied.outbox() == original.outbox()
        assert copied.sun_state("cursor") == "9"
        # new rows get new ids after the copied ones
        new = copied.enroll("plant-c", os.urandom(32), test_interval=60, grace=0, site=None)
        assert new.id == max(d.id for d in original.devices()) + 1
        assert copied.start_call("bank0", None, 20.0) == 3
    finally:
        copied.close()
        original.close()
    # into a store that is not empty: refused, nothing written
    again = run("store", "copy", str(source), dsn)
    assert again.exit_code == exitcodes.STORAGE and "not empty" in again.output
    # and back into a new SQLite file: the same sums on both sides
    back = tmp_path / "back.db"
    sums = copy_store(dsn, str(back))
    assert {s.table: s.rows for s, _ in sums}["devices"] == 3
    assert all(mine == theirs for mine, theirs in sums)


def test_a_copy_that_differs_is_an_error(tmp_path, pg_database, monkeypatch):
    source = tmp_path / "centre.db"
    store = SQLiteStore(source, create=True)
    fill(store)
    store.close()
    from receiver import store_copy

    original = store_copy._Postgres.insert

    def lossy(self, table, columns, rows):  # a copy that loses a row of messages
        original(self, table, columns, rows[1:] if table == "messages" else rows)

    monkeypatch.setattr(store_copy._Postgres, "insert", lossy)
    result = run("store", "copy", str(source), pg_database())
    assert result.exit_code == exitcodes.STORAGE
    assert "table messages: the copy differs from its source (1 rows against 2" in result.output


def test_copy_refuses_an_older_source(tmp_path, pg_database):
    source = tmp_path / "centre.db"
    db = sqlite3.connect(source)
    db.executescript(store_module.MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.close()
    source.chmod(0o600)
    result = run("store", "copy", str(source), pg_database())
    assert result.exit_code == exitcodes.STORAGE and "migrate" in result.output


def _pubkey() -> str:
    from callhome.keys import encode_key

    return encode_key(KEY)


@pytest.fixture(autouse=True)
def _no_dsn_from_outside(monkeypatch):
    monkeypatch.delenv(ENV_DSN, raising=False)


def test_the_password_is_taken_out_of_a_dsn_and_nothing_else():
    from receiver.store_pg import without_password

    assert without_password("postgresql://u:p%40ss@h1:5432,h2/db?sslmode=verify-full") == (
        "postgresql://u@h1:5432,h2/db?sslmode=verify-full"
    )
    assert without_password("postgresql://h/db?password=x&application_name=a%20b") == (
        "postgresql://h/db?application_name=a%20b"
    )
    assert without_password("postgresql://u@h/db") == "postgresql://u@h/db"


@settings(max_examples=200, deadline=None)
@given(
    user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    password=st.text(min_size=6, max_size=30).filter(lambda p: "\x00" not in p),
    sslmode=st.sampled_from(["disable", "require", "verify-full"]),
    in_query=st.booleans(),
)
def test_no_form_of_the_password_survives_redaction(user, password, sslmode, in_query):
    from urllib.parse import quote

    from receiver.store_pg import redact, without_password

    secret = quote(password, safe="")
    if in_query:
        dsn = f"postgresql://{user}@db.example:5432/callhome?password={secret}&sslmode={sslmode}"
    else:
        dsn = f"postgresql://{user}:{secret}@db.example:5432/callhome?sslmode={sslmode}"
    rest = dsn.replace(secret, "")
    assume(password not in rest and secret not in rest)
    stripped = without_password(dsn)
    for shown in (redact(dsn), stripped):
        assert password not in shown and secret not in shown
    assert redact(dsn) == f"postgresql://{user}@db.example:5432/callhome"
    original = psycopg.conninfo.conninfo_to_dict(dsn)
    assert original.pop("password") == password
    assert psycopg.conninfo.conninfo_to_dict(stripped) == original


def test_state_files_go_beside_the_store_or_beside_the_config_for_postgresql(tmp_path):
    """A PostgreSQL centre has no store file to sit beside: its `ip-status.json` goes
    beside the config, never into whatever directory the service started in."""
    from receiver.config import parse_centre_config

    here = tmp_path / "etc" / "centre.toml"
    pg = parse_centre_config(
        {"centre": {"key": "k", "store": "postgresql://callhome@127.0.0.1/c"}}, here
    )
    assert pg.state_dir == tmp_path / "etc"
    lite = parse_centre_config(
        {"centre": {"key": "k", "store": str(tmp_path / "var" / "c.db")}}, here
    )
    assert lite.state_dir == tmp_path / "var"
