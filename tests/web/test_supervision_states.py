"""The console's device states from supervision's table, in SQL, on both backends
(`Store.console_supervision_states`, `console_supervised_devices`), against what a
device's own page shows (supervision's row, else `judge`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store import (
    CONSOLE_SORTS,
    SUPERVISION_STATE_NAMES,
    Store,
    SupervisionBatch,
    SupervisionUpdate,
)
from receiver.supervision import persist
from receiver.supervision.console import STATE_NAMES
from receiver.supervision.engine import State
from receiver.web.sources import judge

from ..receiver.pgtest import (  # noqa: F401 - the fixtures
    Backend,
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)
from .test_store_web import raw_execute

LATER = 10_000.0
"""Seconds after enrolment: a device never heard from is down by then."""


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    store = backend.open(create=True)
    yield store
    store.close()


def enroll(store: Store, name: str, number: int, site: str | None = None) -> None:
    store.enroll(name, number.to_bytes(32, "big"), test_interval=1000.0, grace=100.0, site=site)


def keep(store: Store, *updates: SupervisionUpdate) -> None:
    store.save_supervision(SupervisionBatch(devices=tuple(updates)))


def expected(store: Store, name: str, now: float) -> str:
    """What a device's own page shows (StoreSupervision.device_states)."""
    device = store.console_device(name)
    assert device is not None
    rows = store.supervision_rows(name)
    if rows and rows[0].state is not None:
        return STATE_NAMES[persist.record_from_row(rows[0]).state]
    return judge(device, now).state


def test_the_store_names_supervisions_states_as_the_console_does() -> None:
    assert {int(s): n for s, n in STATE_NAMES.items() if s is not State.RETIRED} == (
        SUPERVISION_STATE_NAMES
    )


def test_counts_and_the_troubled_come_from_supervision(store: Store) -> None:
    for number, name in enumerate(["up", "late", "down", "test", "new", "back", "quiet", "gone"]):
        enroll(store, name, number, site="lyon" if number % 2 else None)
    now = store.devices()[0].enrolled_at + LATER
    keep(
        store,
        SupervisionUpdate("up", int(State.UP), now - 10, now - 10),
        SupervisionUpdate("late", int(State.LATE), now - 50, now - 1050),
        SupervisionUpdate("down", int(State.DOWN), now - 20, now - 5000),
        SupervisionUpdate("test", int(State.ON_TEST), now - 30, now - 30),
        SupervisionUpdate("new", int(State.NEW), now - 40, now - 40),
        SupervisionUpdate("back", int(State.RESTORED), now - 5, now - 5),
        SupervisionUpdate("gone", int(State.UP), now - 5, now - 5),
    )
    store.revoke("gone", now - 1)
    # "quiet" has no row: judged from its last call (never heard from: down by now)
    counts, troubled = store.console_supervision_states(now)
    assert counts == {
        "ok": 2,
        "late": 1,
        "down": 2,
        "on test": 1,
        "never": 1,
        "revoked": 1,
    }
    # most overdue first: "quiet" was due an interval and a grace after its enrolment,
    # "down" an interval after its last message, "late" since a moment
    assert [(name, state) for name, state, _ in troubled] == [
        ("quiet", "down"),
        ("down", "down"),
        ("late", "late"),
    ]
    assert troubled[1][2] == pytest.approx(now - 5000 + 1000)
    assert [row[0] for row in store.console_supervision_states(now, limit=1)[1]] == ["quiet"]
    # the list's filter is supervision's state too, and agrees with each device's page
    page, total = store.console_supervised_devices(now, state="on test")
    assert total == 1 and page[0][0].name == "test" and page[0][2] is None
    page, total = store.console_supervised_devices(now, sort="state")
    assert total == 8
    for device, state, _deadline, _extra in page:
        assert state == expected(store, device.name, now), device.name
    assert [row[0].name for row in page[:3]] == ["down", "quiet", "late"]
    page, total = store.console_supervised_devices(
        now, site="lyon", text="A", sort="name", limit=1, offset=1
    )
    # lyon: late, test, back, gone; with an "a": late, back
    assert total == 2 and [row[0].name for row in page] == ["late"]


def test_a_device_supervision_has_not_judged_is_judged_from_its_last_call(store: Store) -> None:
    enroll(store, "fresh", 1)
    device = store.console_device("fresh")
    assert device is not None
    at = device.enrolled_at + 10
    counts, troubled = store.console_supervision_states(at)
    assert counts == {"never": 1} and troubled == []
    listed, _ = store.console_supervised_devices(at)
    assert listed[0][1:] == ("never", pytest.approx(device.enrolled_at + 1100), None)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kept=st.lists(st.one_of(st.none(), st.sampled_from(list(State))), min_size=1, max_size=8),
    revoked=st.sets(st.integers(0, 7)),
    at=st.floats(0.0, 20_000.0),
    sort=st.sampled_from(sorted(CONSOLE_SORTS)),
)
def test_every_state_agrees_with_the_device_page(
    store: Store,
    backend: Backend,
    kept: list[State | None],
    revoked: set[int],
    at: float,
    sort: str,
) -> None:
    for table in ("supervision", "devices"):
        raw_execute(backend, store, f"DELETE FROM {table}", [()])
    names = [f"d{i}" for i in range(len(kept))]
    for number, (name, state) in enumerate(zip(names, kept, strict=True)):
        enroll(store, name, number)
        if state is not None:
            keep(store, SupervisionUpdate(name, int(state), 5.0, 7.0 * number))
        if number in revoked:
            store.revoke(name, 3.0)
    now = store.devices()[0].enrolled_at + at
    listed, total = store.console_supervised_devices(now, sort=sort)
    assert total == len(names)
    wanted = {name: expected(store, name, now) for name in names}
    assert {row[0].name: row[1] for row in listed} == wanted
    for state in sorted(set(SUPERVISION_STATE_NAMES.values()) | {"revoked"}):
        # each state's list reads its candidates only (supervised_state_sql): the same
        # devices, in the same order, as the whole list filtered, and counted
        whole = [row[0].name for row in listed if row[1] == state]
        filtered, total = store.console_supervised_devices(now, state=state, sort=sort)
        assert ([row[0].name for row in filtered], total) == (whole, len(whole)), state
        assert all(row[1] == state for row in filtered)
        if whole:  # a page past the first, and one past the end, still counted
            second, total = store.console_supervised_devices(
                now, state=state, sort=sort, offset=1, limit=1
            )
            assert ([row[0].name for row in second], total) == (whole[1:2], len(whole))
            assert store.console_supervised_devices(now, state=state, offset=50) == (
                [],
                len(whole),
            )
    counts, troubled = store.console_supervision_states(now)
    tally: dict[str, int] = {}
    for state in wanted.values():
        tally[state] = tally.get(state, 0) + 1
    assert counts == tally
    assert sorted(name for name, _, _ in troubled) == sorted(
        name for name, state in wanted.items() if state in ("late", "down")
    )


def test_the_list_filters_by_path(store: Store) -> None:
    for number, name in enumerate(["both", "modem", "ip-gone", "quiet"]):
        enroll(store, name, number)
    now = store.devices()[0].enrolled_at + 10
    both = '{"paths": {"ip": 5.0, "modem": 6.0}}'
    gone = '{"failed_paths": ["ip"], "paths": {"ip": 1.0, "modem_2": 2.0}, "skewed": true}'
    keep(
        store,
        SupervisionUpdate("both", int(State.UP), 1.0, 6.0, extra=both),
        SupervisionUpdate("modem", int(State.UP), 1.0, 6.0, extra='{"paths": {"modem": 6.0}}'),
        SupervisionUpdate("ip-gone", int(State.UP), 1.0, 2.0, extra=gone),
    )

    def names(path: str) -> list[str]:
        rows, total = store.console_supervised_devices(now, path=path)
        assert total == len(rows)
        return [row[0].name for row in rows]

    assert names("ip") == ["both", "ip-gone"]
    assert names("modem") == ["both", "modem"]
    assert names("failed") == ["ip-gone"]
    assert names("sat") == []
    rows, _ = store.console_supervised_devices(now, text="gone")
    assert rows[0][3] == gone
    with pytest.raises(ValueError):
        store.console_supervised_devices(now, path="%")
