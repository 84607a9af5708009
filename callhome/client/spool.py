"""The client's durable spool: what waits to be sent, and the counters that must never
go backwards.

A message enters the spool (committed, synchronous=FULL) before any dial, keeps the
number it was given then for ever, and leaves only when the centre acknowledges it.
The call counter is incremented and committed before every dial, so a power loss
cannot make the device reuse one (the centre would refuse it as a replay).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..database import Database
from ..wire.messages import (
    CURRENT_DICTIONARY,
    EncodedMessage,
    Kind,
    current_form,
    encode_content,
    load_dictionary,
    pack_message,
)

_SCHEMA_1 = """
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


MIGRATIONS: tuple[str, ...] = (_SCHEMA_1,)
"""The spool's schema, step by step (see `Database.migrations`). A client upgrades its
spool on open: nobody is there to run a command."""


class SpoolError(Exception):
    """The spool cannot be used (locked, read-only, full, damaged)."""


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
        return current_form(self.kind, self.body, self.compressed, self.plain)

    def uncompressed(self) -> EncodedMessage:
        return EncodedMessage(self.kind, self.plain, False, len(self.plain))


class Spool(Database):
    what = "the spool"
    error = SpoolError
    migrations = MIGRATIONS
    created_by = "callhome init"

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        super().__init__(path, create=create)
        if self._get("epoch") is None:  # new: written once, so a read-only spool still reads
            with self._write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO state VALUES ('epoch', ?)", (str(secrets.randbits(32)),)
                )
                db.execute("INSERT OR IGNORE INTO state VALUES ('call_counter', '0')")

    def _get(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    @property
    def epoch(self) -> int:
        value = self._get("epoch")
        assert value is not None
        return int(value)

    def next_call_counter(self) -> int:
        """Increment and commit the call counter; use the value for one dial."""
        with self._write() as db:
            value = (
                int(db.execute("SELECT value FROM state WHERE key = 'call_counter'").fetchone()[0])
                + 1
            )
            db.execute("UPDATE state SET value = ? WHERE key = 'call_counter'", (str(value),))
        return value

    def enqueue(self, kind: Kind, content: dict[str, Any], summary: str | None = None) -> int:
        [seq] = self.enqueue_many([(kind, content, summary)])
        return seq

    def enqueue_many(
        self,
        messages: Sequence[tuple[Kind, dict[str, Any], str | None]],
        state: Mapping[str, str] | Callable[[list[int]], Mapping[str, str]] | None = None,
    ) -> list[int]:
        """Queue `messages` and set the `state` values (see `value`; a function is given
        the new messages' numbers) in one transaction: a crash leaves all of it or none
        (the agent keeps the check states it reported and its inventory's progress here,
        so that a restart neither loses an event nor reports one twice)."""
        # both forms are kept byte for byte: a message cut mid-call resumes on the next
        # call from the same bytes, whatever zlib version compresses by then
        dictionary = load_dictionary(CURRENT_DICTIONARY)
        rows = []
        for kind, content, summary in messages:
            plain = encode_content(content)
            message = pack_message(kind, plain, dictionary)
            rows.append(
                (kind.label, message.body, int(message.compressed), plain, time.time(), summary)
            )
        seqs: list[int] = []
        with self._write() as db:
            for row in rows:
                cursor = db.execute(
                    "INSERT INTO messages (kind, body, compressed, plain, created, summary) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                assert cursor.lastrowid is not None
                seqs.append(cursor.lastrowid)
            values = state(seqs) if callable(state) else state
            for key, value in (values or {}).items():
                db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))
        return seqs

    def count(self) -> int:
        """How many messages wait for the centre (not those it rejected)."""
        return int(self._read("SELECT COUNT(*) FROM messages WHERE status = 'queued'")[0][0])

    def value(self, key: str) -> str | None:
        """A value set with `enqueue_many` (None when never set)."""
        return self._get(key)

    def queued(self, *, include_rejected: bool = False) -> list[SpooledMessage]:
        where = "" if include_rejected else "WHERE status = 'queued'"
        rows = self._read(
            "SELECT seq, kind, body, compressed, plain, created, attempts, status, detail, "
            f"summary FROM messages {where} ORDER BY seq"
        )
        return [
            SpooledMessage(seq, Kind.from_label(kind), body, bool(compressed), *rest)
            for seq, kind, body, compressed, *rest in rows
        ]

    def attempted(self, seqs: list[int]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE messages SET attempts = attempts + 1 WHERE seq = ?",
                [(seq,) for seq in seqs],
            )

    def acknowledged(self, seq: int) -> None:
        """The centre holds it durably: it leaves the spool."""
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE seq = ?", (seq,))

    def withdraw(self, seq: int) -> None:
        """Take back a message that no longer needs sending (a line test queued for a
        call that turned out not to be the centre's)."""
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE seq = ? AND status != 'rejected'", (seq,))

    def rejected(self, seq: int, reason: str) -> None:
        """The centre will never take it: kept, marked, for the operator to see."""
        with self._write() as db:
            db.execute(
                "UPDATE messages SET status = 'rejected', detail = ? WHERE seq = ?", (reason, seq)
            )

    def remember_call(self, stats: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO state VALUES ('last_call', ?)", (json.dumps(stats),))

    def last_call(self) -> dict[str, Any] | None:
        value = self._get("last_call")
        return json.loads(value) if value else None
