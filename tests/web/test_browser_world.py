"""The console in a real browser against a running centre: a bank on the virtual phone
network (tests/bankworld.py) with supervision running and the console wired as `run`
wires it (the bank's events, supervision's incident events, `StoreSupervision`). The
device calls in through the bank; later it misses its line test and supervision opens
an incident, which the open overview shows without a reload; the operator acknowledges
it in the browser, supervision's store says so, and the audit log says who; a viewer
cannot. Screenshots of the pages are saved under the test's tmp dir.

Supervision's clock is the wall clock plus an offset the test moves on: "two hours
later" takes no time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from receiver.store import AsyncStore, SQLiteStore
from receiver.sun.model import load_routing
from receiver.supervision.console import StoreSupervision
from receiver.supervision.notify import FanOut, ListNotifier
from receiver.supervision.service import Supervisor
from receiver.supervision.settings import SupervisionSettings
from receiver.web.app import Console, serving
from receiver.web.auth import hash_password
from receiver.web.config import WebConfig
from receiver.web.storage import ConsoleStore
from tests.bankworld import bank_world

from .conftest import PASSWORD, ROUTING
from .test_browser import CHROMIUM, _need_chromium, log_in

INTERVAL, GRACE = 3600, 600


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_late_device_becomes_an_incident_live_and_is_acknowledged(
    tmp_path: Path,
) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    clock = Clock()
    async with bank_world(tmp_path, test_interval=INTERVAL, grace=GRACE, site="lyon") as world:
        path = tmp_path / "centre.db"
        sync = SQLiteStore(path)  # the console's own connection, as `prepare` opens it
        for name, role in (("otto", "operator"), ("vera", "viewer")):
            sync.console_add_account(name, hash_password(PASSWORD), role, clock())
        settings = SupervisionSettings()
        console = Console(
            store=ConsoleStore(sync),
            sqlite=sync,
            config=WebConfig(port=0),
            routing=load_routing(ROUTING),
            clock=clock,
        )
        console.supervision = StoreSupervision(console.store, sync, settings)
        routed = ListNotifier()  # stands in for follow-the-sun
        supervisor = Supervisor(
            AsyncStore(SQLiteStore(path)), FanOut(console.live, routed), settings, clock=clock
        )
        supervisor.lateness = console.live.metrics.observe_lateness
        bank = world.bank(supervisor=supervisor, notify=console.live.bank_event)
        console.live.attach_bank(bank.workers)
        async with world.serving(bank), serving(console):
            host, port = console.addresses[0][:2]
            base = f"http://{host}:{port}"
            report = await world.line_test()
            assert report.result == "ok", report
            await world.settled()
            async with async_playwright() as driver:
                browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    operator = await browser.new_page()
                    operator.set_default_timeout(15_000)

                    await log_in(operator, base, "otto")
                    await expect(operator.locator("h1")).to_have_text("Overview")
                    await operator.goto(f"{base}/devices?state=ok")
                    await expect(operator.locator("body")).to_contain_text("plant")
                    await operator.screenshot(path=shots / "devices-ok.png", full_page=True)

                    # the overview stays open; the device misses its line test
                    await operator.goto(f"{base}/")
                    await expect(operator.locator("body[data-live-connected]")).to_have_count(1)
                    await operator.evaluate("window.notReloaded = true")
                    clock.offset = INTERVAL + GRACE + 60
                    supervisor._wake.set()  # its timer would fire at this moment
                    row = operator.locator("tr.incident").first
                    await expect(row).to_contain_text("plant", timeout=20_000)
                    assert await operator.evaluate("window.notReloaded === true")
                    assert [e.change.value for e in routed.events] == ["opened"]
                    incident_id = routed.events[0].incident_id
                    await operator.screenshot(path=shots / "overview-incident.png", full_page=True)
                    await operator.goto(f"{base}/devices?state=down")
                    await expect(operator.locator("body")).to_contain_text("plant")

                    # a viewer sees no button
                    viewer = await (await browser.new_context()).new_page()
                    viewer.set_default_timeout(15_000)
                    await log_in(viewer, base, "vera")
                    await viewer.goto(f"{base}/incidents/{incident_id}")
                    await expect(viewer.locator("#ack-form")).to_have_count(0)

                    # the operator acknowledges it; supervision's store and the audit say so
                    await operator.goto(f"{base}/incidents/{incident_id}")
                    await operator.click("#ack-form button")
                    await expect(operator.locator("#incident-state")).to_have_text("acknowledged")
                    await operator.screenshot(path=shots / "incident-acked.png", full_page=True)
                    (kept,) = sync.incident_rows(incident_id=incident_id)
                    assert (kept.status, kept.acknowledged_by) == ("acknowledged", "otto")
                    await operator.goto(f"{base}/audit")
                    first = operator.locator("tr.audit").first
                    await expect(first).to_contain_text("acknowledged")
                    await expect(first).to_contain_text(f"incident {incident_id}")
                    await expect(first).to_contain_text("otto")
                    await operator.screenshot(path=shots / "audit.png", full_page=True)
                    # the running engine takes the acknowledgement in and tells routing
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + 20.0
                    while [e.change.value for e in routed.events] != ["opened", "acknowledged"]:
                        assert loop.time() < deadline, routed.events
                        await asyncio.sleep(0.05)
                finally:
                    await browser.close()
        console.store.close()
    assert {p.name for p in shots.iterdir()} == {
        "devices-ok.png",
        "overview-incident.png",
        "incident-acked.png",
        "audit.png",
    }
