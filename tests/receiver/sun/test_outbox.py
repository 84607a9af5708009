"""The outbox and the notifiers against real servers on 127.0.0.1: an HTTP server for the
webhook, aiosmtpd for e-mail, a real child process for commands; and a receiver killed
with SIGKILL in the middle of a send."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from receiver.incident_events import Change, IncidentEvent, Severity
from receiver.store import AsyncStore, OutboxItem, OutboxRow, SQLiteStore
from receiver.store_pg import PostgresStore
from receiver.sun.model import Command, Contact, Delivery, Routing, Smtp, Webhook
from receiver.sun.notifiers import DeliveryError, send_email, send_webhook, verify
from receiver.sun.outbox import Dispatcher, SunRouter

from ..pgtest import pg_database_fixture, pg_session_database_fixture  # noqa: F401 - fixtures

SECRET = b"a-webhook-secret-long-enough"
START = datetime(2026, 6, 2, 8, tzinfo=UTC).timestamp()  # Tuesday 10:00 in Paris


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hook:
    """A webhook receiver: records each request; answers `status` (None: never)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status: int | None = 200
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
        }
        body = await reader.readexactly(int(headers["content-length"]))
        self.requests.append((headers, body))
        self.arrived.set()
        if self.status is None:
            await self.release.wait()  # never answered while the test runs
            writer.close()
            return
        writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    yield receiver
    receiver.release.set()
    server.close()
    await server.wait_closed()


class Mailbox:
    def __init__(self, refuse: bool = False) -> None:
        self.messages: list[Envelope] = []
        self.refuse = refuse

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "554 5.7.1 refused by policy"
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def routing(
    tmp_path: Path, hook_port: int = 9, smtp_port: int = 9, attempts: int = 3, **people: Contact
) -> Routing:
    from receiver.sun.model import load_routing

    from .conftest import EXAMPLE

    base = load_routing(EXAMPLE)
    return dataclasses.replace(
        base,
        webhooks={
            "paris-chat": Webhook("paris-chat", f"http://127.0.0.1:{hook_port}/hook", SECRET, 5.0)
        },
        smtp=Smtp("127.0.0.1", smtp_port, "callhome@example.com", "auto", 5.0),
        commands={"pager": Command("pager", (sys.executable, "-c", "pass"), 30.0)},
        delivery=Delivery(attempts, 1.0, 4.0),
        people={**base.people, **people},
    )


def store(tmp_path: Path) -> AsyncStore:
    return AsyncStore(SQLiteStore(tmp_path / "centre.db", create=True))


def opened(incident: int = 1, severity: Severity = Severity.MAJOR) -> IncidentEvent:
    return IncidentEvent(
        incident,
        Change.OPENED,
        "device_down",
        severity,
        "pump-7 stopped calling",
        START,
        START,
        device="pump-7",
        attributes={"customer": "acme", "site": "lyon"},
    )


def item(key: str = f"incident-1@{int(START)}/standard/round-1-step-1/centre:paris") -> OutboxItem:
    return OutboxItem(
        f"{key}|webhook|paris-chat",
        key,
        "webhook",
        "paris-chat",
        "centre:paris",
        "subject",
        "body",
        json.dumps({"incident_id": 1, "idempotency_key": key}),
    )


async def test_an_incident_reaches_the_webhook_signed_and_the_mailbox(
    tmp_path: Path, hook: Hook, smtp_server: tuple[Mailbox, int]
) -> None:
    mailbox, port = smtp_server
    clock = Clock()
    db = store(tmp_path)
    router = SunRouter(routing(tmp_path, hook.port, port), db, clock=clock)
    await router.start()
    await router.notify(opened())
    # paris: e-mail and webhook; bruno (on call): e-mail and pager
    assert await router.dispatcher.run_once() == 4
    ((headers, body),) = hook.requests
    assert verify(
        SECRET, headers["x-callhome-timestamp"], body, headers["x-callhome-signature"], clock.now
    )
    assert not verify(
        SECRET,
        headers["x-callhome-timestamp"],
        body + b" ",
        headers["x-callhome-signature"],
        clock.now,
    )
    assert (
        headers["idempotency-key"]
        == f"incident-1@{int(START)}/standard/round-1-step-1/centre:paris"
    )
    payload = json.loads(body)
    assert payload["incident_id"] == 1 and "callhome-receiver incidents ack 1" in payload["text"]
    assert sorted(m.rcpt_tos[0] for m in mailbox.messages) == [
        "bruno@example.com",
        "noc-paris@example.com",
    ]
    text = mailbox.messages[0].content.decode()  # type: ignore[union-attr]
    assert "pump-7 stopped calling" in text and "X-Callhome-Idempotency-Key:" in text
    assert all(row.sent_at is not None for row in db.store.outbox())
    assert await router.dispatcher.run_once() == 0  # sent once, marked done
    # the same notification queued again (a re-run step) is not sent twice
    await router._commit(router.escalator.handle(opened(), clock.now), clock.now)
    assert len(db.store.outbox()) == 4
    db.close()


async def test_a_refusing_smtp_server_is_retried_then_a_trouble_of_the_centre(
    tmp_path: Path,
) -> None:
    mailbox = Mailbox(refuse=True)
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock = Clock()
        db = store(tmp_path)
        troubles: list[tuple[OutboxRow, str]] = []
        dispatcher = Dispatcher(
            routing(tmp_path, smtp_port=port),
            db,
            clock=clock,
            on_trouble=lambda row, error: troubles.append((row, error)),
        )
        mail = dataclasses.replace(
            item(), channel="email", address="noc@example.com", outbox_key="k|email|noc@example.com"
        )
        await db.sun_commit([mail], [], [], clock.now)
        assert await dispatcher.run_once() == 1
        (row,) = db.store.outbox()
        assert row.attempts == 1 and row.sent_at is None and row.failed_at is None
        assert "554" in (row.last_error or "") and row.next_attempt > clock.now
        assert await dispatcher.run_once() == 0  # not before its retry time
        for _ in range(2):
            clock.now = db.store.outbox()[0].next_attempt
            await dispatcher.run_once()
        (row,) = db.store.outbox()
        assert row.attempts == 3 and row.failed_at is not None
        assert len(troubles) == 1 and "refused" in troubles[0][1]
        db.close()
    finally:
        controller.stop()


async def test_an_smtp_server_that_never_answers_times_out() -> None:
    accepted: list[socket.socket] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    smtp = Smtp("127.0.0.1", listener.getsockname()[1], timeout=0.3)
    with pytest.raises(DeliveryError, match=r"no answer in 0\.3 s"):
        await send_email(smtp, dataclasses.replace(item(), channel="email", address="a@b.c"))
    listener.close()
    for sock in accepted:
        sock.close()


async def test_webhook_errors_are_delivery_errors(hook: Hook) -> None:
    hook.status = 503
    webhook = Webhook("w", f"http://127.0.0.1:{hook.port}/", SECRET, 2.0)
    with pytest.raises(DeliveryError, match="HTTP 503"):
        await send_webhook(webhook, item(), START)
    with pytest.raises(DeliveryError, match="webhook w"):
        await send_webhook(
            dataclasses.replace(webhook, url=f"http://127.0.0.1:{free_port()}/"), item(), START
        )


async def test_the_command_gets_the_event_on_stdin_and_in_its_environment(
    tmp_path: Path,
) -> None:
    out = tmp_path / "paged.json"
    script = (
        "import json, os, sys; data = json.load(sys.stdin); "
        f"open({str(out)!r}, 'w').write(json.dumps([data, os.environ['CALLHOME_INCIDENT'], "
        "os.environ['CALLHOME_IDEMPOTENCY_KEY']]))"
    )
    clock = Clock()
    db = store(tmp_path)
    base = routing(tmp_path)
    only_pager = {"bruno": Contact(command="pager")}
    config = dataclasses.replace(
        base,
        people={**base.people, **only_pager},
        sites=tuple(dataclasses.replace(s, contact=Contact()) for s in base.sites),
        commands={"pager": Command("pager", (sys.executable, "-c", script), 10.0)},
    )
    router = SunRouter(config, db, clock=clock)
    await router.notify(opened())
    assert await router.dispatcher.run_once() == 1
    data, incident, key = json.loads(out.read_text())
    assert data["summary"] == "pump-7 stopped calling" and incident == "1"
    assert key == f"incident-1@{int(START)}/standard/round-1-step-1/person:bruno"
    failing = dataclasses.replace(config.commands["pager"], argv=(sys.executable, "-c", "exit(3)"))
    router.dispatcher.routing = dataclasses.replace(config, commands={"pager": failing})
    await router.notify(opened(2))
    await router.dispatcher.run_once()
    assert "exit status 3" in (db.store.outbox()[0].last_error or "")
    db.close()


async def test_a_restart_resumes_the_escalation_and_the_ledger(tmp_path: Path) -> None:
    clock = Clock()
    db = store(tmp_path)
    first = SunRouter(routing(tmp_path), db, clock=clock)
    await first.start()
    await first.notify(opened(severity=Severity.CRITICAL))  # urgent: 5 minutes to step 2
    assert await first.step() == START + 300
    # a new receiver on the same store, 6 minutes later
    clock.now = START + 360
    second = SunRouter(routing(tmp_path), db, clock=clock)
    await second.start()
    await second.step()
    keys = {row.item.idempotency_key for row in db.store.outbox()}
    assert f"incident-1@{int(START)}/urgent/round-1-step-2/person:erin" in keys
    # the hand-over to New York at 12:00 UTC brings the ledger
    clock.now = datetime(2026, 6, 2, 12, 1, tzinfo=UTC).timestamp()
    await second.step()
    ledger = [r for r in db.store.outbox() if r.item.idempotency_key.startswith("handover-")]
    assert ledger and ledger[0].item.address == "noc-ny@example.com"
    assert "incident 1" in ledger[0].item.body
    db.close()


CHILD = """
import asyncio, sys
from receiver.store import AsyncStore, SQLiteStore
from receiver.sun.model import load_routing
from receiver.sun.outbox import Dispatcher
import dataclasses
from receiver.sun.model import Webhook
routing = load_routing(sys.argv[2])
routing = dataclasses.replace(routing, webhooks={"paris-chat": Webhook(
    "paris-chat", f"http://127.0.0.1:{sys.argv[3]}/hook", sys.argv[4].encode(), 3600.0)})
store = AsyncStore(SQLiteStore(sys.argv[1]))
asyncio.run(Dispatcher(routing, store).run_once())
"""


async def test_kill_9_during_a_send_resends_after_restart_with_the_same_key(
    tmp_path: Path, hook: Hook
) -> None:
    from .conftest import EXAMPLE

    db = store(tmp_path)
    await db.sun_commit([item()], [], [], START)
    db.close()
    hook.status = None  # the first request is never answered: the sender hangs in it
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "centre.db"),
            str(EXAMPLE),
            str(hook.port),
            SECRET.decode(),
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    try:
        await asyncio.wait_for(hook.arrived.wait(), 60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    hook.status = 200
    db = AsyncStore(SQLiteStore(tmp_path / "centre.db"))
    assert len(db.store.outbox(pending=True)) == 1  # never marked: the send did not finish
    dispatcher = Dispatcher(routing(tmp_path, hook.port), db, clock=Clock())
    assert await dispatcher.run_once() == 1
    assert len(hook.requests) == 2
    assert hook.requests[0][0]["idempotency-key"] == hook.requests[1][0]["idempotency-key"]
    assert hook.requests[0][1] == hook.requests[1][1]
    assert db.store.outbox()[0].sent_at is not None
    db.close()


def test_retry_delays_follow_the_shared_backoff(tmp_path: Path) -> None:
    import random

    from receiver.sun.outbox import retry_delay

    config = routing(tmp_path)
    delays = [retry_delay(config, n, random.Random(1)) for n in range(1, 8)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delays) > 1.0  # it grows past the initial second


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a private CA would issue."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_starttls_is_used_where_offered_and_required_when_asked(tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    port = free_port()
    # the server refuses mail before STARTTLS: a delivery proves the client upgraded
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        smtp = Smtp("127.0.0.1", port, timeout=5.0, cafile=cert)
        mail = dataclasses.replace(item(), channel="email", address="noc@example.com")
        await send_email(smtp, mail)
        assert [m.rcpt_tos for m in mailbox.messages] == [["noc@example.com"]]
        # a certificate the client does not trust is a delivery error, not a plain-text send
        with pytest.raises(DeliveryError, match="STARTTLS failed"):
            await send_email(dataclasses.replace(smtp, cafile=None), mail)
    finally:
        controller.stop()
    plain = Mailbox()
    port = free_port()
    controller = Controller(plain, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = Smtp("127.0.0.1", port, timeout=5.0, starttls="require")
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            await send_email(smtp, dataclasses.replace(item(), channel="email", address="a@b.c"))
        assert plain.messages == []
    finally:
        controller.stop()


async def test_the_router_runs_steps_and_sends_until_stopped(tmp_path: Path, hook: Hook) -> None:
    clock = Clock()
    db = store(tmp_path)
    router = SunRouter(routing(tmp_path, hook.port), db, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop, poll=0.05))
    await router.notify(opened())
    await asyncio.wait_for(hook.arrived.wait(), 30)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert hook.requests[0][0]["idempotency-key"].endswith("/round-1-step-1/centre:paris")
    db.close()


async def test_an_smtp_server_that_times_out_is_retried_then_a_trouble(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (the kernel does) but never greets
    try:
        clock = Clock()
        db = store(tmp_path)
        troubles: list[str] = []
        config = routing(tmp_path, smtp_port=listener.getsockname()[1], attempts=2)
        assert config.smtp is not None
        config = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, timeout=0.2))
        dispatcher = Dispatcher(
            config, db, clock=clock, on_trouble=lambda row, error: troubles.append(error)
        )
        mail = dataclasses.replace(
            item(), channel="email", address="noc@example.com", outbox_key="k|email|noc"
        )
        await db.sun_commit([mail], [], [], clock.now)
        await dispatcher.run_once()
        (row,) = db.store.outbox()
        assert row.failed_at is None and row.attempts == 1
        clock.now = row.next_attempt
        await dispatcher.run_once()
        (row,) = db.store.outbox()
        assert row.failed_at is not None and row.attempts == 2
        assert len(troubles) == 1 and "no answer" in troubles[0]
        db.close()
    finally:
        listener.close()


async def test_a_send_that_outlasts_its_claim_hands_no_later_row_to_another_receiver(
    tmp_path: Path, pg_database
) -> None:
    """Two receivers on one PostgreSQL outbox. The first's send of row 1 outlasts the
    claim, and the second runs meanwhile: row 1 goes out again (its claim ran out: at least
    once), row 2 goes out once, by the second; the first had not claimed it yet."""
    dsn = pg_database()
    stores = [AsyncStore(PostgresStore(dsn, create=True)), AsyncStore(PostgresStore(dsn))]
    clock = Clock()
    plan = routing(tmp_path)
    plan = dataclasses.replace(plan, delivery=dataclasses.replace(plan.delivery, claim=3.0))
    first, second = (Dispatcher(plan, db, clock=clock) for db in stores)
    sent: list[tuple[str, str]] = []

    async def first_send(row: OutboxRow) -> None:
        sent.append(("first", row.item.idempotency_key))
        if len(sent) == 1:
            clock.now += 10.0  # slower than the claim, while the second sender runs
            assert await second.run_once() == 2

    async def second_send(row: OutboxRow) -> None:
        sent.append(("second", row.item.idempotency_key))

    first.send = first_send  # type: ignore[method-assign]
    second.send = second_send  # type: ignore[method-assign]
    try:
        rows = [item("page-1"), item("page-2")]
        assert await stores[0].sun_commit(rows, [], [], clock()) == 2
        assert await first.run_once() == 1
        assert sent[0] == ("first", "page-1")
        assert sorted(sent[1:]) == [("second", "page-1"), ("second", "page-2")]
        assert all(row.sent_at is not None for row in stores[0].store.outbox())
    finally:
        for db in stores:
            db.close()
