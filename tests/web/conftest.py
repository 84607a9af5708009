"""A console over a real store with a few devices, calls and reports, three accounts,
in-memory supervision (the double of supervision's store) and a clock the test sets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from receiver.incident_events import Severity
from receiver.store import CallEnd, SQLiteStore
from receiver.sun.model import Routing, load_routing
from receiver.web import auth
from receiver.web.app import Console, make_app
from receiver.web.auth import hash_password
from receiver.web.config import WebConfig
from receiver.web.sources import MemorySupervision
from receiver.web.storage import ConsoleStore

NOW = 1_780_000_000.0  # 2026-05-28, a Thursday
PASSWORD = "correct horse battery"
ROUTING = Path(__file__).parents[2] / "docs" / "follow-the-sun.toml"
PUBLIC_KEY = bytes(range(32))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fill(path: Path) -> SQLiteStore:
    store = SQLiteStore(path, create=True)
    store.enroll("plant-a", PUBLIC_KEY, test_interval=3600.0, grace=600.0, site="lyon")
    store.enroll(
        "<b>bold</b>",
        bytes(range(1, 33)),
        test_interval=3600.0,
        grace=600.0,
        site=None,
        customer="<i>acme</i>",
    )
    device = store.devices()[1]
    assert device.name == "plant-a"
    store.advance_counter(device.id, 1, NOW - 100.0)
    call = store.start_call("bank0", "5551234", NOW - 120.0)
    store.store_message(
        device.id,
        1,
        1,
        "report",
        cbor2.dumps({"check": "pump", "state": "failed", "text": "<pressure low>"}),
        {"severity": "major", "component": "pump", "state": "failed"},
        call,
        NOW - 110.0,
    )
    store.finish_call(
        call,
        CallEnd(NOW - 100.0, "completed", device.id, 2400, "V.22bis", "LAPM", 300, 200, 1, None),
    )
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        store.console_add_account(name, hash_password(PASSWORD), role, NOW)
    return store


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its real cost takes a good fraction of a second on a busy machine:
    the tests hash with the least cost (test_auth checks the real parameters)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(auth, "_hasher", cheap)
    monkeypatch.setattr(auth, "_DUMMY", cheap.hash("dummy"))


@dataclass
class World:
    console: Console
    client: TestClient
    clock: Clock
    supervision: MemorySupervision
    routing: Routing


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sqlite = fill(tmp_path / "centre.db")
    clock = Clock(NOW)
    store = ConsoleStore(sqlite)
    supervision = MemorySupervision(store, sqlite)
    supervision.open(1, "device_down", "plant-a missed its line test", NOW - 60, device="plant-a")
    supervision.open(2, "outage", "lyon: 3 devices silent", NOW - 30, severity=Severity.CRITICAL)
    routing = load_routing(ROUTING)
    console = Console(
        store=store,
        sqlite=sqlite,
        config=WebConfig(port=0),
        supervision=supervision,
        routing=routing,
        clock=clock,
    )
    client = TestClient(TestServer(make_app(console)))
    await client.start_server()
    try:
        yield World(console, client, clock, supervision, routing)
    finally:
        await client.close()
        console.store.close()


CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def log_in(client: TestClient, name: str, password: str = PASSWORD) -> int:
    page = await client.get("/login")
    token = csrf_of(await page.text())
    response = await client.post(
        "/login",
        data={"name": name, "password": password, "csrf": token, "next": "/"},
        allow_redirects=False,
    )
    return response.status
