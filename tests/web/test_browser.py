"""The console in a real browser: Debian's Chromium driven by Playwright (never a
downloaded browser). Log in, see an incident appear live without reloading, acknowledge
it, find the audit entry; a viewer cannot acknowledge; a form without its CSRF token is
refused; a screenshot of each page is saved under the test's tmp dir.

Chromium comes from `apt-get install -y chromium` (.ci/run does it). Where it is
missing the test is skipped with the reason, except in CI (CI set), where it fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from receiver.incident_events import Change, IncidentEvent, Severity
from receiver.web.app import Console, serving
from receiver.web.config import WebConfig
from receiver.web.sources import MemorySupervision
from receiver.web.storage import ConsoleStore

from .conftest import NOW, PASSWORD, ROUTING, fill

CHROMIUM = "/usr/bin/chromium"


def _need_chromium() -> None:
    problem = None
    if shutil.which(CHROMIUM) is None:
        problem = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[test]')"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test cannot run in CI: {problem}")
        pytest.skip(problem)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Console, MemorySupervision, str]]:
    from receiver.sun.model import load_routing

    sqlite = fill(tmp_path / "centre.db")
    store = ConsoleStore(sqlite)
    supervision = MemorySupervision(store, sqlite)
    supervision.open(1, "device_down", "plant-a missed its line test", NOW - 60, device="plant-a")
    console = Console(
        store=store,
        sqlite=sqlite,
        config=WebConfig(port=0),
        supervision=supervision,
        routing=load_routing(ROUTING),
        clock=lambda: NOW,
    )
    async with serving(console):
        host, port = console.addresses[0][:2]
        yield console, supervision, f"http://{host}:{port}"
    console.store.close()


async def log_in(page: Any, base: str, name: str) -> None:
    """Sign `name` in at the console on `base` (password PASSWORD) in `page`."""
    await page.goto(f"{base}/")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")


async def test_the_console_in_a_browser(
    served: tuple[Console, MemorySupervision, str], tmp_path: Path
) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright, expect

    console, supervision, base = served
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            operator = await browser.new_page()
            operator.set_default_timeout(10_000)

            await log_in(operator, base, "otto")
            await expect(operator.locator("h1")).to_have_text("Overview")
            for name, path in (
                ("overview", "/"),
                ("devices", "/devices"),
                ("device", "/devices/plant-a"),
                ("calls", "/calls"),
                ("reports", "/reports"),
                ("incidents", "/incidents"),
                ("incident", "/incidents/1"),
                ("rosters", "/rosters"),
                ("audit", "/audit"),
            ):
                await operator.goto(f"{base}{path}")
                await operator.screenshot(path=shots / f"{name}.png", full_page=True)
            assert {p.name for p in shots.iterdir()} >= {"overview.png", "audit.png"}

            # a device goes late and becomes an incident: the overview shows it live
            await operator.goto(f"{base}/")
            await expect(operator.locator("body[data-live-connected]")).to_have_count(1)
            await operator.evaluate("window.notReloaded = true")
            supervision.open(7, "device_down", "plant-a is late", NOW, device="plant-a")
            await console.live.notify(
                IncidentEvent(7, Change.OPENED, "device_down", Severity.MAJOR, "late", NOW, NOW)
            )
            await expect(operator.locator('tr.incident[data-id="7"]')).to_have_count(1)
            assert await operator.evaluate("window.notReloaded === true")

            # acknowledge it; the audit log says who
            await operator.click('tr.incident[data-id="7"] a')
            await operator.click("#ack-form button")
            await expect(operator.locator("#incident-state")).to_have_text("acknowledged")
            assert supervision.items[7].acknowledged_by == "otto"
            await operator.goto(f"{base}/audit")
            first = operator.locator("tr.audit").first
            await expect(first).to_contain_text("acknowledged")
            await expect(first).to_contain_text("incident 7")
            await expect(first).to_contain_text("otto")

            # a form without its CSRF token is refused
            await operator.goto(f"{base}/incidents/1")
            await operator.evaluate("document.querySelector('#ack-form input[name=csrf]').remove()")
            await operator.click("#ack-form button")
            await expect(operator.locator("body")).to_contain_text("CSRF token")
            assert supervision.items[1].state == "open"

            # a viewer sees no button, and a forged post with her own token is refused
            viewer = await (await browser.new_context()).new_page()
            viewer.set_default_timeout(10_000)
            await log_in(viewer, base, "vera")
            await viewer.goto(f"{base}/incidents/1")
            await expect(viewer.locator("#ack-form")).to_have_count(0)
            status = await viewer.evaluate(
                """async () => {
                    const csrf = document.querySelector('input[name=csrf]').value;
                    const body = new URLSearchParams({csrf});
                    const r = await fetch('/incidents/1/ack', {method: 'POST', body});
                    return r.status;
                }"""
            )
            assert status == 403
            assert supervision.items[1].state == "open"
        finally:
            await browser.close()
