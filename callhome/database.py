"""SQLite opened for durability, shared by the client's spool and the centre's store.

Both keep the same promise, that nothing acknowledged is ever lost, so both open their
file the same way (WAL, synchronous FULL, explicit `BEGIN IMMEDIATE` transactions), are
created private (0600 files in 0700 folders, whatever the umask), refuse a file that
others can read, bring their schema up to date by numbered migration steps recorded in
`PRAGMA user_version`, and turn SQLite's errors, classified by their error code (never
by the text of the message), into sentences an operator can act on.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from .files import create_private_file, make_private_folder, readable_by_others


class ConstraintViolation(Exception):
    """A write broke a constraint of the schema (UNIQUE, NOT NULL, FOREIGN KEY, CHECK).

    Not a fault of the disk: the caller decides what it means (an existing name, say).
    `code_name` is SQLite's extended code name, e.g. `SQLITE_CONSTRAINT_UNIQUE`."""

    def __init__(self, message: str, code_name: str) -> None:
        super().__init__(message)
        self.code_name = code_name


def primary_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (extended codes folded), or None for an
    error raised by Python's sqlite3 module itself (a closed connection, say)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def connect(
    path: Path, *, create: bool, busy_timeout: float = 10.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """Open `path` in autocommit mode (transactions are explicit) with WAL and FULL sync.
    With `create`, a missing folder and file are made private first.

    Raises sqlite3.Error (or OSError while creating); callers wrap it with `explain`."""
    if create:
        make_private_folder(path.parent)
        create_private_file(path)
    db = sqlite3.connect(
        path, isolation_level=None, timeout=busy_timeout, check_same_thread=check_same_thread
    )
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives power loss, which is what an acknowledgement promises.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        db.close()
        raise
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


_EXPLANATIONS: dict[int, str] = {
    sqlite3.SQLITE_BUSY: "{what} is locked by another process (busy for too long)",
    sqlite3.SQLITE_LOCKED: "{what} is locked by another process (busy for too long)",
    sqlite3.SQLITE_READONLY: "{what} is read-only (check the file's and its folder's permissions)",
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_IOERR: "disk I/O error (is the disk full or failing?)",
    sqlite3.SQLITE_CORRUPT: "{what} file is damaged or not a callhome file",
    sqlite3.SQLITE_NOTADB: "{what} file is damaged or not a callhome file",
    sqlite3.SQLITE_CANTOPEN: "cannot open {what} file (missing folder or no permission)",
    sqlite3.SQLITE_PERM: "no permission to use {what}",
    sqlite3.SQLITE_AUTH: "no permission to use {what}",
    sqlite3.SQLITE_NOLFS: "{what} file is too large for this system",
    sqlite3.SQLITE_CONSTRAINT: "a constraint of {what} was violated",
}


def explain(exc: sqlite3.Error, what: str) -> str:
    """Why `what` (e.g. "the spool") could not be used, in words an operator can act on.
    Classified by SQLite's result code; an unexpected one is named with its code."""
    code = primary_code(exc)
    if code is None:
        return str(exc) or type(exc).__name__
    sentence = _EXPLANATIONS.get(code)
    if sentence is not None:
        return sentence.format(what=what)
    return f"{exc} ({getattr(exc, 'sqlite_errorname', code)})"


class Database:
    """Base of the spool and the store: opens (or creates) the file, migrates its schema
    by numbered steps, refuses a file made by a newer version or readable by others, and
    turns every SQLite error into the subclass's `error` type with a sentence from
    `explain` (a constraint violation into `ConstraintViolation`)."""

    what: ClassVar[str]
    """How an operator calls it: "the spool"."""
    error: ClassVar[type[Exception]]
    migrations: ClassVar[tuple[str, ...]]
    """Step N (1-based) takes a file from schema version N-1 to N. Steps are only ever
    appended: a released step is never edited. Step 1 creates the first schema."""
    auto_migrate: ClassVar[bool] = True
    """Migrate an older file on open; if False, refuse it until `migrate()` is run."""
    created_by: ClassVar[str]
    """The command that creates one: "callhome init"."""
    migrated_by: ClassVar[str] = ""
    """The command that migrates one (when `auto_migrate` is False)."""

    @classmethod
    def latest_version(cls) -> int:
        return len(cls.migrations)

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = False,
        busy_timeout: float = 10.0,
        check_same_thread: bool = True,
        migrate: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.migrated_from: int | None = None
        """The schema version the file had when this open migrated it (else None)."""
        if not create and not self.path.exists():
            raise self.error(f"{self.path}: {self.what} does not exist (run `{self.created_by}`)")
        if not create:
            self._refuse_if_exposed()
        try:
            self._db = connect(
                self.path,
                create=create,
                busy_timeout=busy_timeout,
                check_same_thread=check_same_thread,
            )
        except OSError as exc:
            raise self.error(f"{self.path}: cannot create {self.what}: {exc.strerror}") from None
        except sqlite3.Error as exc:
            raise self._failure(exc) from None
        try:
            version = self.version()
            if version > self.latest_version():
                raise self.error(
                    f"{self.path}: made by a newer callhome (schema {version}, this one knows "
                    f"{self.latest_version()}); upgrade this one"
                )
            if version < self.latest_version():
                if migrate is None:
                    migrate = create or self.auto_migrate
                if not migrate:
                    raise self.error(
                        f"{self.path}: {self.what} has schema {version}, this callhome needs "
                        f"{self.latest_version()}: back it up, then run `{self.migrated_by}`"
                    )
                self.migrated_from, _ = self.migrate()
        except BaseException:
            self.close()
            raise

    def _refuse_if_exposed(self) -> None:
        exposed = readable_by_others(self.path)
        if exposed:
            where, mode = exposed[0]
            raise self.error(
                f"{where} is readable by others (mode {mode:04o}); it holds private data: "
                f"chmod 600 {where}"
            )

    def version(self) -> int:
        """The schema version recorded in the file."""
        rows = self._read("PRAGMA user_version")
        return int(rows[0][0])

    def migrate(self) -> tuple[int, int]:
        """Apply every step the file lacks, each in its own transaction together with the
        new version number, so that an interrupted migration resumes at the step it
        stopped in. Returns (version before, version after)."""
        before = current = self.version()
        for number, step in enumerate(self.migrations, start=1):
            if number <= current:
                continue
            try:
                # one script: BEGIN ... COMMIT, so the step and its number land together
                self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{step}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise self._failure(exc) from None
            current = number
        return before, current

    def _failure(self, exc: sqlite3.Error) -> Exception:
        if primary_code(exc) == sqlite3.SQLITE_CONSTRAINT:
            name = getattr(exc, "sqlite_errorname", "SQLITE_CONSTRAINT")
            return ConstraintViolation(f"{self.path}: {explain(exc, self.what)}", name)
        return self.error(f"{self.path}: {explain(exc, self.what)}")

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._failure)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error, AttributeError):
            self._db.close()
