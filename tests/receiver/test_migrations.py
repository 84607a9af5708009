"""Numbered migration steps: a store (and a spool) of every earlier schema version
migrates to the current one, keeps its data, and ends with the schema a new file has."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callhome import exitcodes
from callhome.client import spool as spool_module
from callhome.client.spool import Spool
from receiver import store as store_module
from receiver.cli import main
from receiver.store import CallEnd, SQLiteStore, StoreUnavailable

STORE_STEPS = store_module.MIGRATIONS
SPOOL_STEPS = spool_module.MIGRATIONS


def build(path: Path, steps: tuple[str, ...], version: int) -> None:
    """A file as the callhome of schema `version` left it: its first `version` steps."""
    db = sqlite3.connect(path, isolation_level=None)
    for step in steps[:version]:
        db.executescript(step)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()
    path.chmod(0o600)


def shape(path: Path) -> dict[str, Any]:
    """Tables with their columns (name, type, not null, default, key) and the indexes."""
    db = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        result: dict[str, Any] = {
            table: sorted(tuple(col[1:]) for col in db.execute(f"PRAGMA table_info({table})"))
            for table in tables
        }
        result["indexes"] = sorted(
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        )
        return result
    finally:
        db.close()


def fill_version_1(path: Path) -> None:
    """Rows as schema 1 holds them (only its columns)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT INTO devices (id, name, public_key, enrolled_at, test_interval, grace, site, "
        "last_counter, last_seen) VALUES (1, 'plant-a', ?, 1.0, 86400, 900, 'eu', 7, 5.0)",
        (bytes(32),),
    )
    db.execute(
        "INSERT INTO calls (id, port, caller_id, device_id, started, ended, outcome, rate, "
        "bytes_in, bytes_out, messages) VALUES (1, 'bank0', '555', 1, 2.0, 3.0, 'completed', "
        "9600, 100, 50, 1)"
    )
    db.execute(
        "INSERT INTO messages (device_id, epoch, seq, kind, severity, received_at, call_id, "
        "content) VALUES (1, 9, 1, 'report', 'error', 2.5, 1, x'a0')"
    )
    db.execute(
        "INSERT INTO partial_chunks VALUES (1, 9, 2, 0, x'0102', 2.6)",
    )
    db.close()


@pytest.mark.parametrize("version", range(len(STORE_STEPS)))
def test_a_store_of_every_earlier_version_migrates(tmp_path, version):
    fresh = tmp_path / "fresh.db"
    SQLiteStore(fresh, create=True).close()
    path = tmp_path / "centre.db"
    build(path, STORE_STEPS, version)
    if version >= 1:
        fill_version_1(path)
    with pytest.raises(StoreUnavailable, match=r"run `callhome-receiver migrate`"):
        SQLiteStore(path)  # the bank does not migrate behind the operator's back
    store = SQLiteStore(path, migrate=True)
    try:
        assert store.migrated_from == version
        assert store.version() == len(STORE_STEPS)
        assert shape(path) == shape(fresh)
        if version >= 1:
            (device,) = store.devices()
            assert (device.name, device.last_counter, device.site) == ("plant-a", 7, "eu")
            (call,) = store.calls()
            assert (call.outcome, call.device, call.rate, call.messages) == (
                "completed",
                "plant-a",
                9600,
                1,
            )
            assert [m.content for m in store.messages()] == [b"\xa0"]
            assert store.partials(device.id, 9) == {2: b"\x01\x02"}
            assert device.customer is None  # step 9: nobody's until assigned
            assigned = store.assign("plant-a", {"customer": "acme"})
            assert (assigned.customer, assigned.site) == ("acme", "eu")
        other = store.enroll("plant-b", bytes(range(32)), test_interval=60, grace=0, site=None)
        call_id = store.start_call("bank1", None, 10.0)
        store.finish_call(
            call_id,
            CallEnd(
                ended=11.0,
                outcome="completed",
                device_id=other.id,
                rate=None,
                modulation=None,
                error_correction=None,
                bytes_in=0,
                bytes_out=0,
                messages=0,
                error=None,
            ),
        )
    finally:
        store.close()
    reopened = SQLiteStore(path)  # up to date: opens without migrating
    assert reopened.migrated_from is None
    reopened.close()


@pytest.mark.parametrize("version", range(len(SPOOL_STEPS)))
def test_a_spool_of_every_earlier_version_migrates_on_open(tmp_path, version):
    fresh = tmp_path / "fresh.db"
    Spool(fresh, create=True).close()
    path = tmp_path / "spool.db"
    build(path, SPOOL_STEPS, version)
    spool = Spool(path)  # a client has nobody to run `migrate`: it upgrades on open
    try:
        assert spool.migrated_from == version
        assert shape(path) == shape(fresh)
        assert spool.next_call_counter() == 1
    finally:
        spool.close()


def test_a_failed_step_leaves_the_file_at_the_last_complete_step(tmp_path, monkeypatch):
    path = tmp_path / "centre.db"
    build(path, STORE_STEPS, 0)
    monkeypatch.setattr(SQLiteStore, "migrations", (*STORE_STEPS, "CREATE TABLE broken (;"))
    with pytest.raises(StoreUnavailable):
        SQLiteStore(path, migrate=True)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(STORE_STEPS)
    db.close()


def test_the_migrate_command(tmp_path):
    folder = tmp_path / "centre"
    assert CliRunner().invoke(main, ["init", str(folder)]).exit_code == 0
    config = str(folder / "centre.toml")
    store = folder / "centre.db"
    store.unlink()
    older = len(STORE_STEPS) - 1
    build(store, STORE_STEPS, older)
    refused = CliRunner().invoke(main, ["-c", config, "devices"])
    assert refused.exit_code == exitcodes.STORAGE
    assert "run `callhome-receiver migrate`" in refused.output
    assert refused.output.count("\n") == 1
    done = CliRunner().invoke(main, ["-c", config, "migrate"])
    assert done.exit_code == 0, done.output
    assert f"migrated from schema {older} to {len(STORE_STEPS)}" in done.output
    again = CliRunner().invoke(main, ["-c", config, "migrate"])
    assert again.exit_code == 0 and "up to date" in again.output
    assert CliRunner().invoke(main, ["-c", config, "devices"]).exit_code == 0
