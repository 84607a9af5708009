"""The console's pages and actions over HTTP: sessions, roles, CSRF, the audit log,
escaping, signed links, live events."""

from __future__ import annotations

import asyncio

from receiver.sun.links import make_token
from receiver.web.app import LOGIN_COOKIE, SESSION_COOKIE

from .conftest import NOW, PASSWORD, PUBLIC_KEY, World, csrf_of, log_in

PAGES = (
    "/",
    "/devices",
    "/devices/plant-a",
    "/calls",
    "/reports",
    "/incidents",
    "/incidents/1",
    "/rosters",
)


async def test_pages_need_a_login(world: World) -> None:
    response = await world.client.get("/devices", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=/devices")
    refused = await world.client.post("/incidents/1/ack", data={"csrf": "x"})
    assert refused.status == 403


async def test_session_cookie_is_http_only_and_same_site(world: World) -> None:
    page = await world.client.get("/login")
    token = csrf_of(await page.text())
    response = await world.client.post(
        "/login",
        data={"name": "vera", "password": PASSWORD, "csrf": token},
        allow_redirects=False,
    )
    assert response.status == 303
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # plain HTTP here


async def test_cookie_is_secure_behind_a_tls_proxy(world: World) -> None:
    from dataclasses import replace

    world.console.config = replace(world.console.config, behind_proxy=True)
    https = {"X-Forwarded-Proto": "https"}
    page = await world.client.get("/login", headers=https)
    assert page.cookies[LOGIN_COOKIE]["secure"]
    token = csrf_of(await page.text())
    # the test client keeps Secure cookies away from plain HTTP: send it as a browser would
    response = await world.client.post(
        "/login",
        data={"name": "vera", "password": PASSWORD, "csrf": token},
        headers={**https, "Cookie": f"{LOGIN_COOKIE}={token}"},
        allow_redirects=False,
    )
    assert response.cookies[SESSION_COOKIE]["secure"]


async def test_every_page_renders_for_a_viewer(world: World) -> None:
    assert await log_in(world.client, "vera") == 303
    for path in PAGES:
        response = await world.client.get(path)
        assert response.status == 200, path
        assert "Content-Security-Policy" in response.headers
    audit = await world.client.get("/audit")
    assert audit.status == 403  # the audit log is for operators and admins


async def test_a_wrong_password_is_refused_and_audited(world: World) -> None:
    assert await log_in(world.client, "vera", "wrong password!") == 401
    assert await log_in(world.client, "nobody", "wrong password!") == 401
    entries = world.console.sqlite.console_audit_log()
    assert [(e.who, e.action) for e in entries[:2]] == [
        ("nobody", "login failed"),
        ("vera", "login failed"),
    ]


async def test_logins_are_rate_limited(world: World) -> None:
    for _ in range(5):
        assert await log_in(world.client, "otto", "wrong password!") == 401
    # the right password too, until the window has passed
    assert await log_in(world.client, "otto") == 429
    world.clock.now += 301.0
    assert await log_in(world.client, "otto") == 303


async def test_a_form_without_its_csrf_token_is_refused(world: World) -> None:
    await log_in(world.client, "otto")
    for data in ({}, {"csrf": "forged"}):
        response = await world.client.post("/incidents/1/ack", data=data)
        assert response.status == 403
    assert world.supervision.items[1].state == "open"
    login = await world.client.post("/login", data={"name": "otto", "password": PASSWORD})
    assert login.status in (403, 303)  # logged in: a login without the token is refused


async def test_an_operator_acknowledges_and_resolves_with_a_note(world: World) -> None:
    await log_in(world.client, "otto")
    page = await world.client.get("/incidents/1")
    token = csrf_of(await page.text())
    response = await world.client.post("/incidents/1/ack", data={"csrf": token})
    assert response.status == 200
    assert world.supervision.items[1].state == "acknowledged"
    assert world.supervision.items[1].acknowledged_by == "otto"
    no_note = await world.client.post("/incidents/1/resolve", data={"csrf": token, "note": " "})
    assert no_note.status == 400
    done = await world.client.post(
        "/incidents/1/resolve", data={"csrf": token, "note": "replaced the modem"}
    )
    assert done.status == 200
    text = await done.text()
    assert "replaced the modem" in text and "resolved" in text
    entries = world.console.sqlite.console_audit_log()
    assert [(e.who, e.action, e.target, e.detail) for e in entries[:2]] == [
        ("otto", "resolved", "incident 1", "replaced the modem"),
        ("otto", "acknowledged", "incident 1", None),
    ]


async def test_a_viewer_cannot_acknowledge(world: World) -> None:
    await log_in(world.client, "vera")
    page = await world.client.get("/incidents/1")
    text = await page.text()
    assert 'id="ack-form"' not in text
    response = await world.client.post("/incidents/1/ack", data={"csrf": csrf_of(text)})
    assert response.status == 403
    assert world.supervision.items[1].state == "open"


async def test_everything_shown_is_escaped_and_no_key_material(world: World) -> None:
    await log_in(world.client, "vera")
    devices = await world.client.get("/devices")
    text = await devices.text()
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    reports = await world.client.get("/reports")
    text = await reports.text()
    assert "&lt;pressure low&gt;" in text and "<pressure low>" not in text
    device = await world.client.get("/devices/plant-a")
    text = await device.text()
    assert 'id="fingerprint"' in text
    import base64

    for form in (PUBLIC_KEY.hex(), base64.b64encode(PUBLIC_KEY).decode()):
        assert form not in text


async def test_every_device_link_opens_its_page_even_with_a_slash_in_the_name(
    world: World,
) -> None:
    """jinja's urlencode keeps "/": the device "<b>bold</b>" was linked to a path no route
    served (404); each name is now one path segment."""
    import re

    await log_in(world.client, "otto")
    listing = await (await world.client.get("/devices")).text()
    links = re.findall(r'href="(/devices/[^"?]+)"', listing)
    assert len(links) == 2 and "/devices/%3Cb%3Ebold%3C%2Fb%3E" in links
    for link in links:
        page = await world.client.get(link)
        assert page.status == 200, link
        text = await page.text()
        action = re.search(r'action="(/devices/[^"]+/test)"', text)
        assert action is not None and action.group(1) == f"{link}/test"
    bold = "/devices/%3Cb%3Ebold%3C%2Fb%3E"
    done = await world.client.post(f"{bold}/test", data={"csrf": csrf_of(text), "hours": "2"})
    assert done.status == 200 and "on test" in await done.text()


async def test_devices_filter_and_sort(world: World) -> None:
    await log_in(world.client, "vera")
    response = await world.client.get("/devices?site=lyon&sort=last_call")
    text = await response.text()
    assert "plant-a" in text and "bold" not in text
    response = await world.client.get("/devices?state=late")
    assert "plant-a" not in await response.text()
    # by customer: its devices only, the customers offered, the column and the sort
    response = await world.client.get("/devices?customer=%3Ci%3Eacme%3C/i%3E&sort=customer")
    text = await response.text()
    assert "1 device(s)" in text and "plant-a" not in text
    assert text.count("&lt;i&gt;acme&lt;/i&gt;") == 2 and "<i>acme</i>" not in text
    assert "<th>customer</th>" in text
    everyone = await (await world.client.get("/devices?sort=customer")).text()
    assert everyone.index("&lt;b&gt;bold") < everyone.index("plant-a")  # none: last
    device = await (await world.client.get("/devices/plant-a")).text()
    assert "<th>customer</th><td>-</td>" in device


async def test_logout_ends_the_session(world: World) -> None:
    await log_in(world.client, "vera")
    page = await world.client.get("/")
    await world.client.post("/logout", data={"csrf": csrf_of(await page.text())})
    response = await world.client.get("/", allow_redirects=False)
    assert response.status == 303


async def test_a_signed_link_acknowledges_after_a_click(world: World) -> None:
    secret = world.routing.link_secret
    assert secret is not None
    token = make_token(secret, 2, "ack", NOW + 3600)
    page = await world.client.get(f"/ack?token={token}")
    assert page.status == 200
    assert world.supervision.items[2].state == "open"  # a GET never acts
    assert LOGIN_COOKIE in page.cookies
    done = await world.client.post(f"/ack?token={token}", data={"csrf": csrf_of(await page.text())})
    assert done.status == 200
    assert world.supervision.items[2].acknowledged_by == "signed link"
    assert world.console.sqlite.console_audit_log()[0].who == "signed link"


async def test_a_forged_or_expired_link_is_refused(world: World) -> None:
    secret = world.routing.link_secret
    assert secret is not None
    forged = make_token(b"another secret", 2, "ack", NOW + 3600)
    expired = make_token(secret, 2, "ack", NOW - 1)
    for token in (forged, expired, "garbage"):
        response = await world.client.get(f"/ack/{token}")
        assert response.status == 403
    assert world.supervision.items[2].state == "open"


async def test_changes_are_pushed_as_server_sent_events(world: World) -> None:
    await log_in(world.client, "vera")
    response = await world.client.get("/events")
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert await response.content.readline() == b"retry: 3000\n"
    await response.content.readline()
    while world.console.live.subscribers == 0:
        await asyncio.sleep(0)
    world.console.live.publish("incident", {"id": 3})
    lines = [await response.content.readline() for _ in range(2)]
    assert lines == [b"event: incident\n", b'data: {"id":3}\n']
    response.close()


async def test_an_operator_puts_a_device_on_test(world: World) -> None:
    await log_in(world.client, "otto")
    page = await world.client.get("/devices/plant-a")
    token = csrf_of(await page.text())
    bad = await world.client.post("/devices/plant-a/test", data={"csrf": token, "hours": "99"})
    assert bad.status == 400
    done = await world.client.post("/devices/plant-a/test", data={"csrf": token, "hours": "2"})
    assert done.status == 200 and "on test" in await done.text()
    entry = world.console.sqlite.console_audit_log()[0]
    assert (entry.who, entry.action, entry.target, entry.detail) == (
        "otto",
        "put on test",
        "device plant-a",
        "2 h",
    )


async def test_without_supervision_pages_say_so_and_actions_are_refused(world: World) -> None:
    world.console.supervision = None  # what a receiver without supervision has
    await log_in(world.client, "otto")
    page = await world.client.get("/")
    text = await page.text()
    assert "does not run yet" in text and "Devices late or down (0 of 2)" in text
    response = await world.client.post("/incidents/1/ack", data={"csrf": csrf_of(text)})
    assert response.status == 409
