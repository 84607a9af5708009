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
import functools
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from callhome.database import ConstraintViolation, Database

T = TypeVar("T")
P = ParamSpec("P")
IN_PROGRESS = "in progress"
"""The outcome of a call that has not ended (yet)."""
INTERRUPTED = "interrupted"
"""The outcome of a call the receiver stopped in (crash, kill) without recording its end."""


class StoreUnavailable(Exception):
    """The store cannot be used right now (locked, read-only, full, corrupt)."""


class LeaseLost(Exception):
    """A write as the holder of a lease (`Store.fence`) that another receiver has taken
    since: refused, so that a holder that was paused or cut off cannot write over the
    one that leads now."""


@dataclass(frozen=True)
class Fence:
    """The lease a leading receiver's supervision writes under: its name and the epoch
    this receiver was given when it took it (`Store.take_lease`)."""

    name: str
    epoch: int


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
    customer: str | None = None
    """Whose device it is (routing matches on it; schema step 9)."""

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
    path: str = "modem"
    """How the call came: "modem" (the bank) or "ip" (the TCP listener)."""
    receiver: str | None = None
    """The receiver (site) that answered it, when it had a name."""

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
    path: str | None = None
    """The path of the call that delivered it ("modem", "ip")."""


@dataclass(frozen=True)
class StartCall:
    """A write of `Store.apply_batch`: `Store.start_call` (result: the call's id)."""

    port: str
    caller_id: str | None
    started: float
    path: str = "modem"
    """The path of the call ("modem", "ip")."""
    receiver: str | None = None
    """The receiver (site) that answered it (`[centre] receiver`)."""


@dataclass(frozen=True)
class FinishCall:
    """`Store.finish_call` (result: None)."""

    call_id: int
    end: CallEnd


@dataclass(frozen=True)
class AdvanceCounter:
    """`Store.advance_counter` (result: bool)."""

    device_id: int
    counter: int
    when: float


@dataclass(frozen=True)
class StoreMessage:
    """`Store.store_message` (result: bool, False for a duplicate)."""

    device_id: int
    epoch: int
    seq: int
    kind: str
    content: bytes
    summary: dict[str, str | None]
    call_id: int | None
    received_at: float
    handover: str | None = None
    """What supervision is to hear of it (`supervision.service.handed_over`), written to
    the supervision inbox in the message's own transaction, duplicate or not: once the
    message is acknowledged, supervision cannot miss it, whoever leads or crashes."""
    receiver: str | None = None
    """The receiver that stored it (the inbox row's `receiver`)."""


@dataclass(frozen=True)
class AppendPartial:
    """`Store.append_partial` (result: None)."""

    device_id: int
    epoch: int
    seq: int
    offset: int
    data: bytes


Operation = StartCall | FinishCall | AdvanceCounter | StoreMessage | AppendPartial
"""The writes of the bank's hot path, which `apply_batch` commits together."""

OPERATION_NAMES: dict[type, str] = {
    StartCall: "start_call",
    FinishCall: "finish_call",
    AdvanceCounter: "advance_counter",
    StoreMessage: "store_message",
    AppendPartial: "append_partial",
}
"""Each operation by the name of the `Store` method it stands for (metrics, logs)."""


class Store(abc.ABC):
    """What the bank and the CLI need from the centre's storage."""

    # devices
    @abc.abstractmethod
    def enroll(
        self,
        name: str,
        public_key: bytes,
        *,
        test_interval: float,
        grace: float,
        site: str | None,
        customer: str | None = None,
    ) -> Device: ...

    @abc.abstractmethod
    def revoke(self, name: str, when: float) -> Device: ...

    @abc.abstractmethod
    def rekey(self, name: str, public_key: bytes, when: float) -> Device:
        """Give a device a new key (a rebuilt system): its call counter starts again,
        a revocation is lifted, its history stays."""

    @abc.abstractmethod
    def assign(self, name: str, attributes: Mapping[str, str | None]) -> Device:
        """Set a device's `ASSIGNABLE` attributes (a None or empty value clears one)."""

    @abc.abstractmethod
    def devices(self) -> list[Device]: ...

    @abc.abstractmethod
    def device_by_key(self, public_key: bytes) -> Device | None: ...

    def device_and_partials(
        self, public_key: bytes, epoch: int
    ) -> tuple[Device | None, dict[int, bytes]]:
        """`device_by_key`, and the device's `partials` of `epoch` if it is enrolled:
        what a handshake needs, in one read (one trip to the store's thread, not two)."""
        device = self.device_by_key(public_key)
        return device, self.partials(device.id, epoch) if device is not None else {}

    @abc.abstractmethod
    def advance_counter(self, device_id: int, counter: int, when: float) -> bool:
        """Record a call counter if it is greater than the last; False if not."""

    # calls
    @abc.abstractmethod
    def start_call(
        self, port: str, caller_id: str | None, started: float, path: str = "modem"
    ) -> int: ...

    @abc.abstractmethod
    def finish_call(
        self,
        call_id: int,
        end: CallEnd,
    ) -> None:
        """Record how a call ended; `security` holds the protocol's counters (see
        `SECURITY_COUNTERS`; missing ones are 0, others are ignored)."""

    @abc.abstractmethod
    def close_open_calls(self, when: float, receiver: str | None = None) -> int:
        """At start: every call still "in progress" was left open by a receiver that
        stopped without finishing it (crash, kill, full disk); record it `interrupted`.
        With `receiver`: only the calls of that receiver (and those that name none, from
        before receivers had names): the others are another site's, maybe in progress.
        Returns how many."""

    receiver: str | None = None
    """This receiver's name (`[centre] receiver`), recorded on the calls it starts."""

    fence: Fence | None = None
    """Set while this receiver leads (runs supervision): its supervision writes
    (`save_supervision`, `supervision_outbox_done`, `sun_commit`) then raise `LeaseLost`
    if the lease's epoch in the store is no longer this one's."""

    # several receivers on one store
    @abc.abstractmethod
    def take_lease(self, name: str, holder: str, when: float) -> Fence:
        """Record that `holder` has just taken the lease `name` (it holds the advisory
        lock or file lock of `receiver.leases`): the lease's epoch goes up by one, which
        fences off every earlier holder. Returns the new fence."""

    @abc.abstractmethod
    def lease_holder(self, name: str) -> tuple[str, int, float] | None:
        """(holder, epoch, taken at) of the lease `name`, as last taken."""

    @abc.abstractmethod
    def supervision_inbox_put(self, receiver: str, at: float, event: str) -> None:
        """A receiver that does not run supervision hands it an event (JSON)."""

    @abc.abstractmethod
    def supervision_inbox(self, limit: int = 1000, after: int = 0) -> list[tuple[int, str]]:
        """Events handed to supervision, oldest first, from the id after `after` (a
        page); `save_supervision` deletes the ones a turn took
        (`SupervisionBatch.inbox_done`) with what they changed. An event is a JSON
        object, or a list of them (a group commit's messages, on PostgreSQL)."""

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
        handover: str | None = None,
    ) -> bool:
        """Commit a message; False (and the message not written again) if it was
        already stored. `handover`: see `StoreMessage.handover`."""

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

    def apply_batch(self, operations: Sequence[Operation]) -> list[Any]:
        """Apply writes and return, for each, its result or the exception it raised.

        A store that can (SQLite, PostgreSQL) commits them in one transaction, one
        fsync for all: the bank's group commit (`AsyncStore`). No result may be
        acted on (acknowledged) before this returns. This default applies them one
        by one, each in its own transaction."""
        results: list[Any] = []
        for operation in operations:
            try:
                results.append(self._apply_one(operation))
            except Exception as exc:
                results.append(exc)
        return results

    def _apply_one(self, op: Operation) -> Any:
        if isinstance(op, StoreMessage):
            return self.store_message(
                op.device_id,
                op.epoch,
                op.seq,
                op.kind,
                op.content,
                op.summary,
                op.call_id,
                op.received_at,
                op.handover,
            )
        if isinstance(op, AppendPartial):
            return self.append_partial(op.device_id, op.epoch, op.seq, op.offset, op.data)
        if isinstance(op, StartCall):
            return self.start_call(op.port, op.caller_id, op.started, op.path)
        if isinstance(op, FinishCall):
            return self.finish_call(op.call_id, op.end)
        return self.advance_counter(op.device_id, op.counter, op.when)

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- follow the sun: outbox and escalations (receiver/sun) --------------------------

    @abc.abstractmethod
    def sun_commit(
        self,
        notifications: Collection[OutboxItem],
        saved: Collection[tuple[int, str, str]],
        deleted: Collection[tuple[int, str]],
        when: float,
        state: Mapping[str, str] | None = None,
    ) -> int:
        """In one transaction: queue `notifications` (one already queued under the same
        outbox key is left as it is), save escalation states (incident, policy, JSON),
        delete finished ones, set `state` names. Returns how many were queued."""

    @abc.abstractmethod
    def sun_escalations(self) -> list[tuple[int, str, str]]: ...

    @abc.abstractmethod
    def sun_state(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def outbox_due(
        self, now: float, limit: int = 50, claim: float | None = None
    ) -> list[OutboxRow]:
        """Pending notifications whose next attempt is due, oldest first; on PostgreSQL
        each claimed for `claim` seconds (see `PostgresStore.outbox_due`)."""

    @abc.abstractmethod
    def outbox_attempt(
        self,
        row_id: int,
        when: float,
        *,
        sent: bool,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        """Record one attempt: sent; or failed and retried at `retry_at`; or failed for
        good (`retry_at` None)."""

    @abc.abstractmethod
    def outbox(self, *, pending: bool = False, limit: int = 100) -> list[OutboxRow]: ...
    # supervision (receiver/supervision): its state, incidents and their timelines
    @abc.abstractmethod
    def supervision_rows(self, device: str | None = None) -> list[SupervisionRow]:
        """Every device (or one) with what supervision kept of it (None: nothing yet)."""

    @abc.abstractmethod
    def save_supervision(self, batch: SupervisionBatch) -> None:
        """Commit device states, incidents, timeline entries, notifications still to
        deliver and commands, all in one transaction (nothing alerted is forgotten)."""

    @abc.abstractmethod
    def incident_rows(
        self,
        *,
        status: Collection[str] | None = None,
        incident_id: int | None = None,
        limit: int = 100,
    ) -> list[IncidentRow]: ...

    @abc.abstractmethod
    def incident_timeline(self, incident_id: int) -> list[TimelineRow]: ...

    @abc.abstractmethod
    def max_incident_id(self) -> int: ...

    @abc.abstractmethod
    def supervision_outbox(self) -> list[tuple[int, str]]:
        """Incident events committed but not yet handed to the notifier (JSON)."""

    @abc.abstractmethod
    def supervision_outbox_done(self, ids: Collection[int]) -> None: ...

    @abc.abstractmethod
    def supervision_commands(self, after: int) -> list[tuple[int, str]]:
        """Commands of `callhome-receiver` (JSON) for the running engine, after an id."""

    # -- the operator console (receiver/web) --------------------------------------------

    @abc.abstractmethod
    def console_add_account(self, name: str, password_hash: str, role: str, when: float) -> None:
        """AlreadyExists if the name is taken."""

    @abc.abstractmethod
    def console_set_account(
        self, name: str, *, password_hash: str | None = None, role: str | None = None
    ) -> None:
        """Change a password (which ends the account's sessions) or a role; NotFound."""

    @abc.abstractmethod
    def console_remove_account(self, name: str) -> None:
        """Remove an account and its sessions; NotFound."""

    @abc.abstractmethod
    def console_accounts(self) -> list[Account]: ...

    @abc.abstractmethod
    def console_account(self, name: str) -> Account | None: ...

    @abc.abstractmethod
    def console_start_session(
        self, token_hash: str, account: str, csrf: str, when: float, expires: float
    ) -> None: ...

    @abc.abstractmethod
    def console_session(self, token_hash: str, now: float) -> ConsoleSession | None:
        """The live session with this token hash (None when unknown or expired)."""

    @abc.abstractmethod
    def console_end_session(self, token_hash: str) -> None: ...

    @abc.abstractmethod
    def console_audit(
        self, who: str, action: str, target: str | None, detail: str | None, when: float
    ) -> int: ...

    @abc.abstractmethod
    def console_audit_log(self, *, limit: int = 200) -> list[AuditEntry]:
        """Newest first."""

    @abc.abstractmethod
    def console_device(self, name: str) -> Device | None: ...

    def console_devices_named(self, names: Collection[str]) -> dict[str, Device | None]:
        """`console_device` of each name, at once (supervision takes a page of its inbox
        at a time: one trip to the store's thread for its devices, not one each)."""
        return {name: self.console_device(name) for name in names}

    @abc.abstractmethod
    def console_outbox_counts(self) -> tuple[int, int]:
        """Notifications pending, and failed for good."""

    @abc.abstractmethod
    def console_device_states(
        self, now: float, *, limit: int = 50
    ) -> tuple[dict[str, int], list[tuple[str, str, float]]]:
        """Devices judged from their last call alone (as receiver.web.sources.judge
        does, in the database): counts by state, and the `limit` most overdue late or
        down devices as (name, state, deadline)."""

    @abc.abstractmethod
    def console_devices(
        self,
        now: float,
        *,
        state: str | None = None,
        site: str | None = None,
        customer: str | None = None,
        text: str | None = None,
        sort: str = "name",
        offset: int = 0,
        limit: int = 200,
    ) -> tuple[list[tuple[Device, str, float | None]], int]:
        """One page of devices with their state and deadline judged as
        `console_device_states` does, filtered and sorted (CONSOLE_SORTS), and how many
        match in all."""

    @abc.abstractmethod
    def console_sites(self) -> list[str]: ...

    @abc.abstractmethod
    def console_customers(self) -> list[str]: ...

    @abc.abstractmethod
    def console_supervision_states(
        self, now: float, *, limit: int = 50
    ) -> tuple[dict[str, int], list[tuple[str, str, float | None]]]:
        """Devices in supervision's states (`supervised_sql`): counts by state, and the
        `limit` late or down devices, most overdue first, as (name, state, deadline)."""

    @abc.abstractmethod
    def console_supervised_devices(
        self,
        now: float,
        *,
        state: str | None = None,
        site: str | None = None,
        customer: str | None = None,
        text: str | None = None,
        path: str | None = None,
        sort: str = "name",
        offset: int = 0,
        limit: int = 200,
    ) -> tuple[list[tuple[Device, str, float | None, str | None]], int]:
        """`console_devices` with supervision's states (`supervised_sql`), and each
        device's `extra` JSON; `path`: only devices heard on that path (a name of
        `PATH_NAME` form), or "failed": only those with a failed path."""


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

_STEP_3_SUN_OUTBOX = """
CREATE TABLE IF NOT EXISTS sun_outbox (
    id INTEGER PRIMARY KEY,
    outbox_key TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    sent_at REAL,
    failed_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sun_outbox_pending ON sun_outbox(next_attempt)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE TABLE IF NOT EXISTS sun_escalations (
    incident_id INTEGER NOT NULL,
    policy TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (incident_id, policy)
);
CREATE TABLE IF NOT EXISTS sun_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
"""Follow the sun: the notification outbox (written before it is sent, marked when
done), the escalations in progress (so a restart resumes a wait), and small state."""


@dataclass(frozen=True)
class OutboxItem:
    """A notification to queue (follow the sun)."""

    outbox_key: str
    idempotency_key: str
    channel: str
    address: str
    recipient: str
    subject: str
    body: str
    payload: str
    """JSON."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    item: OutboxItem
    created_at: float
    attempts: int
    next_attempt: float
    sent_at: float | None
    failed_at: float | None
    last_error: str | None


_STEP_4_CONSOLE = """
CREATE TABLE IF NOT EXISTS console_accounts (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES console_accounts(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS console_audit_at ON console_audit(at);
CREATE INDEX IF NOT EXISTS devices_deadline
    ON devices(coalesce(last_seen, enrolled_at) + test_interval + grace, test_interval, name)
    WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS devices_never ON devices(enrolled_at) WHERE last_seen IS NULL;
CREATE INDEX IF NOT EXISTS devices_revoked ON devices(revoked_at) WHERE revoked_at IS NOT NULL;
"""
"""The operator console: accounts (Argon2 hashes, a role), sessions (the SHA-256 of the
cookie, never the cookie itself) and the audit log of every action; and the index of
each device's next deadline, so the overview finds the late among 100,000 devices
without judging every one."""


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    role: str
    created_at: float


@dataclass(frozen=True)
class ConsoleSession:
    account: Account
    csrf: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    who: str
    action: str
    target: str | None
    detail: str | None


ASSIGNABLE = ("site", "customer")
"""The attributes of a device `Store.assign` sets (column names: never user input)."""

CONSOLE_SORTS = {
    "name": "name",
    "state": "CASE state WHEN 'down' THEN 0 WHEN 'late' THEN 1 WHEN 'never' THEN 2 "
    "WHEN 'ok' THEN 3 ELSE 4 END, name",
    "site": "site IS NULL, site, name",
    "customer": "customer IS NULL, customer, name",
    "last_call": "last_seen IS NULL, last_seen DESC, name",
    "deadline": "deadline IS NULL, deadline, name",
}
"""How the console's device list sorts (the SQL of each key: never user input)."""

SUPERVISION_STATE_NAMES = {0: "never", 1: "ok", 2: "late", 3: "down", 4: "ok", 5: "on test"}
"""Supervision's kept states (receiver.supervision.engine.State, by value) in the
console's words; 6 (retired) and a revoked device read "revoked". receiver.supervision
.console checks this against the engine's states."""


_SUPERVISED_SOURCE = "devices d LEFT JOIN supervision s ON s.device_id = d.id"


def supervised_sql(p: str, source: str = _SUPERVISED_SOURCE) -> str:
    """The devices with the state the console shows (columns: the device's, `state`,
    `deadline`), for both backends (`p`: the placeholder; the query takes `now` twice):
    supervision's kept state where it has one; where it has none yet (a device it has
    not judged, or a centre run without supervision), judged from the last call as
    `console_device_states` does; `extra`, supervision's JSON of the rare parts (the
    paths). The deadline of a supervised device is its last
    message plus its interval (None for a daily schedule, a test, a revoked device)."""
    judged_deadline = "coalesce(d.last_seen, d.enrolled_at) + d.test_interval + d.grace"
    names = " ".join(
        f"WHEN {value} THEN '{name}'" for value, name in SUPERVISION_STATE_NAMES.items()
    )
    columns = ", ".join(f"d.{c.strip()}" for c in _DEVICE_COLUMNS.split(","))
    return (
        f"SELECT {columns}, CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked' "
        f"WHEN s.state IS NULL THEN CASE WHEN {p} <= {judged_deadline} "
        "THEN CASE WHEN d.last_seen IS NULL THEN 'never' ELSE 'ok' END "
        f"WHEN {p} <= {judged_deadline} + 2 * d.test_interval THEN 'late' ELSE 'down' END "
        f"ELSE CASE s.state {names} ELSE 'revoked' END END AS state, "
        "CASE WHEN d.revoked_at IS NOT NULL THEN NULL "
        f"WHEN s.state IS NULL THEN {judged_deadline} "
        "WHEN s.state IN (0, 1, 2, 3, 4) AND s.schedule IS NULL "
        "THEN s.last + d.test_interval END AS deadline, s.extra AS extra "
        f"FROM {source}"
    )


_UNSUPERVISED = (
    "devices d CROSS JOIN (SELECT CAST(NULL AS INTEGER) AS state, CAST(NULL AS TEXT) AS "
    "schedule, CAST(NULL AS DOUBLE PRECISION) AS last, CAST(NULL AS TEXT) AS extra) s"
)
"""Devices as `supervised_sql` reads one supervision kept nothing for, without a join."""


def supervised_state_sql(p: str, state: str | None) -> tuple[str, int]:
    """`supervised_sql` for a list filtered by `state`, and how many times it takes
    `now`: only the devices that may be in that state, each found through an index
    (supervision's by state, the deadline's for the overdue it has no row for, the
    revoked's), rather than every device joined with its row and judged. The list's
    own `state = ...` filter still decides; these are candidates. A state most devices
    are in (ok), or none: `supervised_sql` itself."""
    if state not in ("late", "down", "never", "on test", "revoked"):
        return supervised_sql(p), 2
    codes = [str(v) for v, name in SUPERVISION_STATE_NAMES.items() if name == state]
    deadline = "coalesce(d.last_seen, d.enrolled_at) + d.test_interval + d.grace"
    # per device, a look-up of supervision's key (an anti-join hashes the whole table)
    unsupervised = "(SELECT count(*) FROM supervision x WHERE x.device_id = d.id) = 0"
    if state == "revoked":  # revoked devices, and those supervision retired
        known = ", ".join(str(v) for v in SUPERVISION_STATE_NAMES)
        branches = [
            (_SUPERVISED_SOURCE + " WHERE d.revoked_at IS NOT NULL", 0),
            (
                "(SELECT * FROM supervision WHERE state NOT IN "
                f"({known})) s JOIN devices d ON d.id = s.device_id WHERE d.revoked_at IS NULL",
                0,
            ),
        ]
    else:
        branches = [
            (
                f"(SELECT * FROM supervision WHERE state IN ({', '.join(codes)})) s "
                "JOIN devices d ON d.id = s.device_id",
                0,
            ),
        ]
    if state in ("late", "down"):  # judged from the last call: overdue, so indexed
        branches.append(
            (
                f"{_UNSUPERVISED} WHERE d.revoked_at IS NULL AND {deadline} < {p} "
                f"AND {unsupervised}",
                1,
            )
        )
    elif state == "never":
        branches.append(
            (
                f"{_UNSUPERVISED} WHERE d.last_seen IS NULL AND d.revoked_at IS NULL "
                f"AND {unsupervised}",
                0,
            )
        )
    sql = " UNION ALL ".join(supervised_sql(p, source) for source, _ in branches)
    return sql, 2 * len(branches) + sum(n for _, n in branches)


PATH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
"""What the device list's path filter accepts as a path's name."""


def path_pattern(path: str) -> str:
    """The LIKE pattern of supervision's `extra` JSON (`persist.update_from_record`:
    sorted keys, json's separators) for devices heard on `path`, or with a failed path
    ("failed"). `path` matches PATH_NAME: no LIKE wildcards in it."""
    if not PATH_NAME.fullmatch(path):
        raise ValueError(f"not a path name: {path!r}")
    if path == "failed":
        return '%"failed_paths": [%'
    return '%"paths": {%"' + path + '": %}%'


def distinct_values(column: str) -> str:
    """The distinct values of a device column with an index over it (step 9), in order,
    for both backends: from one value to the next through the index (a look-up each),
    not DISTINCT over every device, which neither backend does without reading them
    all. `column`: "site" or "customer" (never user input)."""
    return (
        f"WITH RECURSIVE v(x) AS (SELECT min({column}) FROM devices "
        f"WHERE {column} IS NOT NULL UNION ALL SELECT (SELECT min({column}) FROM devices "
        f"WHERE {column} IS NOT NULL AND {column} > v.x) "
        "FROM v WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL"
    )


_SQLITE_NAME_CONTAINS = "instr(lower(name), lower(?)) > 0"
"""SQLite's "name contains": lower() folds ASCII only."""


def device_list_page(
    read: Callable[[str, tuple[Any, ...]], list[Any]],
    p: str,
    listed: str,
    name_contains: str,
    now: float,
    *,
    state: str | None,
    site: str | None,
    text: str | None,
    path: str | None = None,
    customer: str | None = None,
    sort: str,
    offset: int,
    limit: int,
    nows: int = 2,
) -> tuple[list[Any], int]:
    """One page of the console's device list, for both backends: the rows of `listed`
    (a query taking `now` `nows` times, with `state` and `extra` columns when `path` is
    used) filtered and sorted (`CONSOLE_SORTS`), and how many match in all. `p` is the
    placeholder; `name_contains` the dialect's "name contains `p`" test (both fold
    ASCII only)."""
    clauses: list[str] = []
    args: list[Any] = [now] * nows
    for clause, value in (
        (f"state = {p}", state),
        (f"site = {p}", site),
        (f"customer = {p}", customer),
        (name_contains, text),
        (f"extra LIKE {p}", path_pattern(path) if path else None),
    ):
        if value:
            clauses.append(clause)
            args.append(value)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    if clauses:
        # filtered: the page and the count in one pass over the matching rows (a
        # separate count would judge them all again)
        counted = read(
            f"SELECT *, count(*) OVER () FROM ({listed}) listed {where} "
            f"ORDER BY {CONSOLE_SORTS[sort]} LIMIT {p} OFFSET {p}",
            (*args, limit, offset),
        )
        if counted or not offset:
            return [row[:-1] for row in counted], int(counted[0][-1]) if counted else 0
    # unfiltered (the first page stops early in the sort's index), or past the end
    total = read(f"SELECT count(*) FROM ({listed}) listed {where}", tuple(args))[0][0]
    rows = read(
        f"SELECT * FROM ({listed}) listed {where} "
        f"ORDER BY {CONSOLE_SORTS[sort]} LIMIT {p} OFFSET {p}",
        (*args, limit, offset),
    )
    return rows, int(total)


def supervision_states(
    read: Callable[[str, tuple[Any, ...]], list[Any]],
    p: str,
    now: float,
    limit: int,
    *,
    never_index: str = "",
) -> tuple[dict[str, int], list[tuple[str, str, float | None]]]:
    """`Store.console_supervision_states` for both backends (`read`: the store's,
    `p`: its placeholder; `never_index`: how to make SQLite read the index of devices
    never heard from), as `supervised_sql` judges, without judging every device:
    supervision's table counted by state (one scan of a narrow table, no join); the
    devices it has no row for judged from the deadline index's range of overdue ones
    and the index of those never heard from, as `console_device_states` does. A few
    reads, so the counts may be a call apart under a busy bank."""
    deadline = "coalesce(last_seen, enrolled_at) + test_interval + grace"  # the index's
    # per device, a look-up of supervision's key: not an anti-join, which PostgreSQL
    # plans as a hash of the whole table for the few overdue devices
    unsupervised = "(SELECT count(*) FROM supervision s WHERE s.device_id = devices.id) = 0"
    verdict = f"CASE WHEN {p} <= {deadline} + 2 * test_interval THEN 'late' ELSE 'down' END"
    overdue = f"FROM devices WHERE revoked_at IS NULL AND {deadline} < {p} AND {unsupervised}"
    total, revoked = read(
        "SELECT (SELECT count(*) FROM devices), "
        "(SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL)",
        (),
    )[0]
    kept = {
        int(state): int(n)
        for state, n in read("SELECT state, count(*) FROM supervision GROUP BY state", ())
    }
    kept_revoked = {
        int(state): int(n)
        for state, n in read(
            # CROSS JOIN: SQLite then reads the few revoked devices first, whatever its
            # statistics say (PostgreSQL plans it as any join)
            "SELECT s.state, count(*) FROM devices d CROSS JOIN supervision s "
            "WHERE s.device_id = d.id AND d.revoked_at IS NOT NULL GROUP BY s.state",
            (),
        )
    }
    counts: dict[str, int] = {"revoked": int(revoked)}
    for state, n in kept.items():
        name = SUPERVISION_STATE_NAMES.get(state, "revoked")  # retired reads revoked
        counts[name] = counts.get(name, 0) + n - kept_revoked.get(state, 0)
    rest = int(total) - int(revoked) - (sum(kept.values()) - sum(kept_revoked.values()))
    judged: dict[str, int] = {}
    never = 0
    if rest:  # devices supervision has kept nothing for (none once it has heard them all)
        judged = dict(
            read(f"SELECT {verdict} AS state, count(*) {overdue} GROUP BY state", (now, now))
        )
        never = read(
            f"SELECT count(*) FROM devices {never_index} WHERE last_seen IS NULL "
            "AND revoked_at IS NULL "
            f"AND {deadline} >= {p} AND {unsupervised}",
            (now,),
        )[0][0]
    late, down = int(judged.get("late", 0)), int(judged.get("down", 0))
    for name, n in (("late", late), ("down", down), ("never", int(never))):
        counts[name] = counts.get(name, 0) + n
    counts["ok"] = counts.get("ok", 0) + rest - late - down - int(never)
    rows: list[Any] = []
    if limit > 0:
        rows = read(
            # the late and down of supervision's index, each device looked up by its key
            # (both backends would otherwise join a scan of every device)
            "SELECT name, state, deadline FROM ("
            "SELECT (SELECT d.name FROM devices d WHERE d.id = s.device_id "
            "AND d.revoked_at IS NULL) AS name, "
            "CASE s.state WHEN 2 THEN 'late' ELSE 'down' END AS state, "
            "CASE WHEN s.schedule IS NULL THEN s.last + (SELECT d.test_interval FROM devices d "
            "WHERE d.id = s.device_id) END AS deadline "
            "FROM supervision s WHERE s.state IN (2, 3) "
            + (f"UNION ALL SELECT name, {verdict}, {deadline} {overdue}" if rest else "")
            + f") t WHERE name IS NOT NULL ORDER BY deadline IS NULL, deadline, name LIMIT {p}",
            (now, now, limit) if rest else (limit,),
        )
    return {k: v for k, v in counts.items() if v}, [
        (str(a), str(b), None if c is None else float(c)) for a, b, c in rows
    ]


_STEP_5_CALL_PATH = "ALTER TABLE calls ADD COLUMN path TEXT NOT NULL DEFAULT 'modem';"
"""Which path a call took: "modem" or "ip" (a message's is its call's)."""
_STEP_6_SUPERVISION = """
CREATE TABLE supervision (
    device_id INTEGER PRIMARY KEY REFERENCES devices(id),
    state INTEGER NOT NULL,
    since REAL NOT NULL,
    last REAL NOT NULL,
    line_tests_only INTEGER NOT NULL DEFAULT 0,
    schedule TEXT,
    extra TEXT,
    last_port TEXT,
    last_caller TEXT,
    attributes TEXT
);
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    key TEXT NOT NULL,
    summary TEXT NOT NULL,
    device TEXT,
    status TEXT NOT NULL,
    opened_at REAL NOT NULL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    resolved_at REAL,
    resolved_by TEXT,
    members TEXT NOT NULL DEFAULT '{}',
    attributes TEXT NOT NULL DEFAULT '{}',
    last_notified REAL,
    pending_since REAL
);
CREATE INDEX incidents_status ON incidents(status, id);
CREATE TABLE incident_timeline (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    at REAL NOT NULL,
    what TEXT NOT NULL,
    text TEXT NOT NULL,
    by TEXT,
    device TEXT
);
CREATE INDEX incident_timeline_incident ON incident_timeline(incident_id, at);
CREATE TABLE supervision_outbox (id INTEGER PRIMARY KEY, event TEXT NOT NULL);
CREATE TABLE supervision_commands (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, command TEXT NOT NULL
);
"""
"""Supervision (receiver/supervision): each device's state, incidents and their
timelines, incident events not yet delivered, operators' commands for the engine."""

_STEP_7_SITES = """
ALTER TABLE calls ADD COLUMN receiver TEXT;
CREATE INDEX calls_open ON calls(outcome, receiver);
CREATE TABLE supervision_inbox (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, receiver TEXT NOT NULL, event TEXT NOT NULL
);
CREATE TABLE receiver_leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL, at REAL NOT NULL
);
"""
"""Several receivers on one store (docs/operations.md, "Several sites"): which receiver
answered each call (each closes only its own open calls at start), what the receivers
that do not run supervision hand to the one that does, and the epoch of each lease
(the fence: a receiver whose lease was taken over cannot write as its holder)."""
_STEP_8_SUPERVISION_STATES = "CREATE INDEX supervision_state ON supervision(state);"
"""The console counts devices by supervision's state and lists the late and down ones
(`supervision_states`) from this index rather than from every row of the table."""

_STEP_9_CUSTOMER = """
ALTER TABLE devices ADD COLUMN customer TEXT;
CREATE INDEX devices_site ON devices(site) WHERE site IS NOT NULL;
CREATE INDEX devices_customer ON devices(customer) WHERE customer IS NOT NULL;
"""
"""Whose each device is: set by `enroll --customer` and `assign`, shown and filtered by
the console, and matched by follow-the-sun's routes (an incident's `customer`). The
indexes give the console's list its sites and customers (`distinct_values`) without
reading every device, and serve its filters."""

MIGRATIONS: tuple[str, ...] = (
    _SCHEMA_1,
    _STEP_2_SECURITY_COUNTERS,
    _STEP_3_SUN_OUTBOX,
    _STEP_4_CONSOLE,
    _STEP_5_CALL_PATH,
    _STEP_6_SUPERVISION,
    _STEP_7_SITES,
    _STEP_8_SUPERVISION_STATES,
    _STEP_9_CUSTOMER,
)
"""The store's schema, step by step (see `Database.migrations`); a PostgreSQL store
applies the same steps."""

_DEVICE_COLUMNS = (
    "id, name, public_key, enrolled_at, revoked_at, test_interval, grace, "
    "site, last_counter, last_seen, customer"
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
        self,
        name: str,
        public_key: bytes,
        *,
        test_interval: float,
        grace: float,
        site: str | None,
        customer: str | None = None,
    ) -> Device:
        now = time.time()
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO devices (name, public_key, enrolled_at, test_interval, grace, "
                    "site, customer) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, public_key, now, test_interval, grace, site, customer),
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

    def assign(self, name: str, attributes: Mapping[str, str | None]) -> Device:
        unknown = set(attributes) - set(ASSIGNABLE)
        if unknown:
            raise ValueError(f"not a device attribute: {', '.join(sorted(unknown))}")
        if attributes:
            columns = ", ".join(f"{column} = ?" for column in attributes)  # ASSIGNABLE's
            values = tuple(value or None for value in attributes.values())
            with self._write() as db:
                db.execute(f"UPDATE devices SET {columns} WHERE name = ?", (*values, name))
        device = self._device("name = ?", (name,))
        if device is None:
            raise NotFound(f"no device named {name!r}")
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
            return _advance_counter(db, AdvanceCounter(device_id, counter, when))

    # -- calls ---------------------------------------------------------------------------

    def start_call(
        self, port: str, caller_id: str | None, started: float, path: str = "modem"
    ) -> int:
        with self._write() as db:
            return _start_call(db, StartCall(port, caller_id, started, path, self.receiver))

    def finish_call(
        self,
        call_id: int,
        end: CallEnd,
    ) -> None:
        with self._write() as db:
            _finish_call(db, FinishCall(call_id, end))

    def close_open_calls(self, when: float, receiver: str | None = None) -> int:
        mine = "" if receiver is None else " AND (receiver = ? OR receiver IS NULL)"
        with self._write() as db:
            closed = db.execute(
                "UPDATE calls SET ended = max(?, started), outcome = ?, error = coalesce(error, ?) "
                "WHERE outcome = ?" + mine,
                (when, INTERRUPTED, "the receiver stopped before the call ended", IN_PROGRESS)
                + (() if receiver is None else (receiver,)),
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
            + ", c.path, c.receiver FROM calls c "
            + f"LEFT JOIN devices d ON d.id = c.device_id {where} "
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
        handover: str | None = None,
    ) -> bool:
        op = StoreMessage(
            device_id,
            epoch,
            seq,
            kind,
            content,
            summary,
            call_id,
            received_at,
            handover,
            self.receiver,
        )
        with self._write() as db:
            return _store_message(db, op)

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
            _append_partial(db, AppendPartial(device_id, epoch, seq, offset, data))

    def apply_batch(self, operations: Sequence[Operation]) -> list[Any]:
        """All in one transaction (one fsync). An operation that fails on its own (a
        constraint) must not cost the others: the batch is then applied one by one."""
        if not operations:
            return []
        try:
            with self._write() as db:
                return [_APPLY[type(op)](db, op) for op in operations]
        except StoreUnavailable:
            raise  # the disk, not an operation: every one of them failed
        except Exception:
            return super().apply_batch(operations)

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
            "m.received_at, m.call_id, m.content, c.path FROM messages m "
            f"JOIN devices d ON d.id = m.device_id LEFT JOIN calls c ON c.id = m.call_id {where} "
            "ORDER BY m.received_at DESC, m.id DESC LIMIT ?",
            (*args, limit),
        )
        return [StoredMessage(*row) for row in rows]

    # -- follow the sun ------------------------------------------------------------------

    def sun_commit(
        self,
        notifications: Collection[OutboxItem],
        saved: Collection[tuple[int, str, str]],
        deleted: Collection[tuple[int, str]],
        when: float,
        state: Mapping[str, str] | None = None,
    ) -> int:
        queued = 0
        with self._write() as db:
            self._check_fence(db)
            for item in notifications:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO sun_outbox (outbox_key, idempotency_key, channel, "
                    "address, recipient, subject, body, payload, created_at, next_attempt) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.outbox_key,
                        item.idempotency_key,
                        item.channel,
                        item.address,
                        item.recipient,
                        item.subject,
                        item.body,
                        item.payload,
                        when,
                        when,
                    ),
                )
                queued += cursor.rowcount
            for incident_id, policy, text in saved:
                db.execute(
                    "INSERT INTO sun_escalations (incident_id, policy, state, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, policy) DO UPDATE SET "
                    "state = excluded.state, updated_at = excluded.updated_at",
                    (incident_id, policy, text, when),
                )
            for incident_id, policy in deleted:
                db.execute(
                    "DELETE FROM sun_escalations WHERE incident_id = ? AND policy = ?",
                    (incident_id, policy),
                )
            for name, value in (state or {}).items():
                db.execute(
                    "INSERT INTO sun_state (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )
        return queued

    def sun_escalations(self) -> list[tuple[int, str, str]]:
        rows = self._read(
            "SELECT incident_id, policy, state FROM sun_escalations ORDER BY incident_id, policy"
        )
        return [(int(a), str(b), str(c)) for a, b, c in rows]

    def sun_state(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM sun_state WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    _OUTBOX_COLUMNS = (
        "id, outbox_key, idempotency_key, channel, address, recipient, subject, body, "
        "payload, created_at, attempts, next_attempt, sent_at, failed_at, last_error"
    )

    @staticmethod
    def _outbox_row(row: Any) -> OutboxRow:
        return OutboxRow(row[0], OutboxItem(*row[1:9]), *row[9:])

    def outbox_due(
        self, now: float, limit: int = 50, claim: float | None = None
    ) -> list[OutboxRow]:
        rows = self._read(
            f"SELECT {self._OUTBOX_COLUMNS} FROM sun_outbox WHERE sent_at IS NULL AND "
            "failed_at IS NULL AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
            (now, limit),
        )
        return [self._outbox_row(row) for row in rows]

    def outbox_attempt(
        self,
        row_id: int,
        when: float,
        *,
        sent: bool,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        with self._write() as db:
            if sent:
                db.execute(
                    "UPDATE sun_outbox SET attempts = attempts + 1, sent_at = ?, "
                    "last_error = NULL WHERE id = ?",
                    (when, row_id),
                )
            elif retry_at is not None:
                db.execute(
                    "UPDATE sun_outbox SET attempts = attempts + 1, next_attempt = ?, "
                    "last_error = ? WHERE id = ?",
                    (retry_at, error, row_id),
                )
            else:
                db.execute(
                    "UPDATE sun_outbox SET attempts = attempts + 1, failed_at = ?, "
                    "last_error = ? WHERE id = ?",
                    (when, error, row_id),
                )

    def outbox(self, *, pending: bool = False, limit: int = 100) -> list[OutboxRow]:
        where = "WHERE sent_at IS NULL AND failed_at IS NULL " if pending else ""
        rows = self._read(
            f"SELECT {self._OUTBOX_COLUMNS} FROM sun_outbox {where}ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [self._outbox_row(row) for row in rows]

    # -- supervision ---------------------------------------------------------------------

    def supervision_rows(self, device: str | None = None) -> list[SupervisionRow]:
        where = "WHERE d.name = ?" if device is not None else ""
        rows = self._read(
            "SELECT d.name, d.id, d.test_interval, d.grace, d.enrolled_at, d.revoked_at, "
            "d.site, s.state, s.since, s.last, coalesce(s.line_tests_only, 0), s.schedule, "
            "s.extra, s.last_port, s.last_caller, s.attributes, d.customer "
            f"FROM devices d LEFT JOIN supervision s ON s.device_id = d.id {where} ORDER BY d.id",
            () if device is None else (device,),
        )
        return list(map(SupervisionRow._make, rows))  # line_tests_only: 0 or 1

    def take_lease(self, name: str, holder: str, when: float) -> Fence:
        with self._write() as db:
            row = db.execute(
                "INSERT INTO receiver_leases (name, holder, epoch, at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "epoch = receiver_leases.epoch + 1, at = excluded.at RETURNING epoch",
                (name, holder, when),
            ).fetchone()
        return Fence(name, int(row[0]))

    def lease_holder(self, name: str) -> tuple[str, int, float] | None:
        rows = self._read("SELECT holder, epoch, at FROM receiver_leases WHERE name = ?", (name,))
        return (str(rows[0][0]), int(rows[0][1]), float(rows[0][2])) if rows else None

    def _check_fence(self, db: sqlite3.Connection) -> None:
        """Inside a write transaction (SQLite's are one at a time)."""
        fence = self.fence
        if fence is None:
            return
        row = db.execute(
            "SELECT epoch FROM receiver_leases WHERE name = ?", (fence.name,)
        ).fetchone()
        if row is None or int(row[0]) != fence.epoch:
            raise LeaseLost(f"the lease {fence.name!r} was taken over (epoch {fence.epoch})")

    def supervision_inbox_put(self, receiver: str, at: float, event: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO supervision_inbox (at, receiver, event) VALUES (?, ?, ?)",
                (at, receiver, event),
            )

    def supervision_inbox(self, limit: int = 1000, after: int = 0) -> list[tuple[int, str]]:
        rows = self._read(
            "SELECT id, event FROM supervision_inbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [(int(i), str(e)) for i, e in rows]

    def save_supervision(self, batch: SupervisionBatch) -> None:
        with self._write() as db:
            self._check_fence(db)
            db.executemany(
                "DELETE FROM supervision_inbox WHERE id = ?", [(i,) for i in batch.inbox_done]
            )
            db.executemany(
                "INSERT INTO supervision (device_id, state, since, last, line_tests_only, "
                "schedule, extra, last_port, last_caller, attributes) "
                "SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM devices WHERE name = ? "
                "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, "
                "since = excluded.since, last = excluded.last, "
                "line_tests_only = excluded.line_tests_only, schedule = excluded.schedule, "
                "extra = excluded.extra, "
                "last_port = coalesce(excluded.last_port, last_port), "
                "last_caller = coalesce(excluded.last_caller, last_caller), "
                "attributes = coalesce(excluded.attributes, attributes)",
                [
                    (
                        u.state,
                        u.since,
                        u.last,
                        int(u.line_tests_only),
                        u.schedule,
                        u.extra,
                        u.last_port,
                        u.last_caller,
                        u.attributes,
                        u.device,
                    )
                    for u in batch.devices
                ],
            )
            db.executemany(
                f"INSERT OR REPLACE INTO incidents ({_INCIDENT_COLUMNS}) "
                f"VALUES ({', '.join('?' for _ in IncidentRow.__dataclass_fields__)})",
                [
                    tuple(getattr(i, name) for name in IncidentRow.__dataclass_fields__)
                    for i in batch.incidents
                ],
            )
            db.executemany(
                "INSERT INTO incident_timeline (incident_id, at, what, text, by, device) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(t.incident_id, t.at, t.what, t.text, t.by, t.device) for t in batch.timeline],
            )
            db.executemany(
                "INSERT INTO supervision_outbox (event) VALUES (?)", [(e,) for e in batch.outbox]
            )
            db.executemany(
                "INSERT INTO supervision_commands (at, command) VALUES (?, ?)", batch.commands
            )

    def incident_rows(
        self,
        *,
        status: Collection[str] | None = None,
        incident_id: int | None = None,
        limit: int = 100,
    ) -> list[IncidentRow]:
        clauses: list[str] = []
        args: list[Any] = []
        if status is not None:
            clauses.append(f"status IN ({', '.join('?' * len(status))})")
            args.extend(status)
        if incident_id is not None:
            clauses.append("id = ?")
            args.append(incident_id)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._read(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents {where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [IncidentRow(*row) for row in rows]

    def incident_timeline(self, incident_id: int) -> list[TimelineRow]:
        rows = self._read(
            "SELECT incident_id, at, what, text, by, device FROM incident_timeline "
            "WHERE incident_id = ? ORDER BY at, id",
            (incident_id,),
        )
        return [TimelineRow(*row) for row in rows]

    def max_incident_id(self) -> int:
        return int(self._read("SELECT coalesce(max(id), 0) FROM incidents")[0][0])

    def supervision_outbox(self) -> list[tuple[int, str]]:
        return [
            (int(i), str(e))
            for i, e in self._read("SELECT id, event FROM supervision_outbox ORDER BY id")
        ]

    def supervision_outbox_done(self, ids: Collection[int]) -> None:
        with self._write() as db:
            self._check_fence(db)
            db.executemany("DELETE FROM supervision_outbox WHERE id = ?", [(i,) for i in ids])

    def supervision_commands(self, after: int) -> list[tuple[int, str]]:
        return [
            (int(i), str(c))
            for i, c in self._read(
                "SELECT id, command FROM supervision_commands WHERE id > ? ORDER BY id", (after,)
            )
        ]

    # -- the operator console ------------------------------------------------------------

    def console_add_account(self, name: str, password_hash: str, role: str, when: float) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO console_accounts (name, password_hash, role, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (name, password_hash, role, when),
                )
        except ConstraintViolation:
            raise AlreadyExists(f"an account named {name!r} already exists") from None

    def console_set_account(
        self, name: str, *, password_hash: str | None = None, role: str | None = None
    ) -> None:
        with self._write() as db:
            changed = db.execute(
                "UPDATE console_accounts SET password_hash = coalesce(?, password_hash), "
                "role = coalesce(?, role) WHERE name = ?",
                (password_hash, role, name),
            ).rowcount
            if password_hash is not None:
                # a new password logs every browser of the account out
                db.execute("DELETE FROM console_sessions WHERE account = ?", (name,))
        if not changed:
            raise NotFound(f"no account named {name!r}")

    def console_remove_account(self, name: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM console_sessions WHERE account = ?", (name,))
            changed = db.execute("DELETE FROM console_accounts WHERE name = ?", (name,)).rowcount
        if not changed:
            raise NotFound(f"no account named {name!r}")

    def console_accounts(self) -> list[Account]:
        rows = self._read(
            "SELECT name, password_hash, role, created_at FROM console_accounts ORDER BY name"
        )
        return [Account(*row) for row in rows]

    def console_account(self, name: str) -> Account | None:
        rows = self._read(
            "SELECT name, password_hash, role, created_at FROM console_accounts WHERE name = ?",
            (name,),
        )
        return Account(*rows[0]) if rows else None

    def console_start_session(
        self, token_hash: str, account: str, csrf: str, when: float, expires: float
    ) -> None:
        with self._write() as db:
            db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (when,))
            db.execute(
                "INSERT INTO console_sessions (token_hash, account, csrf, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?)",
                (token_hash, account, csrf, when, expires),
            )

    def console_session(self, token_hash: str, now: float) -> ConsoleSession | None:
        rows = self._read(
            "SELECT a.name, a.password_hash, a.role, a.created_at, s.csrf, s.created_at, "
            "s.expires_at FROM console_sessions s JOIN console_accounts a ON a.name = s.account "
            "WHERE s.token_hash = ? AND s.expires_at > ?",
            (token_hash, now),
        )
        if not rows:
            return None
        row = rows[0]
        return ConsoleSession(Account(*row[:4]), *row[4:])

    def console_end_session(self, token_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

    def console_audit(
        self, who: str, action: str, target: str | None, detail: str | None, when: float
    ) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO console_audit (at, who, action, target, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (when, who, action, target, detail),
            )
        return int(cursor.lastrowid or 0)

    def console_audit_log(self, *, limit: int = 200) -> list[AuditEntry]:
        rows = self._read(
            "SELECT id, at, who, action, target, detail FROM console_audit "
            "ORDER BY at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEntry(*row) for row in rows]

    def console_device(self, name: str) -> Device | None:
        return self._device("name = ?", (name,))

    def console_outbox_counts(self) -> tuple[int, int]:
        rows = self._read(
            "SELECT coalesce(sum(sent_at IS NULL AND failed_at IS NULL), 0), "
            "coalesce(sum(failed_at IS NOT NULL), 0) FROM sun_outbox"
        )
        return int(rows[0][0]), int(rows[0][1])

    _DEADLINE = "coalesce(last_seen, enrolled_at) + test_interval + grace"
    """Must read exactly as in the devices_deadline index, or SQLite will not use it."""

    def console_device_states(
        self, now: float, *, limit: int = 50
    ) -> tuple[dict[str, int], list[tuple[str, str, float]]]:
        deadline = self._DEADLINE
        troubled = f"FROM devices WHERE revoked_at IS NULL AND {deadline} < ?"  # indexed range
        verdict = f"CASE WHEN ? <= {deadline} + 2 * test_interval THEN 'late' ELSE 'down' END"
        # separate reads: counts may be a call apart under a busy bank, which a page
        # refreshed on every change can live with
        total = self._read("SELECT count(*) FROM devices")[0][0]
        revoked = self._read("SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL")[0][0]
        never = self._read(
            # few devices never called: their index, not the deadline's
            "SELECT count(*) FROM devices INDEXED BY devices_never WHERE last_seen IS NULL "
            "AND revoked_at IS NULL "
            f"AND {deadline} >= ?",
            (now,),
        )[0][0]
        counts = dict(
            self._read(f"SELECT {verdict} AS state, count(*) {troubled} GROUP BY state", (now, now))
        )
        rows = self._read(
            f"SELECT name, {verdict}, {deadline} {troubled} "
            f"ORDER BY {deadline}, test_interval, name LIMIT ?",  # the index's order
            (now, now, limit),
        )
        late, down = int(counts.get("late", 0)), int(counts.get("down", 0))
        result = {
            "ok": int(total) - int(revoked) - int(never) - late - down,
            "never": int(never),
            "late": late,
            "down": down,
            "revoked": int(revoked),
        }
        return result, [(str(a), str(b), float(c)) for a, b, c in rows]

    def console_devices(
        self,
        now: float,
        *,
        state: str | None = None,
        site: str | None = None,
        customer: str | None = None,
        text: str | None = None,
        sort: str = "name",
        offset: int = 0,
        limit: int = 200,
    ) -> tuple[list[tuple[Device, str, float | None]], int]:
        deadline = self._DEADLINE
        judged = (
            f"SELECT {_DEVICE_COLUMNS}, CASE WHEN revoked_at IS NOT NULL THEN 'revoked' "
            f"WHEN ? <= {deadline} THEN CASE WHEN last_seen IS NULL THEN 'never' ELSE 'ok' END "
            f"WHEN ? <= {deadline} + 2 * test_interval THEN 'late' ELSE 'down' END AS state, "
            f"CASE WHEN revoked_at IS NULL THEN {deadline} END AS deadline FROM devices"
        )
        rows, total = device_list_page(
            self._read,
            "?",
            judged,
            _SQLITE_NAME_CONTAINS,
            now,
            state=state,
            site=site,
            customer=customer,
            text=text,
            sort=sort,
            offset=offset,
            limit=limit,
        )
        return [(Device(*row[:11]), str(row[11]), row[12]) for row in rows], total

    def console_sites(self) -> list[str]:
        return [str(row[0]) for row in self._read(distinct_values("site"))]

    def console_customers(self) -> list[str]:
        return [str(row[0]) for row in self._read(distinct_values("customer"))]

    # -- the console over supervision's states --------------------------------------------

    def console_supervision_states(
        self, now: float, *, limit: int = 50
    ) -> tuple[dict[str, int], list[tuple[str, str, float | None]]]:
        return supervision_states(
            self._read, "?", now, limit, never_index="INDEXED BY devices_never"
        )

    def console_supervised_devices(
        self,
        now: float,
        *,
        state: str | None = None,
        site: str | None = None,
        customer: str | None = None,
        text: str | None = None,
        path: str | None = None,
        sort: str = "name",
        offset: int = 0,
        limit: int = 200,
    ) -> tuple[list[tuple[Device, str, float | None, str | None]], int]:
        listed, nows = supervised_state_sql("?", state)
        rows, total = device_list_page(
            self._read,
            "?",
            listed,
            _SQLITE_NAME_CONTAINS,
            now,
            nows=nows,
            state=state,
            site=site,
            customer=customer,
            text=text,
            path=path,
            sort=sort,
            offset=offset,
            limit=limit,
        )
        return [(Device(*row[:11]), str(row[11]), row[12], row[13]) for row in rows], total


# -- the writes, inside a transaction the caller holds ----------------------------------


def _advance_counter(db: sqlite3.Connection, op: AdvanceCounter) -> bool:
    changed = db.execute(
        "UPDATE devices SET last_counter = ?, last_seen = ? WHERE id = ? AND last_counter < ?",
        (op.counter, op.when, op.device_id, op.counter),
    ).rowcount
    return bool(changed)


def _start_call(db: sqlite3.Connection, op: StartCall) -> int:
    cursor = db.execute(
        "INSERT INTO calls (port, caller_id, started, path, receiver) VALUES (?, ?, ?, ?, ?)",
        (op.port, op.caller_id, op.started, op.path, op.receiver),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _finish_call(db: sqlite3.Connection, op: FinishCall) -> None:
    end = op.end
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
            *security_counters(end.security),
            op.call_id,
        ),
    )


def _store_message(db: sqlite3.Connection, op: StoreMessage) -> bool:
    changed = db.execute(
        "INSERT OR IGNORE INTO messages (device_id, epoch, seq, kind, severity, "
        "component, state, received_at, call_id, content) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            op.device_id,
            op.epoch,
            op.seq,
            op.kind,
            op.summary.get("severity"),
            op.summary.get("component"),
            op.summary.get("state"),
            op.received_at,
            op.call_id,
            op.content,
        ),
    ).rowcount
    # the partial copy goes in the transaction that stores the message: never left over
    db.execute(
        "DELETE FROM partial_chunks WHERE device_id = ? AND epoch = ? AND seq = ?",
        (op.device_id, op.epoch, op.seq),
    )
    if op.handover is not None:
        db.execute(
            "INSERT INTO supervision_inbox (at, receiver, event) VALUES (?, ?, ?)",
            (op.received_at, op.receiver or "", op.handover),
        )
    return bool(changed)


def _append_partial(db: sqlite3.Connection, op: AppendPartial) -> None:
    key = (op.device_id, op.epoch, op.seq)
    if db.execute(
        "SELECT 1 FROM messages WHERE device_id = ? AND epoch = ? AND seq = ?", key
    ).fetchone():
        return
    if op.offset == 0:
        db.execute("DELETE FROM partial_chunks WHERE device_id = ? AND epoch = ? AND seq = ?", key)
    # the end of the held prefix is the end of its last chunk (chunks are only ever
    # appended contiguously): one row by the primary key, not a sum over all of them
    row = db.execute(
        "SELECT offset + length(data) FROM partial_chunks WHERE device_id = ? AND "
        "epoch = ? AND seq = ? ORDER BY offset DESC LIMIT 1",
        key,
    ).fetchone()
    have = row[0] if row else 0
    if op.offset == have and op.data:
        db.execute(
            "INSERT INTO partial_chunks (device_id, epoch, seq, offset, data, "
            "stored_at) VALUES (?, ?, ?, ?, ?, ?)",
            (*key, op.offset, op.data, time.time()),
        )


_APPLY: dict[type, Callable[[sqlite3.Connection, Any], Any]] = {
    StartCall: _start_call,
    FinishCall: _finish_call,
    AdvanceCounter: _advance_counter,
    StoreMessage: _store_message,
    AppendPartial: _append_partial,
}


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
    that serves every port of the bank (and mypy checks every call).

    Group commit: the writes of the bank's hot path (calls started and finished,
    counters, messages, partial copies) are queued and committed together by one
    `Store.apply_batch`, one transaction and one fsync for all; each caller returns
    (and only then acknowledges) once the batch holding its own write has committed.
    While a batch commits, the next one gathers; when the store is idle, the first write
    waits up to `window` seconds for company, if the last batch had any (a lone caller,
    which always comes back right after its commit, is not made to wait for nobody).
    A batch holds at most `max_batch` writes or `max_bytes` of content.

    The reads of the same path (`device_by_key`, `partials`, `has_message`) ride the
    same trips to the store's thread: each one queued is run at the start of the next
    batch's trip (or at once, on a trip of its own, when nothing is committing), and
    answered as soon as it has run, before that batch's commit; a read that fails
    fails its own caller only. A call's handshake then costs no trip of its own while
    the store is busy."""

    def __init__(
        self,
        store: Store,
        *,
        window: float = 0.002,
        max_batch: int = 512,
        max_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.store = store
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "callhome-store")
        self.window = window
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._reads: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._pending_bytes = 0
        self._committing = False
        self._timer: asyncio.Handle | None = None
        self._last_batch = 1
        self.commits = 0
        """Batches committed (each one transaction: one fsync of the WAL)."""
        self.operations = 0
        """Writes committed in them."""
        self.reads = 0
        """Reads run on the trips of the batches (`_read`)."""
        self.trips = 0
        """Trips to the store's thread for reads and batches (each a thread hand-over
        both ways: what group commit saves)."""

    async def _submit(self, operation: Operation) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((operation, future))
        self._pending_bytes += _size(operation)
        if self._committing:
            pass  # the batch after the one committing now takes it
        elif len(self._pending) >= self.max_batch or self._pending_bytes >= self.max_bytes:
            self._commit_next(loop)
        elif self._timer is None:
            if self.window > 0 and self._last_batch > 1:
                self._timer = loop.call_later(self.window, self._commit_next, loop)
            else:
                self._timer = loop.call_soon(self._commit_next, loop)
        return await future

    async def _read(self, function: Callable[[], T]) -> T:
        """Run `function` (a read of the store) on the next trip to the store's thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._reads.append((function, future))
        if not self._committing and self._timer is None:
            self._timer = loop.call_soon(self._commit_next, loop)
        result: T = await future
        return result

    def _trip(
        self,
        loop: asyncio.AbstractEventLoop,
        reads: list[tuple[Callable[[], Any], asyncio.Future[Any]]],
        operations: list[Operation],
    ) -> list[Any]:
        """On the store's thread: the reads, answered at once, then the batch."""
        if reads:
            answers: list[Any] = []
            for function, _ in reads:
                try:
                    answers.append(function())
                except Exception as exc:
                    answers.append(exc)
            loop.call_soon_threadsafe(_settle, reads, answers)
        return self.store.apply_batch(operations) if operations else []

    def _commit_next(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._committing or not (self._pending or self._reads):
            return
        reads, self._reads = self._reads, []
        self.reads += len(reads)
        count = size = 0
        for operation, _ in self._pending:
            if count and (count >= self.max_batch or size >= self.max_bytes):
                break
            count += 1
            size += _size(operation)
        batch = self._pending[:count]
        del self._pending[:count]
        self._pending_bytes -= size
        self._committing = True
        self.trips += 1
        done = loop.run_in_executor(
            self._executor, self._trip, loop, reads, [operation for operation, _ in batch]
        )
        done.add_done_callback(lambda result: self._committed(loop, batch, result))

    def _committed(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Operation, asyncio.Future[Any]]],
        done: asyncio.Future[list[Any]],
    ) -> None:
        self._committing = False
        error = done.exception()
        results: list[Any] = [error] * len(batch) if error is not None else done.result()
        if batch:
            self._last_batch = len(batch)
            if error is None:
                self.commits += 1
                self.operations += len(batch)
        _settle(batch, results)
        if self._pending or self._reads:  # they waited a commit already: no window
            self._commit_next(loop)

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    # devices
    async def device_by_key(self, public_key: bytes) -> Device | None:
        return await self._read(functools.partial(self.store.device_by_key, public_key))

    async def device_and_partials(
        self, public_key: bytes, epoch: int
    ) -> tuple[Device | None, dict[int, bytes]]:
        return await self._read(
            functools.partial(self.store.device_and_partials, public_key, epoch)
        )

    async def advance_counter(self, device_id: int, counter: int, when: float) -> bool:
        return bool(await self._submit(AdvanceCounter(device_id, counter, when)))

    # calls
    async def start_call(
        self, port: str, caller_id: str | None, started: float, path: str = "modem"
    ) -> int:
        return int(
            await self._submit(StartCall(port, caller_id, started, path, self.store.receiver))
        )

    async def finish_call(
        self,
        call_id: int,
        end: CallEnd,
    ) -> None:
        await self._submit(FinishCall(call_id, end))

    async def close_open_calls(self, when: float, receiver: str | None = None) -> int:
        return await self._call(self.store.close_open_calls, when, receiver)

    # messages
    async def has_message(self, device_id: int, epoch: int, seq: int) -> bool:
        return await self._read(functools.partial(self.store.has_message, device_id, epoch, seq))

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
        handover: str | None = None,
    ) -> bool:
        return bool(
            await self._submit(
                StoreMessage(
                    device_id,
                    epoch,
                    seq,
                    kind,
                    content,
                    summary,
                    call_id,
                    received_at,
                    handover,
                    self.store.receiver,
                )
            )
        )

    async def partials(self, device_id: int, epoch: int) -> dict[int, bytes]:
        return await self._read(functools.partial(self.store.partials, device_id, epoch))

    async def append_partial(
        self, device_id: int, epoch: int, seq: int, offset: int, data: bytes
    ) -> None:
        await self._submit(AppendPartial(device_id, epoch, seq, offset, data))

    # follow the sun
    async def sun_commit(
        self,
        notifications: Collection[OutboxItem],
        saved: Collection[tuple[int, str, str]],
        deleted: Collection[tuple[int, str]],
        when: float,
        state: Mapping[str, str] | None = None,
    ) -> int:
        return await self._call(self.store.sun_commit, notifications, saved, deleted, when, state)

    async def sun_escalations(self) -> list[tuple[int, str, str]]:
        return await self._call(self.store.sun_escalations)

    async def sun_state(self, name: str) -> str | None:
        return await self._call(self.store.sun_state, name)

    async def outbox_due(
        self, now: float, limit: int = 50, claim: float | None = None
    ) -> list[OutboxRow]:
        return await self._call(self.store.outbox_due, now, limit, claim)

    async def outbox_attempt(
        self,
        row_id: int,
        when: float,
        *,
        sent: bool,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        await self._call(
            self.store.outbox_attempt, row_id, when, sent=sent, error=error, retry_at=retry_at
        )

    # supervision
    async def supervision_rows(self, device: str | None = None) -> list[SupervisionRow]:
        return await self._call(self.store.supervision_rows, device)

    async def save_supervision(self, batch: SupervisionBatch) -> None:
        await self._call(self.store.save_supervision, batch)

    async def supervision_outbox(self) -> list[tuple[int, str]]:
        return await self._call(self.store.supervision_outbox)

    async def supervision_outbox_done(self, ids: Collection[int]) -> None:
        await self._call(self.store.supervision_outbox_done, ids)

    async def take_lease(self, name: str, holder: str, when: float) -> Fence:
        return await self._call(self.store.take_lease, name, holder, when)

    async def supervision_inbox_put(self, receiver: str, at: float, event: str) -> None:
        await self._call(self.store.supervision_inbox_put, receiver, at, event)

    async def supervision_inbox(self, limit: int = 1000, after: int = 0) -> list[tuple[int, str]]:
        return await self._call(self.store.supervision_inbox, limit, after)

    async def console_device(self, name: str) -> Device | None:
        return await self._call(self.store.console_device, name)

    async def console_devices_named(self, names: Collection[str]) -> dict[str, Device | None]:
        return await self._call(self.store.console_devices_named, names)

    async def supervision_commands(self, after: int) -> list[tuple[int, str]]:
        return await self._call(self.store.supervision_commands, after)

    async def incident_rows(
        self,
        *,
        status: Collection[str] | None = None,
        incident_id: int | None = None,
        limit: int = 100,
    ) -> list[IncidentRow]:
        return await self._call(
            self.store.incident_rows, status=status, incident_id=incident_id, limit=limit
        )

    async def incident_timeline(self, incident_id: int) -> list[TimelineRow]:
        return await self._call(self.store.incident_timeline, incident_id)

    async def max_incident_id(self) -> int:
        return await self._call(self.store.max_incident_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reads:  # asked by callers still waiting: answer them
            reads, self._reads = self._reads, []
            answers: list[Any] = []
            for function, _ in reads:
                try:
                    answers.append(function())
                except Exception as exc:
                    answers.append(exc)
            _settle(reads, answers)
        if self._pending:  # written by callers still waiting: commit before closing
            batch, self._pending = self._pending, []
            try:
                results = self.store.apply_batch([operation for operation, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            _settle(batch, results)
        self.store.close()


def _settle(waiting: Sequence[tuple[Any, asyncio.Future[Any]]], results: Sequence[Any]) -> None:
    """Each waiting caller's result, or the exception it raised."""
    for (_, future), result in zip(waiting, results, strict=True):
        if future.done():  # its caller was cancelled (the call ended meanwhile)
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _size(operation: Operation) -> int:
    if isinstance(operation, StoreMessage):
        return len(operation.content)
    if isinstance(operation, AppendPartial):
        return len(operation.data)
    return 0


# -- supervision's records (receiver/supervision/persist.py converts) ---------------------


class SupervisionRow(NamedTuple):
    """One device as supervision reads it at start: enrolment and the kept state (a
    named tuple: a million of them are read at start)."""

    device: str
    device_id: int
    test_interval: float
    grace: float
    enrolled_at: float
    revoked_at: float | None
    site: str | None
    state: int | None
    """None: supervision has not seen this device yet."""
    since: float | None
    last: float | None
    line_tests_only: bool
    schedule: str | None
    extra: str | None
    """JSON of the rare parts (paths, tests, storms), or None."""
    last_port: str | None
    last_caller: str | None
    attributes: str | None
    customer: str | None = None


@dataclass(frozen=True)
class SupervisionUpdate:
    device: str
    state: int
    since: float
    last: float
    line_tests_only: bool = False
    schedule: str | None = None
    extra: str | None = None
    last_port: str | None = None
    """None keeps what is stored (and so for the two below)."""
    last_caller: str | None = None
    attributes: str | None = None


@dataclass(frozen=True)
class IncidentRow:
    id: int
    kind: str
    severity: str
    key: str
    summary: str
    device: str | None
    status: str
    opened_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    members: str
    """JSON: device -> late | down | recovered."""
    attributes: str
    last_notified: float | None
    pending_since: float | None


_INCIDENT_COLUMNS = ", ".join(IncidentRow.__dataclass_fields__)


@dataclass(frozen=True)
class TimelineRow:
    incident_id: int
    at: float
    what: str
    text: str
    by: str | None
    device: str | None


@dataclass(frozen=True)
class SupervisionBatch:
    """What one turn of supervision writes, in one transaction."""

    devices: tuple[SupervisionUpdate, ...] = ()
    incidents: tuple[IncidentRow, ...] = ()
    timeline: tuple[TimelineRow, ...] = ()
    outbox: tuple[str, ...] = ()
    """Incident events (JSON) to hand to the notifier once committed."""
    commands: tuple[tuple[float, str], ...] = ()
    """(when, JSON) for the running engine (from the command line)."""
    inbox_done: tuple[int, ...] = ()
    """Ids of `supervision_inbox` rows this turn took in (deleted with it)."""
