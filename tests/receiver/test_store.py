"""The centre's store: what it promises the bank, across restarts, on both backends
(SQLite and PostgreSQL: see pgtest.py for how PostgreSQL is found, skipped or failed)."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.store import (
    AdvanceCounter,
    AlreadyExists,
    AppendPartial,
    AsyncStore,
    CallEnd,
    FinishCall,
    NotFound,
    OutboxItem,
    SQLiteStore,
    StartCall,
    StoreMessage,
    StoreUnavailable,
)

from .pgtest import (  # noqa: F401 - the fixtures
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)

KEY_A, KEY_B = os.urandom(32), os.urandom(32)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "centre.db"


@pytest.fixture
def store(backend):
    store = backend.open(create=True)
    yield store
    store.close()


def enroll(store, name="plant-a", key=KEY_A):
    return store.enroll(name, key, test_interval=86400, grace=900, site="eu")


def test_enrolment_names_and_keys_are_unique(store):
    device = enroll(store)
    assert (device.name, device.site, device.last_counter) == ("plant-a", "eu", -1)
    with pytest.raises(AlreadyExists, match="plant-a"):
        enroll(store, key=KEY_B)
    with pytest.raises(AlreadyExists, match="public key"):
        enroll(store, name="plant-b")
    assert store.device_by_key(KEY_A) == device
    assert store.device_by_key(KEY_B) is None


def test_revocation(store):
    enroll(store)
    with pytest.raises(NotFound):
        store.revoke("nobody", 1.0)
    assert store.revoke("plant-a", 5.0).revoked_at == 5.0
    with pytest.raises(AlreadyExists, match="already revoked"):
        store.revoke("plant-a", 6.0)
    assert store.device_by_key(KEY_A).revoked


def test_call_counters_only_go_up_and_survive_a_restart(store, backend):
    device = enroll(store)
    assert store.advance_counter(device.id, 1, 10.0)
    assert store.advance_counter(device.id, 5, 11.0)
    assert not store.advance_counter(device.id, 5, 12.0)  # a replay of the same call
    assert not store.advance_counter(device.id, 3, 13.0)
    store.close()
    reopened = backend.open()
    try:
        assert not reopened.advance_counter(device.id, 5, 14.0)
        assert reopened.device_by_key(KEY_A).last_counter == 5
        assert reopened.device_by_key(KEY_A).last_seen == 11.0
    finally:
        reopened.close()


def test_a_message_is_stored_once_across_restarts(store, backend):
    device = enroll(store)
    summary = {"severity": "error", "component": "fan", "state": "failed"}
    assert store.store_message(device.id, 7, 1, "report", b"x", summary, None, 1.0)
    assert not store.store_message(device.id, 7, 1, "report", b"y", summary, None, 2.0)
    assert store.store_message(device.id, 8, 1, "report", b"z", summary, None, 3.0)  # new epoch
    store.close()
    reopened = backend.open()
    try:
        assert reopened.has_message(device.id, 7, 1)
        assert not reopened.store_message(device.id, 7, 1, "report", b"w", summary, None, 4.0)
        assert [m.content for m in reopened.messages()] == [b"z", b"x"]
    finally:
        reopened.close()


def test_calls_and_their_messages_carry_the_path_they_came_by(store):
    device = enroll(store)
    by_modem = store.start_call("bank0", "5551234", 1.0)
    by_ip = store.start_call("listener", "192.0.2.7:40000", 2.0, path="ip")
    for call_id, seq in ((by_modem, 1), (by_ip, 2)):
        store.store_message(device.id, 1, seq, "report", b"x", {}, call_id, 2.5 + seq)
        store.finish_call(
            call_id, CallEnd(5.0, "completed", device.id, None, None, None, 1, 1, 1, None)
        )
    store.store_message(device.id, 1, 3, "report", b"y", {}, None, 9.0)  # no call recorded
    assert [(c.id, c.path) for c in store.calls()] == [(by_ip, "ip"), (by_modem, "modem")]
    assert [(m.seq, m.path) for m in store.messages()] == [(3, None), (2, "ip"), (1, "modem")]


def test_storing_a_message_drops_its_partial_copy(store):
    device = enroll(store)
    store.append_partial(device.id, 7, 1, 0, b"abc")
    assert store.partials(device.id, 7) == {1: b"abc"}
    store.store_message(device.id, 7, 1, "report", b"abcdef", {}, None, 1.0)
    assert store.partials(device.id, 7) == {}
    # a chunk of it arriving late (another call of the device) is not kept either
    store.append_partial(device.id, 7, 1, 0, b"abc")
    assert store.partials(device.id, 7) == {}


@settings(
    max_examples=60,
    deadline=None,
    # one store for every example (a database per example would be slow): each example
    # works on a device of its own
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    message=st.binary(min_size=1, max_size=300),
    cuts=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 80)), max_size=25),
)
def test_a_partial_copy_is_always_a_prefix_of_the_message(store, message, cuts):
    """Chunks arrive in any order, repeated or overlapping (resends, resumed calls);
    what the store holds is always the longest prefix it was given, never a gap."""
    device = enroll(store, f"plant-{os.urandom(6).hex()}", os.urandom(32))
    held = 0
    for offset, size in cuts:
        offset = min(offset, len(message) - 1)
        chunk = message[offset : offset + size]
        if offset == 0:
            held = 0  # a message sent again from its start replaces the old copy
        store.append_partial(device.id, 1, 1, offset, chunk)
        if offset == held:
            held += len(chunk)
        assert store.partials(device.id, 1).get(1, b"") == message[:held]


def test_filters(store):
    a = enroll(store)
    b = enroll(store, "plant-b", KEY_B)
    for when, device, severity, kind in [
        (10.0, a, "info", "report"),
        (20.0, a, "critical", "report"),
        (30.0, b, "warning", "report"),
        (40.0, b, None, "line-test"),
    ]:
        store.store_message(device.id, 1, int(when), kind, b"", {"severity": severity}, None, when)

    def names(**filters):
        return [(m.device, m.received_at) for m in store.messages(**filters)]

    assert names() == [("plant-b", 40.0), ("plant-b", 30.0), ("plant-a", 20.0), ("plant-a", 10.0)]
    assert names(device="plant-a") == [("plant-a", 20.0), ("plant-a", 10.0)]
    assert names(since=20.0, until=40.0) == [("plant-b", 30.0), ("plant-a", 20.0)]
    assert names(severity=["warning", "error", "critical"]) == [
        ("plant-b", 30.0),
        ("plant-a", 20.0),
    ]
    assert names(kind="line-test") == [("plant-b", 40.0)]
    assert names(limit=1) == [("plant-b", 40.0)]
    first = store.start_call("bank0", "5550001", 100.0)
    store.start_call("bank1", None, 200.0)
    store.finish_call(
        first,
        CallEnd(
            ended=110.0,
            outcome="completed",
            device_id=a.id,
            rate=9600,
            modulation="V32B",
            error_correction="LAPM",
            bytes_in=300,
            bytes_out=90,
            messages=1,
            error=None,
        ),
    )
    calls = store.calls()
    assert [(c.port, c.outcome, c.device) for c in calls] == [
        ("bank1", "in progress", None),
        ("bank0", "completed", "plant-a"),
    ]
    assert [c.port for c in store.calls(device="plant-a")] == ["bank0"]


def test_unusable_files_give_a_sentence_not_a_traceback(tmp_path):
    with pytest.raises(StoreUnavailable, match="the store does not exist"):
        SQLiteStore(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    junk.chmod(0o600)
    with pytest.raises(StoreUnavailable, match="damaged or not a callhome file"):
        SQLiteStore(junk)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    newer.chmod(0o600)
    with pytest.raises(StoreUnavailable, match="newer callhome"):
        SQLiteStore(newer)


def test_rekey_restarts_the_counter_lifts_a_revocation_and_keeps_history(store):
    device = enroll(store)
    store.advance_counter(device.id, 40, 1.0)
    store.store_message(device.id, 7, 1, "report", b"x", {}, None, 1.0)
    store.revoke("plant-a", 2.0)
    enroll(store, "plant-b", KEY_B)
    with pytest.raises(AlreadyExists):
        store.rekey("plant-a", KEY_B, 3.0)
    with pytest.raises(NotFound):
        store.rekey("nobody", os.urandom(32), 3.0)
    new_key = os.urandom(32)
    rekeyed = store.rekey("plant-a", new_key, 3.0)
    assert (rekeyed.id, rekeyed.revoked, rekeyed.last_counter) == (device.id, False, -1)
    assert store.device_by_key(KEY_A) is None
    assert store.advance_counter(device.id, 1, 4.0)
    assert [m.device for m in store.messages()] == ["plant-a"]


def test_calls_left_open_are_closed_as_interrupted(store):
    device = enroll(store)
    finished = store.start_call("bank0", None, 10.0)
    store.finish_call(
        finished,
        CallEnd(
            ended=12.0,
            outcome="completed",
            device_id=device.id,
            rate=None,
            modulation=None,
            error_correction=None,
            bytes_in=0,
            bytes_out=0,
            messages=0,
            error=None,
        ),
    )
    store.start_call("bank0", "5550001", 20.0)
    store.start_call("bank1", None, 30.0)
    assert store.close_open_calls(40.0) == 2
    assert store.close_open_calls(41.0) == 0
    calls = {c.started: c for c in store.calls()}
    assert calls[10.0].outcome == "completed" and calls[10.0].ended == 12.0
    for started in (20.0, 30.0):
        assert (calls[started].outcome, calls[started].ended) == ("interrupted", 40.0)
        assert calls[started].error == "the receiver stopped before the call ended"


def test_the_async_store_has_the_stores_signatures_and_runs_off_the_loop(backend):
    import asyncio
    import inspect
    import threading

    from receiver.store import AsyncStore, Store

    facade = [name for name, _ in inspect.getmembers(AsyncStore, inspect.iscoroutinefunction)]
    assert "run" not in facade and len(facade) >= 9
    for name in facade:
        if name.startswith("_"):
            continue
        mine = inspect.signature(getattr(AsyncStore, name))
        theirs = inspect.signature(getattr(Store, name))
        assert mine.parameters == theirs.parameters, name
        assert mine.return_annotation == theirs.return_annotation, name

    async def scenario():
        async_store = AsyncStore(backend.open(create=True))
        seen = []
        original = async_store.store.device_by_key
        async_store.store.device_by_key = lambda key: (
            seen.append(threading.current_thread()) or (original(key))
        )
        try:
            assert await async_store.device_by_key(KEY_A) is None
            call_id = await async_store.start_call("bank0", None, 1.0)
            assert await async_store.close_open_calls(2.0) == 1 and call_id == 1
        finally:
            async_store.close()
        assert seen and seen[0] is not threading.main_thread()

    asyncio.run(scenario())


def test_a_call_records_the_protocols_security_counters(store):
    call_id = store.start_call("bank0", None, 1.0)
    store.finish_call(
        call_id,
        CallEnd(
            ended=2.0,
            outcome="completed",
            device_id=None,
            rate=None,
            modulation=None,
            error_correction=None,
            bytes_in=0,
            bytes_out=0,
            messages=0,
            error=None,
            security={
                "auth_failures": 1,
                "replays": 2,
                "crc_failures": 3,
                "malformed": 4,
                "oversize": 5,
                "frames": 99,
            },  # a counter the store does not know: ignored
        ),
    )
    (call,) = store.calls()
    assert call.security == {
        "auth_failures": 1,
        "replays": 2,
        "crc_failures": 3,
        "malformed": 4,
        "oversize": 5,
    }
    other = store.start_call("bank0", None, 3.0)
    assert store.calls()[0].id == other and set(store.calls()[0].security.values()) == {0}


def item(key: str) -> OutboxItem:
    return OutboxItem(key, f"idem-{key}", "email", "a@example.com", "ann", "subj", "body", "{}")


def test_the_outbox_and_escalations_of_follow_the_sun(store):
    assert store.sun_commit([item("k1"), item("k2")], [(1, "p", "s1")], [], 10.0, {"x": "1"}) == 2
    # the same outbox key again is left as it was; an escalation state is replaced
    assert store.sun_commit([item("k1")], [(1, "p", "s2"), (2, "p", "t")], [], 11.0) == 0
    assert store.sun_escalations() == [(1, "p", "s2"), (2, "p", "t")]
    store.sun_commit([], [], [(1, "p")], 12.0, {"x": "2"})
    assert store.sun_escalations() == [(2, "p", "t")]
    assert (store.sun_state("x"), store.sun_state("missing")) == ("2", None)
    due = store.outbox_due(10.0)
    assert [(r.item.outbox_key, r.attempts, r.next_attempt) for r in due] == [
        ("k1", 0, 10.0),
        ("k2", 0, 10.0),
    ]
    assert due[0].item == item("k1") and due[0].created_at == 10.0
    first, second = due
    store.outbox_attempt(first.id, 20.0, sent=True)
    store.outbox_attempt(second.id, 20.0, sent=False, error="refused", retry_at=30.0)
    assert store.outbox_due(29.0) == []
    (retry,) = store.outbox_due(30.0, limit=5)
    assert (retry.attempts, retry.last_error) == (1, "refused")
    store.outbox_attempt(second.id, 31.0, sent=False, error="gone")
    assert store.outbox(pending=True) == []
    rows = {r.item.outbox_key: r for r in store.outbox()}
    assert (rows["k1"].sent_at, rows["k1"].last_error, rows["k1"].attempts) == (20.0, None, 1)
    assert (rows["k2"].failed_at, rows["k2"].last_error, rows["k2"].attempts) == (31.0, "gone", 2)
    assert [r.item.outbox_key for r in store.outbox(limit=1)] == ["k2"]


def test_a_batch_in_one_transaction_matches_one_by_one_on_both_backends(store):
    d = enroll(store).id
    ops = [
        StartCall("bank0", "555", 1.0),
        AppendPartial(d, 3, 1, 0, b"abc"),
        AppendPartial(d, 3, 1, 3, b"def"),
        AppendPartial(d, 3, 1, 9, b"gap"),  # not contiguous: dropped
        AppendPartial(d, 3, 2, 0, b"xyz"),
        StoreMessage(d, 3, 2, "report", b"xyz!", {}, 1, 2.0),
        StoreMessage(d, 3, 2, "report", b"xyz!", {}, 1, 2.0),  # duplicate
        AppendPartial(d, 3, 2, 3, b"late"),  # of a stored message: dropped
    ]
    assert store.apply_batch(ops) == [1, None, None, None, None, True, False, None]
    assert store.partials(d, 3) == {1: b"abcdef"}
    # one write that breaks a constraint costs only itself (PostgreSQL aborts the whole
    # transaction: the batch is then applied one by one)
    results = store.apply_batch(
        [
            StoreMessage(d, 3, 3, "report", b"a", {}, None, 3.0),
            StoreMessage(999, 3, 4, "report", b"b", {}, None, 3.0),  # no such device
            StartCall("bank1", None, 4.0, "ip"),
        ]
    )
    assert results[0] is True and isinstance(results[1], Exception)
    # (PostgreSQL may have drawn an id for the call in the failed try: ids have gaps)
    assert [(c.id, c.path) for c in store.calls()] == [(results[2], "ip"), (1, "modem")]
    assert {m.seq for m in store.messages()} == {2, 3}


def test_writes_of_one_row_in_one_batch_see_each_other_on_both_backends(store):
    """What one by one gives, a batch gives, when its writes touch the same rows: a call
    started and named by a message, then ended, in one batch; a device's counter
    advanced by two calls; a message sent twice; a chunk of a message stored with it."""
    d = enroll(store).id
    e = enroll(store, "plant-b", KEY_B).id
    end = CallEnd(5.0, "completed", d, 33600, "V.34", None, 10, 20, 1, None, {"replays": 1})
    ops = [
        StartCall("bank0", "555", 1.0),
        StartCall("bank1", None, 1.5, "ip"),
        StoreMessage(d, 1, 1, "report", b"first", {"severity": "info"}, 1, 2.0),
        StoreMessage(d, 1, 1, "report", b"again", {}, 2, 2.1),  # the same message
        AdvanceCounter(d, 5, 2.0),
        AdvanceCounter(d, 3, 2.2),  # below 5: refused
        AdvanceCounter(d, 7, 2.3),
        AdvanceCounter(d, 7, 2.4),  # a replay of 7
        AdvanceCounter(e, 1, 2.5),
        AppendPartial(d, 1, 2, 0, b"ab"),
        StoreMessage(d, 1, 2, "report", b"abcd", {}, 2, 3.0),  # drops the chunk before
        AppendPartial(d, 1, 2, 2, b"cd"),  # of a stored message: dropped
        AppendPartial(d, 1, 3, 0, b"xy"),
        AppendPartial(d, 1, 3, 2, b"z"),  # continues the chunk before it
        FinishCall(1, CallEnd(4.0, "failed", None, None, None, None, 0, 0, 0, "first end")),
        FinishCall(1, end),  # the last end of a call is the one kept
    ]
    assert store.apply_batch(ops) == [
        *(1, 2, True, False),
        *(True, False, True, False, True),
        *(None, True, None, None, None),
        *(None, None),
    ]
    calls = {c.id: c for c in store.calls()}
    assert (calls[1].port, calls[1].caller_id, calls[1].outcome) == ("bank0", "555", "completed")
    assert (calls[1].device, calls[1].rate, calls[1].replays, calls[1].error) == (
        "plant-a",
        33600,
        1,
        None,
    )
    assert (calls[2].port, calls[2].path, calls[2].outcome) == ("bank1", "ip", "in progress")
    messages = {m.seq: m for m in store.messages()}
    assert (messages[1].content, messages[1].call_id, messages[1].severity) == (
        b"first",
        1,
        "info",
    )
    assert messages[2].content == b"abcd" and messages[2].path == "ip"
    assert store.partials(d, 1) == {3: b"xyz"}
    devices = {device.id: device for device in store.devices()}
    assert (devices[d].last_counter, devices[d].last_seen) == (7, 2.3)
    assert (devices[e].last_counter, devices[e].last_seen) == (1, 2.5)


async def test_group_commit_on_both_backends(store):
    d = enroll(store).id
    async_store = AsyncStore(store, window=0.05)
    try:
        results = await asyncio.gather(
            *(
                async_store.store_message(d, 3, seq, "report", b"x", {}, None, 1.0)
                for seq in range(50)
            ),
            async_store.start_call("bank0", None, 1.0),
        )
        assert results == [True] * 50 + [1]
        assert async_store.commits == 1 and async_store.operations == 51
    finally:
        async_store._executor.shutdown(wait=True)
    assert len(store.messages(limit=100)) == 50
