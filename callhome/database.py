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
from typing import Any, ClassVar


def connect(
    path: Path, *, create: bool, busy_timeout: float = 10.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """Open `path` in autocommit mode (transactions are explicit) with WAL and FULL sync.

    Raises sqlite3.Error; callers wrap it in their own error type with `explain`."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        path, isolation_level=None, timeout=busy_timeout, check_same_thread=check_same_thread
    )
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    db.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit survives power loss, which is what an acknowledgement promises.
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


@contextlib.contextmanager
def write_transaction(
    db: sqlite3.Connection, fail: Callable[[sqlite3.Error], Exception]
) -> Iterator[sqlite3.Connection]:
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


class Database:
    """Base of the spool and the store: opens (or creates) the file, applies the schema,
    refuses a file made by a newer version, and turns every SQLite error into the
    subclass's `error` type with a sentence from `explain`."""

    what: ClassVar[str]
    """How an operator calls it: "the spool"."""
    error: ClassVar[type[Exception]]
    schema: ClassVar[str]
    """`CREATE ... IF NOT EXISTS` statements: run again on every upgrade."""
    schema_version: ClassVar[int] = 1
    created_by: ClassVar[str]
    """The command that creates one: "callhome init"."""

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = False,
        busy_timeout: float = 10.0,
        check_same_thread: bool = True,
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise self.error(f"{self.path}: {self.what} does not exist (run `{self.created_by}`)")
        try:
            self._db = connect(
                self.path,
                create=create,
                busy_timeout=busy_timeout,
                check_same_thread=check_same_thread,
            )
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > self.schema_version:
                raise self.error(
                    f"{self.path}: made by a newer callhome (schema {version}); upgrade this one"
                )
            if version < self.schema_version:
                self._db.executescript(self.schema)  # commits on its own; idempotent
                self._db.execute(f"PRAGMA user_version = {self.schema_version}")
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: sqlite3.Error) -> Exception:
        return self.error(f"{self.path}: {explain(exc, self.what)}")

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._failure)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
