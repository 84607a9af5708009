"""One leader per store on either backend: a second receiver does not get the lease
while the first holds it, and gets it once the first has died (SIGKILL)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from receiver.leases import lease_for

from .pgtest import (  # noqa: F401 - the fixtures
    backend_fixture,
    pg_database_fixture,
    pg_session_database_fixture,
)

HOLDER = """
import sys
from receiver.cli_store import open_store
from receiver.leases import lease_for
store = open_store(sys.argv[1])
lease = lease_for(store, "supervisor")
assert lease.acquire()
print("leading", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def store(backend):
    store = backend.open(create=True)
    yield store
    store.close()


def test_one_leader_and_a_takeover_when_it_is_killed(store, backend):
    mine, theirs = lease_for(store, "supervisor"), lease_for(store, "supervisor")
    try:
        assert mine.acquire() and mine.held() and mine.acquire()  # taking it again: held
        assert not theirs.acquire() and not theirs.held()
        other = lease_for(store, "other")
        assert other.acquire()  # another name, another lease
        other.release()
        mine.release()
        assert not mine.held() and theirs.acquire()
        theirs.release()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, backend.location],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "leading\n"
            assert not mine.acquire()
            holder.kill()
            holder.wait(10)
            deadline = time.monotonic() + 10.0
            while not mine.acquire():
                assert time.monotonic() < deadline, "no takeover within 10 s"
                time.sleep(0.05)
        finally:
            holder.kill()
            holder.wait(10)
    finally:
        mine.release()
        theirs.release()
