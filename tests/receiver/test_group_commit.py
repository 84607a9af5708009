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


class LoggedStore(GatedStore):
    """A gated store that logs, in order, each read it runs and each batch it begins."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: list[str] = []
        self.entered = threading.Semaphore(0)

    def apply_batch(self, operations):
        self.log.append(f"batch of {len(operations)}")
        self.entered.release()
        return super().apply_batch(operations)

    def device_by_key(self, public_key):
        self.log.append("device_by_key")
        return super().device_by_key(public_key)

    def partials(self, device_id, epoch):
        self.log.append("partials")
        if device_id == 999:
            raise StoreUnavailable("the partial copies cannot be read")
        return super().partials(device_id, epoch)

    def has_message(self, device_id, epoch, seq):
        self.log.append("has_message")
        return super().has_message(device_id, epoch, seq)


async def entered(store: LoggedStore) -> None:
    """Until the store's thread has begun a batch (and is held at its gate)."""
    assert await asyncio.to_thread(store.entered.acquire, True, 10.0)


def logged_store(tmp_path):
    store = LoggedStore(tmp_path / "centre.db", create=True)
    key = os.urandom(32)
    device = store.enroll("plant", key, test_interval=1, grace=1, site=None)
    store.append_partial(device.id, EPOCH, 9, 0, b"half")
    return store, device, key


async def test_reads_ride_the_next_batch_and_are_answered_before_it_commits(tmp_path):
    store, device, key = logged_store(tmp_path)
    async_store = AsyncStore(store, window=0.0)
    try:
        first = asyncio.ensure_future(
            async_store.store_message(device.id, EPOCH, 1, "report", b"x", {}, None, 1.0)
        )
        await entered(store)  # seq 1 is committing, held at the gate
        second = asyncio.ensure_future(
            async_store.store_message(device.id, EPOCH, 2, "report", b"y", {}, None, 1.0)
        )
        reads = asyncio.gather(
            async_store.device_by_key(key),
            async_store.partials(device.id, EPOCH),
            async_store.has_message(device.id, EPOCH, 1),
        )
        store.gate.release()
        await first
        await entered(store)  # the next trip: the reads, then seq 2's batch (held)
        found, partial, has_first = await asyncio.wait_for(reads, 10.0)
        assert not second.done()  # answered while the batch of that trip waits to commit
        assert found == device and partial == {9: b"half"} and has_first is True
        assert store.log == [
            "batch of 1",
            "device_by_key",
            "partials",
            "has_message",
            "batch of 1",
        ]
        store.gate.release()
        assert await second is True
        assert async_store.reads == 3 and async_store.commits == 2
    finally:
        store.gate.release()
        async_store.close()


async def test_a_read_with_nothing_to_commit_takes_a_trip_of_its_own(tmp_path):
    store, device, key = logged_store(tmp_path)
    async_store = AsyncStore(store, window=0.05)
    try:
        assert await asyncio.wait_for(async_store.device_by_key(key), 10.0) == device
        assert store.log == ["device_by_key"]  # no batch, no commit, no wait for company
        assert async_store.commits == 0
    finally:
        async_store.close()


async def test_a_read_that_fails_fails_its_own_caller_only(tmp_path):
    store, device, key = logged_store(tmp_path)
    store.gate.release()
    async_store = AsyncStore(store, window=0.05)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                async_store.device_by_key(key),
                async_store.partials(999, EPOCH),  # raises in the store
                async_store.partials(device.id, EPOCH),
                async_store.store_message(device.id, EPOCH, 1, "report", b"x", {}, None, 1.0),
                return_exceptions=True,
            ),
            10.0,
        )
        assert results[0] == device
        assert isinstance(results[1], StoreUnavailable)
        assert results[2] == {9: b"half"} and results[3] is True
        assert store.log == ["device_by_key", "partials", "partials", "batch of 1"]
        assert async_store.reads == 3 and async_store.commits == 1  # one trip for all
    finally:
        async_store.close()


async def test_reads_still_waiting_are_answered_when_the_store_closes(tmp_path):
    store, device, key = logged_store(tmp_path)
    async_store = AsyncStore(store, window=0.0)
    first = asyncio.ensure_future(
        async_store.store_message(device.id, EPOCH, 1, "report", b"x", {}, None, 1.0)
    )
    await entered(store)
    reads = asyncio.gather(
        async_store.device_by_key(key), async_store.has_message(device.id, EPOCH, 1)
    )
    await asyncio.sleep(0)  # the reads are queued behind the batch that is committing
    store.gate.release()
    async_store.close()  # waits for that batch, then answers what is still queued
    assert await asyncio.wait_for(reads, 10.0) == [device, True]
    assert await asyncio.wait_for(first, 10.0) is True
    assert store.log == ["batch of 1", "device_by_key", "has_message"]
