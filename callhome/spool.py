"""The client's durable spool: what waits to be sent, and the counters that must never
go backwards.

A message enters the spool (committed, synchronous=FULL) before any dial, keeps the
number it was given then for ever, and leaves only when the centre acknowledges it.
The call counter is incremented and committed before every dial, so a power loss
cannot make the device reuse one (the centre would refuse it as a replay).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .database import connect, explain, write_transaction
from .wire.messages import (
    EncodedMessage,
    Kind,
    encode_content,
    encode_message,
    load_dictionary,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    -- AUTOINCREMENT: a number is never given twice, even after the table empties (a
    -- plain rowid would be reused, and the centre would take a new report for a copy
    -- of an old one it already holds)
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    compressed INTEGER NOT NULL,
    plain BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'queued',
    detail TEXT,
    summary TEXT
);
"""


class SpoolError(Exception):
    """The spool cannot be used (locked, read-only, full, damaged)."""


def _why(exc: sqlite3.Error) -> str:
    return explain(exc, "the spool")


def _failed(path: Path) -> Callable[[sqlite3.Error], SpoolError]:
    return lambda exc: SpoolError(f"{path}: {_why(exc)}")


@dataclass(frozen=True)
class SpooledMessage:
    seq: int
    kind: Kind
    body: bytes
    compressed: bool
    plain: bytes
    created: float
    attempts: int
    status: str
    detail: str | None
    summary: str | None

    def encoded(self) -> EncodedMessage:
        return EncodedMessage(self.kind, self.body, self.compressed, len(self.plain))

    def uncompressed(self) -> EncodedMessage:
        return EncodedMessage(self.kind, self.plain, False, len(self.plain))


class Spool:
    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise SpoolError(f"{self.path}: no such spool (run `callhome init`)")
        try:
            self._db = connect(self.path, create=create)
            self._db.executescript(SCHEMA)
            if self._get("epoch") is None:
                with self._write() as db:
                    db.execute("INSERT OR IGNORE INTO state VALUES ('epoch', ?)",
                               (str(secrets.randbits(32)),))
                    db.execute("INSERT OR IGNORE INTO state VALUES ('call_counter', '0')")
        except sqlite3.Error as exc:
            raise SpoolError(f"{self.path}: {_why(exc)}") from None

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, _failed(self.path))

    def _get(self, key: str) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"{self.path}: {_why(exc)}") from None
        return row[0] if row else None

    @property
    def epoch(self) -> int:
        value = self._get("epoch")
        assert value is not None
        return int(value)

    def next_call_counter(self) -> int:
        """Increment and commit the call counter; use the value for one dial."""
        with self._write() as db:
            value = int(db.execute("SELECT value FROM state WHERE key = 'call_counter'")
                        .fetchone()[0]) + 1
            db.execute("UPDATE state SET value = ? WHERE key = 'call_counter'", (str(value),))
        return value

    def enqueue(self, kind: Kind, content: dict[str, Any], summary: str | None = None) -> int:
        message = encode_message(kind, content, load_dictionary(1))
        plain = encode_content(content)
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO messages (kind, body, compressed, plain, created, summary) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind.label, message.body, int(message.compressed), plain, time.time(),
                 summary))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def queued(self, *, include_rejected: bool = False) -> list[SpooledMessage]:
        where = "" if include_rejected else "WHERE status = 'queued'"
        try:
            rows = self._db.execute(
                "SELECT seq, kind, body, compressed, plain, created, attempts, status, detail, "
                f"summary FROM messages {where} ORDER BY seq").fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"{self.path}: {_why(exc)}") from None
        return [SpooledMessage(seq, Kind.from_label(kind), body, bool(compressed), plain,
                               created, attempts, status, detail, summary)
                for seq, kind, body, compressed, plain, created, attempts, status, detail,
                summary in rows]

    def attempted(self, seqs: list[int]) -> None:
        with self._write() as db:
            db.executemany("UPDATE messages SET attempts = attempts + 1 WHERE seq = ?",
                           [(seq,) for seq in seqs])

    def acknowledged(self, seq: int) -> None:
        """The centre holds it durably: it leaves the spool."""
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE seq = ?", (seq,))

    def rejected(self, seq: int, reason: str) -> None:
        """The centre will never take it: kept, marked, for the operator to see."""
        with self._write() as db:
            db.execute("UPDATE messages SET status = 'rejected', detail = ? WHERE seq = ?",
                       (reason, seq))

    def remember_call(self, stats: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO state VALUES ('last_call', ?)",
                       (json.dumps(stats),))

    def last_call(self) -> dict[str, Any] | None:
        value = self._get("last_call")
        return json.loads(value) if value else None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
