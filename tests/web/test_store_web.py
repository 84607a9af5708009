"""The console's accounts, sessions and audit log in the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store import AlreadyExists, NotFound, SQLiteStore
from receiver.web.sources import judge


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


device_rows = st.lists(
    st.tuples(
        st.floats(0.0, 1000.0),  # enrolled
        st.one_of(st.none(), st.floats(0.0, 2000.0)),  # last seen
        st.sampled_from([60.0, 100.0, 3600.0]),  # interval
        st.sampled_from([0.0, 30.0]),  # grace
        st.booleans(),  # revoked
    ),
    max_size=12,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=device_rows, now=st.floats(0.0, 12000.0))
def test_the_database_judges_devices_as_judge_does(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[float, float | None, float, float, bool]],
    now: float,
) -> None:
    store = SQLiteStore(tmp_path_factory.mktemp("judge") / "centre.db", create=True)
    try:
        db = store._db
        for number, (enrolled, seen, interval, grace, revoked) in enumerate(rows):
            db.execute(
                "INSERT INTO devices (name, public_key, enrolled_at, revoked_at, test_interval, "
                "grace, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    f"d{number:02d}",
                    number.to_bytes(32, "big"),
                    enrolled,
                    enrolled if revoked else None,
                    interval,
                    grace,
                    seen,
                ),
            )
        states = [judge(device, now) for device in store.devices()]
        counts, troubled = store.console_device_states(now, limit=100)
        expected = {state: 0 for state in counts}
        for state in states:
            expected[state.state] += 1
        assert counts == expected
        assert sorted((name, state) for name, state, _ in troubled) == sorted(
            (s.device, s.state) for s in states if s.state in ("late", "down")
        )
        deadlines = [deadline for _, _, deadline in troubled]
        assert deadlines == sorted(deadlines)  # most overdue first
        listed, total = store.console_devices(now, sort="deadline", limit=100)
        assert total == len(states)
        assert {d.name: verdict for d, verdict, _ in listed} == {s.device: s.state for s in states}
        for state in ("late", "down", "revoked"):
            some, count = store.console_devices(now, state=state, sort="state", limit=100)
            assert count == expected[state] == len(some)
    finally:
        store.close()
