"""Supervision's store methods on both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from receiver.store import IncidentRow, SupervisionBatch, SupervisionUpdate, TimelineRow

from ..pgtest import (  # noqa: F401 - the fixtures
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)

T0 = 1_800_000_000.0


@pytest.fixture
def store(backend, monkeypatch):
    if backend.kind == "postgresql":
        # the console's methods on PostgreSQL are not written yet (main's own gap):
        # let the store be made for what this file tests
        from receiver.store_pg import PostgresStore

        monkeypatch.setattr(PostgresStore, "__abstractmethods__", frozenset())
        # and main's console step 4 does not translate (an expression index needs its
        # own parentheses on PostgreSQL): mended here until main mends it
        from receiver import store_pg
        from receiver.store import MIGRATIONS

        step = store_pg.postgres_step(MIGRATIONS[3])
        bare = "(coalesce(last_seen, enrolled_at) + test_interval + grace,"
        if bare in step:
            mended = step.replace(
                bare, "((coalesce(last_seen, enrolled_at) + test_interval + grace),"
            )
            monkeypatch.setitem(store_pg.PG_OVERRIDES, 4, mended)
    store = backend.open(create=True)
    store.enroll("plant-a", b"a" * 32, test_interval=3600, grace=600, site="lyon")
    store.enroll("plant-b", b"b" * 32, test_interval=60, grace=0, site=None)
    yield store
    store.close()


def incident(incident_id: int, status: str = "open", **fields: object) -> IncidentRow:
    values: dict[str, object] = {
        "id": incident_id,
        "kind": "device_down",
        "severity": "critical",
        "key": f"device_down:plant-{incident_id}",
        "summary": "down",
        "device": "plant-a",
        "status": status,
        "opened_at": T0,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "members": "{}",
        "attributes": json.dumps({"site": "lyon"}),
        "last_notified": T0,
        "pending_since": None,
    }
    values.update(fields)
    return IncidentRow(**values)  # type: ignore[arg-type]


def test_supervision_round_trip(store):
    (a, b) = store.supervision_rows()
    assert (a.device, a.state, a.site, b.test_interval) == ("plant-a", None, "lyon", 60)
    store.save_supervision(
        SupervisionBatch(
            devices=(
                SupervisionUpdate("plant-a", 1, T0, T0, last_port="bank0", last_caller="555"),
            ),
            incidents=(incident(1), incident(2)),
            timeline=(TimelineRow(1, T0, "opened", "down", None, "plant-a"),),
            outbox=("{}", '{"x": 1}'),
            commands=((T0, '{"reload": "incident", "id": 1}'),),
        )
    )
    store.save_supervision(
        SupervisionBatch(
            devices=(SupervisionUpdate("plant-a", 3, T0 + 5, T0, extra='{"skewed": true}'),),
            incidents=(incident(1, "acknowledged", acknowledged_by="alice"),),
            timeline=(TimelineRow(1, T0 + 1, "acknowledged", "on it", "alice", None),),
        )
    )
    (row,) = store.supervision_rows("plant-a")
    assert (row.state, row.since, row.extra) == (3, T0 + 5, '{"skewed": true}')
    assert (row.last_port, row.last_caller) == ("bank0", "555")  # kept when not given
    assert [(r.id, r.status) for r in store.incident_rows()] == [(2, "open"), (1, "acknowledged")]
    assert [r.id for r in store.incident_rows(status=("acknowledged",))] == [1]
    assert store.incident_rows(incident_id=1)[0].acknowledged_by == "alice"
    assert [t.what for t in store.incident_timeline(1)] == ["opened", "acknowledged"]
    assert store.max_incident_id() == 2
    pending = store.supervision_outbox()
    assert [e for _, e in pending] == ["{}", '{"x": 1}']
    store.supervision_outbox_done([pending[0][0]])
    assert [e for _, e in store.supervision_outbox()] == ['{"x": 1}']
    ((command_id, command),) = store.supervision_commands(0)
    assert json.loads(command) == {"reload": "incident", "id": 1}
    assert store.supervision_commands(command_id) == []
