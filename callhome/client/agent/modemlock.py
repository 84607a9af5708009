"""The modem is shared by the agent and a person's `callhome send` / `line-test`: an
fcntl lock on a file next to the spool says who holds it.

fcntl locks belong to the process and vanish with it (a `kill -9` leaves no stale lock);
the file keeps the last holder's pid and name only so that a person waiting can be told.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

PERSON_WAIT = 60.0
"""Seconds a person's `callhome send` or `line-test` waits for the agent's call to end."""


class ModemBusy(Exception):
    """Someone else held the modem for longer than we were willing to wait."""


def lock_path(spool: Path) -> Path:
    return spool.with_name(spool.name + ".modem.lock")


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextlib.asynccontextmanager
async def modem_lock(
    spool: Path, who: str, *, wait: float | None, poll: float = 0.2
) -> AsyncIterator[None]:
    """Hold the modem for the body. `wait`: give up after that many seconds (None: wait
    as long as it takes, as the agent does behind a person)."""
    path = lock_path(spool)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        loop = asyncio.get_running_loop()
        give_up = None if wait is None else loop.time() + wait
        while not _try(fd):
            if give_up is not None and loop.time() >= give_up:
                raise ModemBusy(f"{holder(path)} holds the modem")
            await asyncio.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{who} (pid {os.getpid()})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
