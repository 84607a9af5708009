"""The console's accounts, sessions and audit log in the store, on both backends (SQLite
and PostgreSQL: see tests/receiver/pgtest.py for how PostgreSQL is found or skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store import CONSOLE_SORTS, AlreadyExists, NotFound, OutboxItem, Store
from receiver.web.sources import judge

from ..receiver.pgtest import (  # noqa: F401 - the fixtures
    Backend,
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    store = backend.open(create=True)
    yield store
    store.close()


def raw_execute(backend: Backend, store: Store, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Write rows behind the store's back (states no method makes), on either backend;
    `sql` has `?` placeholders."""
    if backend.kind == "sqlite":
        with store._write() as db:  # type: ignore[attr-defined]
            db.executemany(sql, rows)
        return
    import psycopg

    with psycopg.connect(backend.location) as db, db.cursor() as cursor:
        cursor.executemany(sql.replace("?", "%s"), rows)


def test_accounts(store: Store) -> None:
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


def test_sessions_expire_and_end_with_a_new_password(store: Store) -> None:
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


def test_the_audit_log_is_newest_first(store: Store) -> None:
    store.console_audit("ada", "logged in", None, None, 1.0)
    store.console_audit("ada", "acknowledged", "incident 4", None, 2.0)
    entries = store.console_audit_log()
    assert [(e.action, e.target) for e in entries] == [
        ("acknowledged", "incident 4"),
        ("logged in", None),
    ]
    assert len(store.console_audit_log(limit=1)) == 1


def test_outbox_counts_and_device_by_name(store: Store) -> None:
    assert store.console_outbox_counts() == (0, 0)
    assert store.console_device("nope") is None
    store.enroll("a", bytes(32), test_interval=60.0, grace=0.0, site=None)
    device = store.console_device("a")
    assert device is not None and device.name == "a"


NAMES = ["b", "B", "a", "_z", "Z", "é", "a b", "A1"]
"""Names whose order differs between a byte (SQLite BINARY) and a language collation."""


def test_lists_sort_as_sqlite_sorts_them_on_both_backends(store: Store) -> None:
    for number, name in enumerate(NAMES):
        store.enroll(name, number.to_bytes(32, "big"), test_interval=60.0, grace=0.0, site=name)
        store.console_add_account(name, "h", "viewer", 1.0)
    assert [d.name for d in store.devices()] == sorted(NAMES)
    assert [a.name for a in store.console_accounts()] == sorted(NAMES)
    assert store.console_sites() == sorted(NAMES)
    for sort in ("name", "site", "state"):
        listed, _ = store.console_devices(0.0, sort=sort)
        assert [d.name for d, _, _ in listed] == sorted(NAMES), sort


def test_devices_have_a_customer_the_list_filters_and_sorts_by(store: Store) -> None:
    store.enroll("c", bytes(32), test_interval=60.0, grace=0.0, site="lyon", customer="globex")
    store.enroll("b", bytes(range(32)), test_interval=60.0, grace=0.0, site=None)
    store.enroll("a", bytes([1] * 32), test_interval=60.0, grace=0.0, site=None, customer="acme")
    assert [(d.name, d.customer) for d in store.devices()] == [
        ("a", "acme"),
        ("b", None),
        ("c", "globex"),
    ]
    assigned = store.assign("b", {"customer": "acme"})
    assert (assigned.customer, assigned.site) == ("acme", None)
    assert store.assign("c", {"site": ""}).site is None  # empty clears
    assert store.assign("c", {}).customer == "globex"
    with pytest.raises(NotFound):
        store.assign("nope", {"customer": "acme"})
    with pytest.raises(ValueError, match="not a device attribute"):
        store.assign("a", {"name": "x"})
    assert store.console_customers() == ["acme", "globex"]
    for listing in (store.console_devices, store.console_supervised_devices):
        rows, total = listing(0.0, customer="acme")  # type: ignore[operator]
        assert ([row[0].name for row in rows], total) == (["a", "b"], 2)
        rows, _ = listing(0.0, sort="customer")  # type: ignore[operator]
        assert [row[0].name for row in rows] == ["a", "b", "c"]
        assert rows[0][0].customer == "acme"
    store.assign("a", {"customer": None})
    rows, _ = store.console_devices(0.0, sort="customer")  # no customer: last
    assert [d.name for d, _, _ in rows] == ["b", "c", "a"]
    assert store.supervision_rows("b")[0].customer == "acme"


def test_the_device_list_filters_pages_and_sorts(store: Store) -> None:
    for number in range(7):
        name = f"Plant-{number}"
        store.enroll(
            name,
            bytes(32 - number),
            test_interval=100.0,
            grace=0.0,
            site=None if number % 2 == 0 else "lyon",
        )
        device = store.rekey(name, number.to_bytes(32, "big"), 900.0)  # enrolled at 900
        if number < 5:
            store.advance_counter(device.id, 1, 1000.0 + number * 100)
    store.revoke("Plant-6", 1.0)
    # at 1250: Plant-0..2 are late or down, 3 and 4 ok, 5 never called (down), 6 revoked
    listed, total = store.console_devices(1250.0, sort="deadline")
    assert total == 7
    assert [(d.name, state) for d, state, _ in listed] == [
        ("Plant-5", "down"),
        ("Plant-0", "late"),
        ("Plant-1", "late"),
        ("Plant-2", "ok"),
        ("Plant-3", "ok"),
        ("Plant-4", "ok"),
        ("Plant-6", "revoked"),
    ]
    assert listed[-1][2] is None and listed[0][2] == pytest.approx(listed[0][0].enrolled_at + 100)
    page, total = store.console_devices(1250.0, site="lyon", sort="name", offset=1, limit=2)
    assert ([d.name for d, _, _ in page], total) == (["Plant-3", "Plant-5"], 3)
    found, total = store.console_devices(1250.0, text="PLANT-4")
    assert ([d.name for d, _, _ in found], total) == (["Plant-4"], 1)
    assert store.console_devices(1250.0, offset=50) == ([], 7)  # past the end: still counted
    assert store.console_devices(1250.0, state="never") == ([], 0)
    late, total = store.console_devices(1250.0, state="late", sort="last_call")
    assert ([d.name for d, _, _ in late], total) == (["Plant-1", "Plant-0"], 2)
    for sort in CONSOLE_SORTS:
        assert store.console_devices(1250.0, sort=sort, limit=3)[1] == 7
    counts, troubled = store.console_device_states(1250.0, limit=2)
    assert counts == {"ok": 3, "never": 0, "late": 2, "down": 1, "revoked": 1}
    assert [(name, state) for name, state, _ in troubled] == [
        ("Plant-5", "down"),
        ("Plant-0", "late"),
    ]

    # case is folded for ASCII letters only, as SQLite's lower() does
    store.enroll("ÉCOLE-x", bytes(range(32)), test_interval=100.0, grace=0.0, site=None)
    assert store.console_devices(1250.0, text="ÉcOL")[1] == 1
    assert store.console_devices(1250.0, text="écol")[1] == 0


def test_outbox_counts_pending_and_failed(store: Store) -> None:
    items = [OutboxItem(f"k{n}", f"i{n}", "email", "a@x", "ann", "s", "b", "{}") for n in range(4)]
    store.sun_commit(items, [], [], 10.0)
    sent, failed, retried, _ = store.outbox_due(10.0)
    store.outbox_attempt(sent.id, 11.0, sent=True)
    store.outbox_attempt(failed.id, 11.0, sent=False, error="refused")
    store.outbox_attempt(retried.id, 11.0, sent=False, error="busy", retry_at=20.0)
    assert store.console_outbox_counts() == (2, 1)


def test_audit_ids_grow_and_ties_list_the_latest_first(store: Store) -> None:
    first = store.console_audit("ada", "logged in", None, None, 5.0)
    second = store.console_audit("ada", "logged out", None, "bye", 5.0)
    assert second > first
    assert [(e.id, e.action, e.detail) for e in store.console_audit_log()] == [
        (second, "logged out", "bye"),
        (first, "logged in", None),
    ]


def test_a_session_needs_an_account_and_a_new_one_clears_expired_ones(store: Store) -> None:
    from callhome.database import ConstraintViolation

    with pytest.raises(ConstraintViolation):
        store.console_start_session("t0", "nobody", "c", 1.0, 2.0)
    store.console_add_account("ada", "h", "admin", 1.0)
    store.console_start_session("old", "ada", "c1", 1.0, 5.0)
    store.console_start_session("new", "ada", "c2", 10.0, 50.0)
    assert store.console_session("old", 2.0) is None  # purged, not only expired
    session = store.console_session("new", 20.0)
    assert session is not None
    assert (session.csrf, session.created_at, session.expires_at) == ("c2", 10.0, 50.0)
    assert session.account.created_at == 1.0


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
    store: Store,
    backend: Backend,
    rows: list[tuple[float, float | None, float, float, bool]],
    now: float,
) -> None:
    raw_execute(backend, store, "DELETE FROM devices", [()])
    raw_execute(
        backend,
        store,
        "INSERT INTO devices (name, public_key, enrolled_at, revoked_at, test_interval, "
        "grace, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"d{number:02d}",
                number.to_bytes(32, "big"),
                enrolled,
                enrolled if revoked else None,
                interval,
                grace,
                seen,
            )
            for number, (enrolled, seen, interval, grace, revoked) in enumerate(rows)
        ],
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
