"""SQLite opened for durability, shared by the client's spool and the centre's store.

Both keep the same promise, that nothing acknowledged is ever lost, so both open their
file the same way (WAL, synchronous FULL, explicit `BEGIN IMMEDIATE` transactions) and
turn SQLite's terse errors into sentences an operator can act on.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path


def connect(path: Path, *, create: bool, busy_timeout: float = 10.0,
            check_same_thread: bool = True) -> sqlite3.Connection:
    """Open `path` in autocommit mode (transactions are explicit) with WAL and FULL sync.

    Raises sqlite3.Error; callers wrap it in their own error type with `explain`."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout,
                         check_same_thread=check_same_thread)
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    db.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit survives power loss, which is what an acknowledgement promises.
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection,
                      fail: Callable[[sqlite3.Error], Exception]) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` ... `COMMIT`; rolled back on any exception; a SQLite error
    (also one raised by COMMIT itself, e.g. a full disk) becomes `fail(error)`."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise fail(exc) from None


def explain(exc: sqlite3.Error, what: str) -> str:
    """Why `what` (e.g. "the spool") could not be used, in words an operator can act on."""
    text = str(exc)
    if "locked" in text:
        return f"{what} is locked by another process (busy for too long)"
    if "readonly" in text or "read-only" in text:
        return f"{what} is read-only (check the file's and its folder's permissions)"
    if "full" in text:
        return "the disk is full"
    if "disk I/O error" in text:
        return "disk I/O error (is the disk full or failing?)"
    if "not a database" in text or "malformed" in text:
        return f"{what} file is damaged or not a callhome file"
    if "unable to open" in text:
        return f"cannot open {what} file (missing folder or no permission)"
    return text
