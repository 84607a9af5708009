"""Group commit (issue 14): writes that arrive together are committed together, and
each caller returns (acknowledges) only once its own write is committed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading

from receiver.store import (
    AppendPartial,
    AsyncStore,
    SQLiteStore,
    StartCall,
    StoreMessage,
    StoreUnavailable,
)

EPOCH = 3


def setup(tmp_path, **kwargs):
    store = SQLiteStore(tmp_path / "centre.db", create=True)
    device = store.enroll("plant", os.urandom(32), test_interval=1, grace=1, site=None)
    return store, device, AsyncStore(store, **kwargs)


def committed(path, seq) -> bool:
    """What another process would see: only committed rows."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT 1 FROM messages WHERE seq = ?", (seq,)).fetchone()
    return row is not None


async def test_writes_that_arrive_together_share_one_commit(tmp_path):
    store, device, async_store = setup(tmp_path, window=0.05)
    try:
        results = await asyncio.gather(
            *(
                async_store.store_message(device.id, EPOCH, seq, "report", b"x", {}, None, 1.0)
                for seq in range(100)
            ),
            async_store.start_call("bank0", None, 1.0),
        )
        assert results[:100] == [True] * 100 and results[100] == 1
        assert async_store.commits == 1 and async_store.operations == 101
        assert len(store.messages(limit=1000)) == 100
    finally:
        async_store.close()


async def test_a_batch_is_bounded_in_size(tmp_path):
    _store, device, async_store = setup(tmp_path, window=0.05, max_batch=10)
    try:
        await asyncio.gather(
            *(
                async_store.store_message(device.id, EPOCH, seq, "report", b"x", {}, None, 1.0)
                for seq in range(35)
            )
        )
        assert async_store.commits == 4 and async_store.operations == 35
    finally:
        async_store.close()


class GatedStore(SQLiteStore):
    """Holds each batch until let go: the test sees who returned before the commit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Semaphore(0)
        self.batches: list[int] = []

    def apply_batch(self, operations):
        self.gate.acquire()
        self.batches.append(len(operations))
        return super().apply_batch(operations)


async def test_each_caller_returns_only_after_its_own_commit(tmp_path):
    path = tmp_path / "centre.db"
    store = GatedStore(path, create=True)
    device = store.enroll("plant", os.urandom(32), test_interval=1, grace=1, site=None)
    async_store = AsyncStore(store, window=0.0)
    seen_committed: dict[int, bool] = {}

    async def send(seq: int) -> None:
        await async_store.store_message(device.id, EPOCH, seq, "report", b"x", {}, None, 1.0)
        seen_committed[seq] = committed(path, seq)  # what the acknowledgement would promise

    try:
        first = asyncio.ensure_future(send(1))
        await asyncio.sleep(0.02)  # 1 is committing (held at the gate)
        later = [asyncio.ensure_future(send(seq)) for seq in (2, 3, 4)]
        await asyncio.sleep(0.02)
        assert not first.done() and not any(task.done() for task in later)
        store.gate.release()  # the first batch: seq 1 only
        await first
        await asyncio.sleep(0.02)
        assert not any(task.done() for task in later)  # theirs is not committed yet
        store.gate.release()
        await asyncio.gather(*later)
        assert store.batches == [1, 3]
        assert seen_committed == {1: True, 2: True, 3: True, 4: True}
    finally:
        store.gate.release()
        async_store.close()


async def test_one_bad_write_does_not_cost_the_others(tmp_path):
    store, device, async_store = setup(tmp_path, window=0.05)
    try:
        results = await asyncio.gather(
            async_store.store_message(device.id, EPOCH, 1, "report", b"x", {}, None, 1.0),
            async_store.store_message(999, EPOCH, 2, "report", b"y", {}, None, 1.0),  # no device
            async_store.store_message(device.id, EPOCH, 3, "report", b"z", {}, None, 1.0),
            return_exceptions=True,
        )
        assert results[0] is True and results[2] is True
        assert isinstance(results[1], Exception)
        assert {m.seq for m in store.messages()} == {1, 3}
    finally:
        async_store.close()


class BrokenDisk(SQLiteStore):
    def apply_batch(self, operations):
        raise StoreUnavailable("the disk is full")


async def test_a_failed_commit_fails_every_write_in_it(tmp_path):
    store = BrokenDisk(tmp_path / "centre.db", create=True)
    async_store = AsyncStore(store, window=0.05)
    try:
        results = await asyncio.gather(
            *(
                async_store.store_message(1, EPOCH, seq, "report", b"x", {}, None, 1.0)
                for seq in range(5)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results)
        assert async_store.commits == 0
    finally:
        async_store.close()


def test_a_batch_in_one_transaction_matches_one_by_one(tmp_path):
    """SQLite's one-transaction batch gives what the default (one commit each) gives."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stores = [SQLiteStore(tmp_path / name / "centre.db", create=True) for name in "ab"]
    try:
        key = os.urandom(32)
        devices = [s.enroll("plant", key, test_interval=1, grace=1, site=None) for s in stores]
        d = devices[0].id
        ops = [
            StartCall("bank0", "555", 1.0),
            AppendPartial(d, EPOCH, 1, 0, b"abc"),
            AppendPartial(d, EPOCH, 1, 3, b"def"),
            AppendPartial(d, EPOCH, 1, 9, b"gap"),  # not contiguous: dropped
            AppendPartial(d, EPOCH, 2, 0, b"xyz"),
            StoreMessage(d, EPOCH, 2, "report", b"xyz!", {}, 1, 2.0),
            StoreMessage(d, EPOCH, 2, "report", b"xyz!", {}, 1, 2.0),  # duplicate
            AppendPartial(d, EPOCH, 2, 3, b"late"),  # of a stored message: dropped
        ]
        fast = stores[0].apply_batch(ops)
        slow = [stores[1]._apply_one(op) for op in ops]
        assert fast == slow == [1, None, None, None, None, True, False, None]
        for store in stores:
            assert store.partials(d, EPOCH) == {1: b"abcdef"}
    finally:
        for store in stores:
            store.close()
