"""The console's aiohttp application: pages, actions, live updates and `/metrics`.

Runs on the event loop it is started on (the receiver's own, under `run`), reads the
store through a connection and thread of its own (`ConsoleStore`), so that a long page
never delays a commit the bank is waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import jinja2
import structlog
from aiohttp import web

from ..metrics import Snapshot
from ..store import CONSOLE_SORTS, PATH_NAME, ConsoleSession, Store
from ..sun.check import check
from ..sun.links import InvalidLink, verify_token
from ..sun.model import Routing
from ..sun.schedule import Schedule, on_call_detail, roster_timeline
from . import auth, render
from .config import WebConfig
from .live import Live
from .sources import (
    DEVICE_STATES,
    IncidentNotFound,
    NoSupervision,
    Supervision,
    Unsupported,
)
from .storage import ConsoleStore

T = TypeVar("T")
P = ParamSpec("P")
log = structlog.get_logger("callhome.console")

SESSION_COOKIE = "callhome_session"
LOGIN_COOKIE = "callhome_login"
"""Before a session: the double-submit token of the login and signed-link forms."""
PAGE = 200
PATH_CHOICES = ("modem", "ip", "failed")
"""The device list's path filter: heard on the modem, over TCP, or a path failed (a
centre that names its paths otherwise types `?path=NAME`)."""
OVERVIEW_ROWS = 50
HERE = Path(__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Console:
    """Everything the handlers share."""

    store: ConsoleStore
    sqlite: Store
    """The centre's store (SQLite or PostgreSQL), read through `store`'s thread."""
    config: WebConfig
    live: Live = field(default_factory=Live)
    supervision: Supervision | None = None
    """None: what exists without supervision (`NoSupervision` over this store)."""
    routing: Routing | None = None
    clock: Callable[[], float] = time.time
    limiter: auth.LoginLimiter = field(default_factory=auth.LoginLimiter)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tls: ssl.SSLContext | None = None
    addresses: list[Any] = field(default_factory=list)
    """Where it listens, once serving (port 0 in the config: the one the system chose)."""

    @property
    def source(self) -> Supervision:
        if self.supervision is None:
            self.supervision = NoSupervision(self.store, self.sqlite)
        return self.supervision


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
SESSION: web.RequestKey[ConsoleSession] = web.RequestKey("session", ConsoleSession)
LOGIN_CSRF: web.RequestKey[str] = web.RequestKey("login_csrf", str)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped unless a template says otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = render.when
    # one path segment: jinja's urlencode leaves "/" as it is, so a device named
    # "rack/3" linked to /devices/rack/3, which no route serves
    env.filters["segment"] = lambda value: quote(str(value), safe="")
    return env


TEMPLATES = _templates()


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


def _session(request: web.Request) -> ConsoleSession | None:
    return request.get(SESSION)


def _secure(request: web.Request, config: WebConfig) -> bool:
    if config.tls:
        return True
    return config.behind_proxy and request.headers.get("X-Forwarded-Proto", "") == "https"


def _address(request: web.Request, config: WebConfig) -> str:
    if config.behind_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


def page(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    console = _console(request)
    session = _session(request)
    now = console.clock()
    text = TEMPLATES.get_template(template).render(
        session=session,
        user=session.account if session else None,
        csrf=session.csrf if session else request.get(LOGIN_CSRF, ""),
        may=lambda needed: session is not None and auth.may(session.account.role, needed),
        now=now,
        ago=lambda at: render.ago(at, now),
        supported=console.source.supported,
        path=request.path,
        **values,
    )
    response = web.Response(text=text, status=status, content_type="text/html")
    if LOGIN_CSRF in request and session is None:
        response.set_cookie(
            LOGIN_COOKIE,
            request[LOGIN_CSRF],
            httponly=True,
            secure=_secure(request, console.config),
            samesite="Strict",
            path="/",
        )
    return response


# -- middleware -------------------------------------------------------------------------

PUBLIC = ("/login", "/static/", "/metrics", "/ack")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # signed links carry their token in the URL: never send it on as a referrer
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    console = _console(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        session = await console.store.read(
            console.sqlite.console_session, auth.token_hash(token), console.clock()
        )
        if session is not None:
            request[SESSION] = session
    public = any(request.path.startswith(prefix) for prefix in PUBLIC)
    if SESSION not in request:
        # the login and signed-link forms: a double-submit token until there is a session
        request[LOGIN_CSRF] = request.cookies.get(LOGIN_COOKIE) or auth.new_token()
        if not public:
            if request.method == "GET":
                raise web.HTTPSeeOther(f"/login?next={request.rel_url}")
            raise web.HTTPForbidden(text="log in first")
    if request.method == "POST":
        form = await request.post()
        given = form.get("csrf")
        session = _session(request)
        expected = session.csrf if session else request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not isinstance(given, str) or not auth.same_token(given, expected):
            log.warning("console.csrf_refused", path=request.path)
            raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong: reload")
    return await handler(request)


def requires(role: str) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            session = _session(request)
            if session is None or not auth.may(session.account.role, role):
                raise web.HTTPForbidden(text=f"this needs the {role} role")
            return await handler(request)

        return checked

    return wrap


async def audit(
    request: web.Request, action: str, target: str | None = None, detail: str | None = None
) -> None:
    console = _console(request)
    session = _session(request)
    who = session.account.name if session else "anonymous"
    await _audit(console, who, action, target, detail)


async def _audit(
    console: Console, who: str, action: str, target: str | None, detail: str | None
) -> None:
    await console.store.read(
        console.sqlite.console_audit, who, action, target, detail, console.clock()
    )
    log.info("console.action", who=who, action=action, target=target)
    console.live.publish("audit", {"action": action})


# -- login ------------------------------------------------------------------------------


def _next(value: Any) -> str:
    # only a path of this site: never an open redirect
    text = value if isinstance(value, str) else "/"
    return text if text.startswith("/") and not text.startswith("//") else "/"


async def login_form(request: web.Request) -> web.StreamResponse:
    if _session(request) is not None:
        raise web.HTTPSeeOther("/")
    return page(request, "login.html", next=_next(request.query.get("next")), error=None)


async def login(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    form = await request.post()
    name = str(form.get("name", ""))[:100]
    password = str(form.get("password", ""))[:1000]
    now = console.clock()
    keys = (f"address:{_address(request, console.config)}", f"account:{name}")
    if not all(console.limiter.allowed(key, now) for key in keys):
        wait = max(console.limiter.retry_after(key, now) for key in keys)
        await _audit(console, name or "anonymous", "login refused (rate limit)", None, None)
        response = page(
            request,
            "login.html",
            status=429,
            next=_next(form.get("next")),
            error=f"too many failed logins: try again in {math.ceil(wait)} s",
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    account = await console.store.read(console.sqlite.console_account, name)
    if not auth.verify_password(account.password_hash if account else None, password):
        for key in keys:
            console.limiter.failed(key, now)
        await _audit(console, name or "anonymous", "login failed", None, None)
        return page(
            request,
            "login.html",
            status=401,
            next=_next(form.get("next")),
            error="wrong name or password",
        )
    assert account is not None
    for key in keys:
        console.limiter.succeeded(key)
    token, csrf = auth.new_token(), auth.new_token()
    await console.store.read(
        console.sqlite.console_start_session,
        auth.token_hash(token),
        account.name,
        csrf,
        now,
        now + console.config.session_lifetime,
    )
    await _audit(console, account.name, "logged in", None, None)
    response = web.HTTPSeeOther(_next(form.get("next")))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=_secure(request, console.config),
        samesite="Strict",
        path="/",
        max_age=int(console.config.session_lifetime),
    )
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    await audit(request, "logged out")
    await console.store.read(console.sqlite.console_end_session, auth.token_hash(token))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# -- pages ------------------------------------------------------------------------------


def duty(console: Console, now: float) -> dict[str, Any] | None:
    """Who is on duty and on call now (None when no oncall.toml is configured)."""
    routing = console.routing
    if routing is None:
        return None
    at = datetime.fromtimestamp(now, UTC)
    schedule = Schedule(routing)
    # the stretch under way, to its real end (`watch()` looks one second ahead only)
    watch = schedule.timeline(at, at + timedelta(days=8))[0]
    roster = schedule.roster_of(watch.site)
    person, why = on_call_detail(roster, at) if roster else (None, "no roster")
    return {
        "site": watch.site.name if watch.site else None,
        "open": watch.open,
        "until": watch.end.timestamp(),
        "person": person,
        "why": why,
    }


async def overview(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    now = console.clock()
    summary = await console.source.summary(now, OVERVIEW_ROWS)
    incidents, open_count = await console.source.incidents(open_only=True, limit=OVERVIEW_ROWS)
    calls = await console.store.read(console.sqlite.calls, limit=20)
    return page(
        request,
        "overview.html",
        duty=duty(console, now),
        ports=console.live.ports(),
        has_bank=console.live.has_bank,
        summary=summary,
        incidents=incidents,
        open_count=open_count,
        calls=calls,
        device_total=sum(summary.counts.values()),
    )


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


async def devices_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    now = console.clock()
    query = request.query
    state, site, text = query.get("state", ""), query.get("site", ""), query.get("q", "")
    customer = query.get("customer", "")
    sort = query.get("sort", "name")
    sort = sort if sort in CONSOLE_SORTS else "name"
    state = state if state in DEVICE_STATES else ""
    path = query.get("path", "")
    path = path if PATH_NAME.fullmatch(path) and console.source.supported else ""
    number = _int(query.get("page"), 0)
    shown, total = await console.source.device_page(
        now,
        state=state,
        site=site,
        text=text,
        sort=sort,
        offset=number * PAGE,
        limit=PAGE,
        path=path,
        customer=customer,
    )
    sites = await console.store.read(console.sqlite.console_sites)
    customers = await console.store.read(console.sqlite.console_customers)
    return page(
        request,
        "devices.html",
        rows=shown,
        total=total,
        number=number,
        pages=max(1, math.ceil(total / PAGE)),
        states=DEVICE_STATES,
        sites=sites,
        customers=customers,
        filters={
            "state": state,
            "site": site,
            "customer": customer,
            "q": text,
            "path": path,
            "sort": sort,
        },
        path_choices=PATH_CHOICES,
        sorts=list(CONSOLE_SORTS),
    )


async def device_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    now = console.clock()
    name = request.match_info["name"]
    device = await console.store.read(console.sqlite.console_device, name)
    if device is None:
        raise web.HTTPNotFound(text=f"no device named {name!r}")
    state = (await console.source.device_states([device], now))[device.name]
    calls = await console.store.read(console.sqlite.calls, device=name, limit=50)
    reports = await console.store.read(console.sqlite.messages, device=name, limit=50)
    incidents, _ = await console.source.incidents(open_only=False, device=name, limit=50)
    return page(
        request,
        "device.html",
        device=device,
        state=state,
        fingerprint=render.fingerprint(device.public_key),
        calls=calls,
        reports=reports,
        incidents=incidents,
    )


async def device_test(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    name = request.match_info["name"]
    form = await request.post()
    hours = _int(str(form.get("hours", "")), 0)
    if not 1 <= hours <= 72:
        raise web.HTTPBadRequest(text="hours: between 1 and 72")
    now = console.clock()
    session = _session(request)
    assert session is not None
    try:
        await console.source.put_on_test(name, session.account.name, now + hours * 3600, now)
    except Unsupported as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    await audit(request, "put on test", f"device {name}", f"{hours} h")
    raise web.HTTPSeeOther(f"/devices/{quote(name, safe='')}")


async def calls_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    device = request.query.get("device") or None
    calls = await console.store.read(console.sqlite.calls, device=device, limit=PAGE)
    return page(request, "calls.html", calls=calls, device=device or "")


async def reports_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    device = request.query.get("device") or None
    kind = request.query.get("kind") or None
    if kind not in (None, "report", "line-test", "inventory"):
        kind = None
    messages = await console.store.read(
        console.sqlite.messages, device=device, kind=kind, limit=100
    )
    return page(
        request,
        "reports.html",
        messages=[(m, render.decode(m.content)) for m in messages],
        device=device or "",
        kind=kind or "",
    )


async def incidents_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    show_all = request.query.get("all") == "1"
    incidents, total = await console.source.incidents(open_only=not show_all, limit=PAGE)
    return page(request, "incidents.html", incidents=incidents, total=total, show_all=show_all)


def _incident_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def incident_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    incident = await console.source.incident(_incident_id(request))
    if incident is None:
        raise web.HTTPNotFound(text="no such incident")
    return page(request, "incident.html", incident=incident)


async def _act(
    request: web.Request,
    console: Console,
    who: str,
    incident_id: int,
    action: str,
    note: str = "",
) -> None:
    now = console.clock()
    try:
        if action == "ack":
            await console.source.acknowledge(incident_id, who, now)
        else:
            await console.source.resolve(incident_id, who, note, now)
    except IncidentNotFound:
        raise web.HTTPNotFound(text="no such incident") from None
    except Unsupported as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    verb = "acknowledged" if action == "ack" else "resolved"
    await _audit(console, who, verb, f"incident {incident_id}", note or None)
    console.live.publish("incident", {"id": incident_id, "change": verb})


async def incident_ack(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    assert session is not None
    incident_id = _incident_id(request)
    await _act(request, _console(request), session.account.name, incident_id, "ack")
    raise web.HTTPSeeOther(f"/incidents/{incident_id}")


async def incident_resolve(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    assert session is not None
    incident_id = _incident_id(request)
    form = await request.post()
    note = str(form.get("note", "")).strip()[:2000]
    if not note:
        raise web.HTTPBadRequest(text="resolving needs a note: what was done")
    await _act(request, _console(request), session.account.name, incident_id, "resolve", note)
    raise web.HTTPSeeOther(f"/incidents/{incident_id}")


async def rosters_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    now = console.clock()
    routing = console.routing
    if routing is None:
        return page(request, "rosters.html", routing=None)
    start = datetime.fromtimestamp(now, UTC)
    end = start + timedelta(days=7)
    schedule = Schedule(routing)
    watches = schedule.timeline(start, end)
    rosters = {
        name: roster_timeline(roster, start, end) for name, roster in routing.rosters.items()
    }
    coverage = check(routing, start, 7)
    return page(
        request,
        "rosters.html",
        routing=routing,
        duty=duty(console, now),
        watches=watches,
        rosters=rosters,
        findings=coverage.findings,
    )


async def audit_page(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    entries = await console.store.read(console.sqlite.console_audit_log, limit=500)
    return page(request, "audit.html", entries=entries)


# -- signed acknowledge links -----------------------------------------------------------


def _token(request: web.Request) -> str:
    # the notifications' ack_url names either /ack/{token} or /ack?token={token}
    return request.match_info.get("token") or request.query.get("token", "")


def _claim(request: web.Request) -> int:
    console = _console(request)
    secret = console.routing.link_secret if console.routing else None
    if secret is None:
        raise web.HTTPNotFound(text="signed links are not configured (oncall.toml link_secret)")
    try:
        claim = verify_token(secret, _token(request), console.clock(), "ack")
    except InvalidLink as exc:
        raise web.HTTPForbidden(text=f"this link cannot be used: {exc}") from None
    return claim.incident_id


async def link_form(request: web.Request) -> web.StreamResponse:
    # a GET never acts: mail scanners and link previews open links too
    incident_id = _claim(request)
    incident = await _console(request).source.incident(incident_id)
    return page(
        request,
        "link.html",
        incident_id=incident_id,
        incident=incident,
        token=_token(request),
    )


async def link_ack(request: web.Request) -> web.StreamResponse:
    incident_id = _claim(request)
    session = _session(request)
    who = session.account.name if session else "signed link"
    await _act(request, _console(request), who, incident_id, "ack")
    return page(request, "link.html", incident_id=incident_id, incident=None, token="", done=True)


# -- live updates and metrics -----------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a note per change; the page fetches itself again."""
    console = _console(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    await response.write(b"retry: 3000\n\n")
    queue = console.live.subscribe()
    stopping = asyncio.ensure_future(console.stopping.wait())
    try:
        while not console.stopping.is_set():
            getting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getting, stopping}, timeout=15.0, return_when=asyncio.FIRST_COMPLETED
            )
            if getting in done:
                kind, data = getting.result()
                await response.write(f"event: {kind}\ndata: {data}\n\n".encode())
            else:
                getting.cancel()
                if not done:
                    await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        stopping.cancel()
        console.live.unsubscribe(queue)
    return response


async def snapshot(console: Console) -> Snapshot:
    now = console.clock()
    summary = await console.source.summary(now, 0)
    pending, failed = await console.store.read(console.sqlite.console_outbox_counts)
    live = console.live
    return Snapshot(
        devices=summary.counts,
        incidents_open=await console.source.open_by_kind(),
        outbox_pending=pending,
        outbox_failed=failed,
        ports=live.port_counts(),
        calls_in_progress=sum(p.in_call for p in live.ports()) if live.has_bank else None,
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    console = _console(request)
    token = console.config.metrics_token
    if token is not None and not auth.same_token(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    ):
        raise web.HTTPUnauthorized(text="this needs the metrics token")
    console.live.metrics.set_snapshot(await snapshot(console))
    return web.Response(
        body=console.live.metrics.render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


# -- the application --------------------------------------------------------------------


def make_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[security_headers, sessions], client_max_size=64 * 1024)
    app[CONSOLE] = console
    viewer, operator = requires("viewer"), requires("operator")
    app.add_routes(
        [
            web.get("/login", login_form),
            web.post("/login", login),
            web.post("/logout", viewer(logout)),
            web.get("/", viewer(overview)),
            web.get("/devices", viewer(devices_page)),
            web.get("/devices/{name}", viewer(device_page)),
            web.post("/devices/{name}/test", operator(device_test)),
            web.get("/calls", viewer(calls_page)),
            web.get("/reports", viewer(reports_page)),
            web.get("/incidents", viewer(incidents_page)),
            web.get("/incidents/{id}", viewer(incident_page)),
            web.post("/incidents/{id}/ack", operator(incident_ack)),
            web.post("/incidents/{id}/resolve", operator(incident_resolve)),
            web.get("/rosters", viewer(rosters_page)),
            web.get("/audit", operator(audit_page)),
            web.get("/ack/{token}", link_form),
            web.post("/ack/{token}", link_ack),
            web.get("/ack", link_form),
            web.post("/ack", link_ack),
            web.get("/events", viewer(events)),
            web.get("/metrics", metrics),
            web.static("/static", HERE / "static"),
        ]
    )

    async def on_shutdown(app: web.Application) -> None:
        console.stopping.set()

    app.on_shutdown.append(on_shutdown)
    return app


def tls_context(config: WebConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


@contextlib.asynccontextmanager
async def serving(console: Console, context: ssl.SSLContext | None = None) -> Any:
    """Serve the console on the running loop until the block ends; yields the runner
    (its `addresses` say where, when port 0 picked one)."""
    runner = web.AppRunner(make_app(console), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, console.config.host, console.config.port, ssl_context=context)
    await site.start()
    console.addresses = list(runner.addresses)
    log.info(
        "console.listening",
        addresses=[str(a) for a in runner.addresses],
        tls=context is not None,
    )
    try:
        yield runner
    finally:
        console.stopping.set()
        await runner.cleanup()
