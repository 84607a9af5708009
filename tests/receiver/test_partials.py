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
from receiver.bank import Bank, CallState
from receiver.store import AsyncStore, SQLiteStore

EPOCH = 5


def partial_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM partial_chunks").fetchone()[0])


def long_report() -> bytes:
    # incompressible, so the body is well over the digest threshold (a resumable message)
    return encode_message(Kind.REPORT, {"component": "disk", "data": os.urandom(3000)}, None)


async def _call_with(bank: Bank, centre_key: bytes, device_key: bytes, message: bytes) -> list:
    """One call carrying `message` as seq 1; returns the bank's events, in order."""
    worker = bank.workers[0]
    client = ClientSession(
        static_private=device_key, server_public=public_of(centre_key), call_counter=9, epoch=EPOCH
    )
    client.queue(1, message)
    client.finish()
    client.start(0.0)
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = CallState(worker.name, None)
    seen: list[object] = []
    now = 0.1
    for _ in range(200):
        data = client.data_to_send()
        if data:
            for event in server.receive_data(data, now):
                seen.append(event)
                await worker._event(server, event, state)
        answer = server.data_to_send()
        if answer:
            client.receive_data(answer, now)
        if not data and not answer:
            break
        now += 0.05
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
