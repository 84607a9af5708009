"""Partial copies of long messages never outlive the message (issue 14, defect 4).

A resent long message that the store already holds is answered DUPLICATE from its
head; the chunks that came in the same batch of events used to be appended anyway, and
nothing ever deleted them."""

from __future__ import annotations

import os
import sqlite3

from callhome.keys import public_of, write_private_key
from callhome.wire.messages import Kind, encode_message
from callhome.wire.session import (
    ClientSession,
    MessagePartReceived,
    MessageStarted,
    ServerSession,
)
from receiver.bank import PARTIAL_COMMIT_BYTES, Bank, CallState
from receiver.store import AsyncStore, SQLiteStore

EPOCH = 5


def partial_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM partial_chunks").fetchone()[0])


def long_report() -> bytes:
    # incompressible, so the body is well over the digest threshold (a resumable message)
    return encode_message(Kind.REPORT, {"component": "disk", "data": os.urandom(3000)}, None)


async def _call_with(
    bank: Bank,
    centre_key: bytes,
    device_key: bytes,
    message: bytes,
    cut_after: int | None = None,
    state: CallState | None = None,
) -> list:
    """One call carrying `message` as seq 1; returns the bank's events, in order.
    `cut_after`: the line drops after that many bytes from the device."""
    worker = bank.workers[0]
    client = ClientSession(
        static_private=device_key, server_public=public_of(centre_key), call_counter=9, epoch=EPOCH
    )
    client.queue(1, message)
    client.finish()
    client.start(0.0)
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = state or CallState(worker.name, None)
    seen: list[object] = []
    now = 0.1
    sent = 0
    for _ in range(2000):
        data = client.data_to_send()
        if cut_after is not None:
            data = data[: max(0, cut_after - sent)]
        sent += len(data)
        events = server.receive_data(data, now) if data else []
        answer = server.data_to_send()
        if answer:
            client.receive_data(answer, now)
        if not data and not answer:
            if cut_after is not None and sent >= cut_after:
                break  # the line is down
            deadlines = [d for d in (client.next_deadline(), server.next_deadline()) if d]
            if not deadlines:
                break
            now = max(now, min(deadlines))
            client.handle_timer(now)
            events += server.handle_timer(now)
        for event in events:
            seen.append(event)
            await worker._event(server, event, state)
        now += 0.01
    return seen


async def test_a_duplicate_long_message_leaves_no_partial_copy(tmp_path):
    path = tmp_path / "centre.db"
    store = SQLiteStore(path, create=True)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    device = store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    message = long_report()
    assert store.store_message(device.id, EPOCH, 1, "report", b"held", {}, None, 1.0)
    bank = Bank(["unused"], AsyncStore(store), centre_key)
    try:
        seen = await _call_with(bank, centre_key, device_key, message)
        # the defect needs the head and a chunk in one batch: make sure the test has it
        started = next(i for i, e in enumerate(seen) if isinstance(e, MessageStarted))
        assert isinstance(seen[started + 1], MessagePartReceived)
        assert partial_rows(path) == 0
        assert store.partials(device.id, EPOCH) == {}
    finally:
        store.close()


def test_the_store_keeps_no_chunk_of_a_stored_message(tmp_path):
    """Another call of the same device may store the message between our head and our
    chunk: the store itself refuses the chunk."""
    path = tmp_path / "centre.db"
    store = SQLiteStore(path, create=True)
    try:
        device = store.enroll("plant", os.urandom(32), test_interval=1, grace=1, site=None)
        store.append_partial(device.id, EPOCH, 1, 0, b"abc")
        assert store.store_message(device.id, EPOCH, 1, "report", b"abcdef", {}, None, 1.0)
        assert partial_rows(path) == 0  # deleted in the transaction that stored it
        store.append_partial(device.id, EPOCH, 1, 0, b"abc")
        store.append_partial(device.id, EPOCH, 1, 3, b"def")
        assert partial_rows(path) == 0
        store.append_partial(device.id, EPOCH, 2, 0, b"abc")  # another message: kept
        assert store.partials(device.id, EPOCH) == {2: b"abc"}
    finally:
        store.close()


async def test_chunks_are_saved_in_large_pieces_and_all_of_them_when_the_call_drops(tmp_path):
    path = tmp_path / "centre.db"
    store = SQLiteStore(path, create=True)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    device = store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    message = encode_message(Kind.REPORT, {"data": os.urandom(40_000)}, None)
    saved: list[int] = []

    class Counting(AsyncStore):
        async def append_partial(self, device_id, epoch, seq, offset, data):
            saved.append(len(data))
            await super().append_partial(device_id, epoch, seq, offset, data)

    bank = Bank(["unused"], Counting(store), centre_key)
    state = CallState("bank0", None)
    try:
        seen = await _call_with(bank, centre_key, device_key, message, 30_000, state)
        received = sum(len(e.data) for e in seen if isinstance(e, MessagePartReceived))
        assert received > 3 * PARTIAL_COMMIT_BYTES
        assert all(size >= PARTIAL_COMMIT_BYTES for size in saved)  # not one per frame
        await bank.workers[0]._save_all_parts(state)  # the end of the call
        assert sum(saved) == received
        assert store.partials(device.id, EPOCH)[1] == message_body_prefix(seen)
    finally:
        store.close()


def message_body_prefix(seen) -> bytes:
    return b"".join(e.data for e in seen if isinstance(e, MessagePartReceived))


class _CountingStore(AsyncStore):
    has_message_calls = 0

    async def has_message(self, device_id: int, epoch: int, seq: int) -> bool:
        self.has_message_calls += 1
        return await super().has_message(device_id, epoch, seq)


async def test_a_duplicate_that_came_whole_is_found_by_storing_it_not_by_an_early_read(tmp_path):
    """A short message (one frame) comes with its head: the early duplicate check would
    save nothing, so it is skipped (a store read less per call), and storing it finds
    the duplicate; a long one is still checked at its head (the test above)."""
    path = tmp_path / "centre.db"
    store = SQLiteStore(path, create=True)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    device = store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    short = encode_message(Kind.LINE_TEST, {"time": 1_700_000_000}, None)
    long = long_report()
    assert store.store_message(device.id, EPOCH, 1, "line-test", b"held", {}, None, 1.0)
    counting = _CountingStore(store)
    bank = Bank(["unused"], counting, centre_key)
    try:
        state = CallState(bank.workers[0].name, None)
        seen = await _call_with(bank, centre_key, device_key, short, state=state)
        started = next(e for e in seen if isinstance(e, MessageStarted))
        assert started.whole
        assert counting.has_message_calls == 0
        assert 1 in state.settled  # answered, as a duplicate: the store holds one
        assert [m.content for m in store.messages(device="plant")] == [b"held"]

        other_key = write_private_key(tmp_path / "other.key")
        other = store.enroll("other", public_of(other_key), test_interval=60, grace=60, site=None)
        assert store.store_message(other.id, EPOCH, 1, "report", b"held", {}, None, 1.0)
        seen = await _call_with(bank, centre_key, other_key, long)
        started = next(e for e in seen if isinstance(e, MessageStarted))
        assert not started.whole
        assert counting.has_message_calls == 1
    finally:
        store.close()
