"""The console's accounts, sessions and audit log in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.store import AlreadyExists, NotFound, SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "centre.db", create=True)


def test_accounts(store: SQLiteStore) -> None:
    store.console_add_account("ada", "h1", "admin", 1.0)
    with pytest.raises(AlreadyExists):
        store.console_add_account("ada", "h2", "viewer", 2.0)
    store.console_set_account("ada", role="operator")
    account = store.console_account("ada")
    assert account is not None and (account.password_hash, account.role) == ("h1", "operator")
    store.console_remove_account("ada")
    assert store.console_accounts() == []
    for change in (
        lambda: store.console_set_account("ada", role="viewer"),
        lambda: store.console_remove_account("ada"),
    ):
        with pytest.raises(NotFound):
            change()


def test_sessions_expire_and_end_with_a_new_password(store: SQLiteStore) -> None:
    store.console_add_account("ada", "h1", "admin", 1.0)
    store.console_start_session("t1", "ada", "c1", 10.0, 100.0)
    session = store.console_session("t1", 50.0)
    assert session is not None and session.csrf == "c1" and session.account.name == "ada"
    assert store.console_session("t1", 100.0) is None  # expired
    assert store.console_session("nope", 50.0) is None
    store.console_set_account("ada", password_hash="h2")
    assert store.console_session("t1", 50.0) is None
    store.console_start_session("t2", "ada", "c2", 10.0, 100.0)
    store.console_end_session("t2")
    assert store.console_session("t2", 50.0) is None
    store.console_start_session("t3", "ada", "c3", 10.0, 100.0)
    store.console_remove_account("ada")
    assert store.console_session("t3", 50.0) is None


def test_the_audit_log_is_newest_first(store: SQLiteStore) -> None:
    store.console_audit("ada", "logged in", None, None, 1.0)
    store.console_audit("ada", "acknowledged", "incident 4", None, 2.0)
    entries = store.console_audit_log()
    assert [(e.action, e.target) for e in entries] == [
        ("acknowledged", "incident 4"),
        ("logged in", None),
    ]
    assert len(store.console_audit_log(limit=1)) == 1


def test_outbox_counts_and_device_by_name(store: SQLiteStore) -> None:
    assert store.console_outbox_counts() == (0, 0)
    assert store.console_device("nope") is None
    store.enroll("a", bytes(32), test_interval=60.0, grace=0.0, site=None)
    device = store.console_device("a")
    assert device is not None and device.name == "a"
