"""The client's spool: durable, numbers never reused, counters never going back."""

from __future__ import annotations

import sqlite3

import pytest

from callhome.client.spool import Spool, SpoolError
from callhome.wire.messages import Kind


def test_message_numbers_are_never_reused(tmp_path):
    spool = Spool(tmp_path / "spool.db", create=True)
    first = spool.enqueue(Kind.LINE_TEST, {"t": 1})
    spool.acknowledged(first)
    assert spool.queued() == []
    second = spool.enqueue(Kind.REPORT, {"t": 2})
    assert second > first  # a reused number would look like a copy of the first
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert reopened.enqueue(Kind.REPORT, {"t": 3}) > second


def test_counter_and_epoch_survive_reopening(tmp_path):
    spool = Spool(tmp_path / "spool.db", create=True)
    epoch = spool.epoch
    assert [spool.next_call_counter() for _ in range(3)] == [1, 2, 3]
    spool.close()
    again = Spool(tmp_path / "spool.db")
    assert again.epoch == epoch and again.next_call_counter() == 4


def test_rejected_messages_stay_visible(tmp_path):
    spool = Spool(tmp_path / "spool.db", create=True)
    seq = spool.enqueue(Kind.REPORT, {"x": 1})
    spool.rejected(seq, "too_large")
    assert spool.queued() == []
    (kept,) = spool.queued(include_rejected=True)
    assert kept.status == "rejected" and kept.detail == "too_large"


def test_a_spool_made_by_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "spool.db"
    Spool(path, create=True).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(SpoolError, match="newer callhome"):
        Spool(path)
    with pytest.raises(SpoolError, match=r"does not exist .*callhome init"):
        Spool(tmp_path / "other.db")
