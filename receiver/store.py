"""The centre's durable state: devices, calls, messages, partial messages.

`Store` is the interface; `SQLiteStore` implements it on one SQLite file in WAL mode
with `synchronous=FULL`, so a committed message survives power loss before its STORED
goes out. A PostgreSQL store for several banks and sites is a second implementation of
the same interface. Everything that can fail for reasons outside the program (locked,
read-only, full, corrupt) raises `StoreUnavailable` with a message a person can act on.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from callhome.database import ConstraintViolation, Database

T = TypeVar("T")
P = ParamSpec("P")
IN_PROGRESS = "in progress"
"""The outcome of a call that has not ended (yet)."""
INTERRUPTED = "interrupted"
"""The outcome of a call the receiver stopped in (crash, kill) without recording its end."""


class StoreUnavailable(Exception):
    """The store cannot be used right now (locked, read-only, full, corrupt)."""


class NotFound(Exception):
    pass


class AlreadyExists(Exception):
    pass


@dataclass(frozen=True)
class CallEnd:
    """How a call ended, as the bank records it (`Store.finish_call`)."""

    ended: float
    outcome: str
    device_id: int | None
    rate: int | None
    modulation: str | None
    error_correction: str | None
    bytes_in: int
    bytes_out: int
    messages: int
    error: str | None
    security: Mapping[str, int] | None = None
    """The protocol's counters (`SECURITY_COUNTERS`; missing ones count as 0)."""


@dataclass(frozen=True)
class Device:
    id: int
    name: str
    public_key: bytes
    enrolled_at: float
    revoked_at: float | None
    test_interval: float
    grace: float
    site: str | None
    last_counter: int
    last_seen: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class CallRecord:
    id: int
    port: str
    caller_id: str | None
    device: str | None
    started: float
    ended: float | None
    outcome: str
    rate: int | None
    modulation: str | None
    error_correction: str | None
    bytes_in: int
    bytes_out: int
    messages: int
    error: str | None
    auth_failures: int = 0
    replays: int = 0
    crc_failures: int = 0
    malformed: int = 0
    oversize: int = 0

    @property
    def security(self) -> dict[str, int]:
        """The protocol's counters of the call, by name (`SECURITY_COUNTERS`)."""
        return {name: getattr(self, name) for name in SECURITY_COUNTERS}


@dataclass(frozen=True)
class StoredMessage:
    id: int
    device: str
    epoch: int
    seq: int
    kind: str
    severity: str | None
    component: str | None
    state: str | None
    received_at: float
    call_id: int | None
    content: bytes


class Store(abc.ABC):
    """What the bank and the CLI need from the centre's storage."""

    # devices
    @abc.abstractmethod
    def enroll(
        self, name: str, public_key: bytes, *, test_interval: float, grace: float, site: str | None
    ) -> Device: ...

    @abc.abstractmethod
    def revoke(self, name: str, when: float) -> Device: ...

    @abc.abstractmethod
    def rekey(self, name: str, public_key: bytes, when: float) -> Device:
        """Give a device a new key (a rebuilt system): its call counter starts again,
        a revocation is lifted, its history stays."""

    @abc.abstractmethod
    def devices(self) -> list[Device]: ...

    @abc.abstractmethod
    def device_by_key(self, public_key: bytes) -> Device | None: ...

    @abc.abstractmethod
    def advance_counter(self, device_id: int, counter: int, when: float) -> bool:
        """Record a call counter if it is greater than the last; False if not."""

    # calls
    @abc.abstractmethod
    def start_call(self, port: str, caller_id: str | None, started: float) -> int: ...

    @abc.abstractmethod
    def finish_call(
        self,
        call_id: int,
        end: CallEnd,
    ) -> None:
        """Record how a call ended; `security` holds the protocol's counters (see
        `SECURITY_COUNTERS`; missing ones are 0, others are ignored)."""

    @abc.abstractmethod
    def close_open_calls(self, when: float) -> int:
        """At start: every call still "in progress" was left open by a receiver that
        stopped without finishing it (crash, kill, full disk); record it `interrupted`.
        Returns how many."""

    @abc.abstractmethod
    def calls(
        self,
        *,
        device: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[CallRecord]: ...

    # messages
    @abc.abstractmethod
    def has_message(self, device_id: int, epoch: int, seq: int) -> bool: ...

    @abc.abstractmethod
    def store_message(
        self,
        device_id: int,
        epoch: int,
        seq: int,
        kind: str,
        content: bytes,
        summary: dict[str, str | None],
        call_id: int | None,
        received_at: float,
    ) -> bool:
        """Commit a message; False (and nothing written) if it was already stored."""

    @abc.abstractmethod
    def partials(self, device_id: int, epoch: int) -> dict[int, bytes]: ...

    @abc.abstractmethod
    def append_partial(
        self, device_id: int, epoch: int, seq: int, offset: int, data: bytes
    ) -> None: ...

    @abc.abstractmethod
    def messages(
        self,
        *,
        device: str | None = None,
        since: float | None = None,
        until: float | None = None,
        severity: Collection[str] | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[StoredMessage]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    public_key BLOB NOT NULL UNIQUE,
    enrolled_at REAL NOT NULL,
    revoked_at REAL,
    test_interval REAL NOT NULL,
    grace REAL NOT NULL,
    site TEXT,
    last_counter INTEGER NOT NULL DEFAULT -1,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    port TEXT NOT NULL,
    caller_id TEXT,
    device_id INTEGER REFERENCES devices(id),
    started REAL NOT NULL,
    ended REAL,
    outcome TEXT NOT NULL DEFAULT 'in progress',
    rate INTEGER,
    modulation TEXT,
    error_correction TEXT,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT,
    component TEXT,
    state TEXT,
    received_at REAL NOT NULL,
    call_id INTEGER REFERENCES calls(id),
    content BLOB NOT NULL,
    UNIQUE (device_id, epoch, seq)
);
CREATE INDEX IF NOT EXISTS messages_received ON messages(received_at);
CREATE TABLE IF NOT EXISTS partial_chunks (
    device_id INTEGER NOT NULL REFERENCES devices(id),
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (device_id, epoch, seq, offset)
);
"""

SECURITY_COUNTERS = ("auth_failures", "replays", "crc_failures", "malformed", "oversize")
"""What the protocol counted in a call (`session.stats()`): frames that failed
authentication, replayed records, frames that failed their CRC (line noise), malformed
and oversize frames. Noise is not an alarm; forgery and replays are."""

_STEP_2_SECURITY_COUNTERS = "\n".join(
    f"ALTER TABLE calls ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0;" for name in SECURITY_COUNTERS
)

MIGRATIONS: tuple[str, ...] = (_SCHEMA_1, _STEP_2_SECURITY_COUNTERS)
"""The store's schema, step by step (see `Database.migrations`); a PostgreSQL store
applies the same steps."""

_DEVICE_COLUMNS = (
    "id, name, public_key, enrolled_at, revoked_at, test_interval, grace, "
    "site, last_counter, last_seen"
)


class SQLiteStore(Database, Store):
    what = "the store"
    error = StoreUnavailable
    migrations = MIGRATIONS
    auto_migrate = False  # the centre's operator backs the store up and runs `migrate`
    created_by = "callhome-receiver init"
    migrated_by = "callhome-receiver migrate"

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = False,
        busy_timeout: float = 10.0,
        migrate: bool | None = None,
    ) -> None:
        """`migrate`: bring an older file up to date (default: only when creating; the
        operator runs `callhome-receiver migrate`, after a backup)."""
        # AsyncStore runs every call on its one worker thread, never two at once
        super().__init__(
            path,
            create=create,
            busy_timeout=busy_timeout,
            check_same_thread=False,
            migrate=migrate,
        )

    # -- devices -------------------------------------------------------------------------

    def enroll(
        self, name: str, public_key: bytes, *, test_interval: float, grace: float, site: str | None
    ) -> Device:
        now = time.time()
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO devices (name, public_key, enrolled_at, test_interval, grace, "
                    "site) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, public_key, now, test_interval, grace, site),
                )
        except ConstraintViolation:
            if self._device("name = ?", (name,)) is not None:
                raise AlreadyExists(f"a device named {name!r} is already enrolled") from None
            if self.device_by_key(public_key) is not None:
                raise AlreadyExists("a device with this public key is already enrolled") from None
            raise
        device = self._device("name = ?", (name,))
        assert device is not None
        return device

    def rekey(self, name: str, public_key: bytes, when: float) -> Device:
        try:
            with self._write() as db:
                changed = db.execute(
                    "UPDATE devices SET public_key = ?, last_counter = -1, revoked_at = NULL, "
                    "enrolled_at = ? WHERE name = ?",
                    (public_key, when, name),
                ).rowcount
        except ConstraintViolation:
            if self.device_by_key(public_key) is not None:
                raise AlreadyExists("a device with this public key is already enrolled") from None
            raise
        if not changed:
            raise NotFound(f"no device named {name!r}")
        device = self._device("name = ?", (name,))
        assert device is not None
        return device

    def revoke(self, name: str, when: float) -> Device:
        with self._write() as db:
            changed = db.execute(
                "UPDATE devices SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (when, name),
            ).rowcount
        device = self._device("name = ?", (name,))
        if device is None:
            raise NotFound(f"no device named {name!r}")
        if not changed:
            raise AlreadyExists(f"{name!r} was already revoked")
        return device

    def devices(self) -> list[Device]:
        return [
            Device(*row)
            for row in self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY name")
        ]

    def device_by_key(self, public_key: bytes) -> Device | None:
        return self._device("public_key = ?", (public_key,))

    def _device(self, where: str, args: tuple[Any, ...]) -> Device | None:
        rows = self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE {where}", args)
        return Device(*rows[0]) if rows else None

    def advance_counter(self, device_id: int, counter: int, when: float) -> bool:
        with self._write() as db:
            changed = db.execute(
                "UPDATE devices SET last_counter = ?, last_seen = ? "
                "WHERE id = ? AND last_counter < ?",
                (counter, when, device_id, counter),
            ).rowcount
        return bool(changed)

    # -- calls ---------------------------------------------------------------------------

    def start_call(self, port: str, caller_id: str | None, started: float) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO calls (port, caller_id, started) VALUES (?, ?, ?)",
                (port, caller_id, started),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_call(
        self,
        call_id: int,
        end: CallEnd,
    ) -> None:
        counters = security_counters(end.security)
        with self._write() as db:
            db.execute(
                "UPDATE calls SET ended = ?, outcome = ?, device_id = ?, rate = ?, "
                "modulation = ?, error_correction = ?, bytes_in = ?, bytes_out = ?, "
                "messages = ?, error = ?, "
                + ", ".join(f"{name} = ?" for name in SECURITY_COUNTERS)
                + " WHERE id = ?",
                (
                    end.ended,
                    end.outcome,
                    end.device_id,
                    end.rate,
                    end.modulation,
                    end.error_correction,
                    end.bytes_in,
                    end.bytes_out,
                    end.messages,
                    end.error,
                    *counters,
                    call_id,
                ),
            )

    def close_open_calls(self, when: float) -> int:
        with self._write() as db:
            closed = db.execute(
                "UPDATE calls SET ended = max(?, started), outcome = ?, error = coalesce(error, ?) "
                "WHERE outcome = ?",
                (when, INTERRUPTED, "the receiver stopped before the call ended", IN_PROGRESS),
            ).rowcount
        return int(closed)

    def calls(
        self,
        *,
        device: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[CallRecord]:
        where, args = _filters(device=device, since=since, until=until, time_column="c.started")
        rows = self._read(
            "SELECT c.id, c.port, c.caller_id, d.name, c.started, c.ended, c.outcome, c.rate, "
            "c.modulation, c.error_correction, c.bytes_in, c.bytes_out, c.messages, c.error, "
            + ", ".join(f"c.{name}" for name in SECURITY_COUNTERS)
            + f" FROM calls c LEFT JOIN devices d ON d.id = c.device_id {where} "
            "ORDER BY c.started DESC, c.id DESC LIMIT ?",
            (*args, limit),
        )
        return [CallRecord(*row) for row in rows]

    # -- messages ------------------------------------------------------------------------

    def has_message(self, device_id: int, epoch: int, seq: int) -> bool:
        return bool(
            self._read(
                "SELECT 1 FROM messages WHERE device_id = ? AND epoch = ? AND seq = ?",
                (device_id, epoch, seq),
            )
        )

    def store_message(
        self,
        device_id: int,
        epoch: int,
        seq: int,
        kind: str,
        content: bytes,
        summary: dict[str, str | None],
        call_id: int | None,
        received_at: float,
    ) -> bool:
        with self._write() as db:
            changed = db.execute(
                "INSERT OR IGNORE INTO messages (device_id, epoch, seq, kind, severity, "
                "component, state, received_at, call_id, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    device_id,
                    epoch,
                    seq,
                    kind,
                    summary.get("severity"),
                    summary.get("component"),
                    summary.get("state"),
                    received_at,
                    call_id,
                    content,
                ),
            ).rowcount
            db.execute(
                "DELETE FROM partial_chunks WHERE device_id = ? AND epoch = ? AND seq = ?",
                (device_id, epoch, seq),
            )
        return bool(changed)

    def partials(self, device_id: int, epoch: int) -> dict[int, bytes]:
        held: dict[int, bytearray] = {}
        for seq, offset, data in self._read(
            "SELECT seq, offset, data FROM partial_chunks WHERE device_id = ? AND "
            "epoch = ? ORDER BY seq, offset",
            (device_id, epoch),
        ):
            buffer = held.setdefault(seq, bytearray())
            if offset == len(buffer):  # contiguous prefixes only
                buffer += data
        return {seq: bytes(buffer) for seq, buffer in held.items()}

    def append_partial(
        self, device_id: int, epoch: int, seq: int, offset: int, data: bytes
    ) -> None:
        """Add a chunk of a long message; only what continues the held prefix is kept,
        and nothing of a message already stored (another call of the device may have
        stored it meanwhile: its copy would never be deleted)."""
        with self._write() as db:
            if db.execute(
                "SELECT 1 FROM messages WHERE device_id = ? AND epoch = ? AND seq = ?",
                (device_id, epoch, seq),
            ).fetchone():
                return
            if offset == 0:
                db.execute(
                    "DELETE FROM partial_chunks WHERE device_id = ? AND epoch = ? AND seq = ?",
                    (device_id, epoch, seq),
                )
            have = db.execute(
                "SELECT coalesce(sum(length(data)), 0) FROM partial_chunks WHERE "
                "device_id = ? AND epoch = ? AND seq = ?",
                (device_id, epoch, seq),
            ).fetchone()[0]
            if offset == have and data:
                db.execute(
                    "INSERT INTO partial_chunks (device_id, epoch, seq, offset, data, "
                    "stored_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (device_id, epoch, seq, offset, data, time.time()),
                )

    def messages(
        self,
        *,
        device: str | None = None,
        since: float | None = None,
        until: float | None = None,
        severity: Collection[str] | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[StoredMessage]:
        where, args = _filters(
            device=device,
            since=since,
            until=until,
            time_column="m.received_at",
            severity=severity,
            kind=kind,
        )
        rows = self._read(
            "SELECT m.id, d.name, m.epoch, m.seq, m.kind, m.severity, m.component, m.state, "
            "m.received_at, m.call_id, m.content FROM messages m "
            f"JOIN devices d ON d.id = m.device_id {where} "
            "ORDER BY m.received_at DESC, m.id DESC LIMIT ?",
            (*args, limit),
        )
        return [StoredMessage(*row) for row in rows]


def security_counters(security: Mapping[str, int] | None) -> tuple[int, ...]:
    """The values of `SECURITY_COUNTERS` in `security`, in order (0 when missing)."""
    given = security or {}
    return tuple(max(0, int(given.get(name, 0))) for name in SECURITY_COUNTERS)


def _filters(
    *,
    device: str | None,
    since: float | None,
    until: float | None,
    time_column: str,
    severity: Collection[str] | None = None,
    kind: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if device is not None:
        clauses.append("d.name = ?")
        args.append(device)
    if since is not None:
        clauses.append(f"{time_column} >= ?")
        args.append(since)
    if until is not None:
        clauses.append(f"{time_column} < ?")
        args.append(until)
    if severity is not None:
        clauses.append(f"m.severity IN ({', '.join('?' * len(severity))})")
        args.extend(severity)
    if kind is not None:
        clauses.append("m.kind = ?")
        args.append(kind)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)


class AsyncStore:
    """The store for asyncio code: the same methods, with the same signatures, each run on
    one thread of its own, so that a locked or slow disk does not stall the event loop
    that serves every port of the bank (and mypy checks every call)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "callhome-store")

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    # devices
    async def device_by_key(self, public_key: bytes) -> Device | None:
        return await self._call(self.store.device_by_key, public_key)

    async def advance_counter(self, device_id: int, counter: int, when: float) -> bool:
        return await self._call(self.store.advance_counter, device_id, counter, when)

    # calls
    async def start_call(self, port: str, caller_id: str | None, started: float) -> int:
        return await self._call(self.store.start_call, port, caller_id, started)

    async def finish_call(
        self,
        call_id: int,
        end: CallEnd,
    ) -> None:
        await self._call(self.store.finish_call, call_id, end)

    async def close_open_calls(self, when: float) -> int:
        return await self._call(self.store.close_open_calls, when)

    # messages
    async def has_message(self, device_id: int, epoch: int, seq: int) -> bool:
        return await self._call(self.store.has_message, device_id, epoch, seq)

    async def store_message(
        self,
        device_id: int,
        epoch: int,
        seq: int,
        kind: str,
        content: bytes,
        summary: dict[str, str | None],
        call_id: int | None,
        received_at: float,
    ) -> bool:
        return await self._call(
            self.store.store_message,
            device_id,
            epoch,
            seq,
            kind,
            content,
            summary,
            call_id,
            received_at,
        )

    async def partials(self, device_id: int, epoch: int) -> dict[int, bytes]:
        return await self._call(self.store.partials, device_id, epoch)

    async def append_partial(
        self, device_id: int, epoch: int, seq: int, offset: int, data: bytes
    ) -> None:
        await self._call(self.store.append_partial, device_id, epoch, seq, offset, data)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
