"""The follow-the-sun model as read from the routing file: sites, rosters, people,
routes, escalation policies and where notifications go. Pure data and its checks: the
loader reads files (the holiday files); nothing here reads a clock.

Every mistake is one `ConfigError` naming the file and the key, found at start, not at
three in the morning when the first incident comes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from modem_drivers.configfile import ConfigError, Table, load_toml

from ..incident_events import Severity
from .localtime import local_to_utc

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 1440
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
TARGET_KINDS = ("centre", "centres", "oncall", "roster", "person", "group")
"""What an escalation step may notify: the on-duty centre, every centre, the on-call
person of the on-duty centre's roster, `roster:NAME`, `person:NAME`, `group:NAME`."""
MATCH_KEYS = ("customer", "site", "product", "device", "severity", "kind")


def parse_clock(text: str, *, end: bool = False) -> int:
    """Minutes since midnight of "HH:MM"; "24:00" only as the end of a window."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM)")
    hours, minutes = int(match.group(1)), int(match.group(2))
    value = hours * 60 + minutes
    if minutes >= 60 or value > DAY_MINUTES or (value == DAY_MINUTES and not end):
        raise ValueError(f"not a time of day: {text!r}" + ("" if end else " (24:00 only ends)"))
    return value


def clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """Local wall-clock hours on one weekday: from `start` minutes after midnight to
    `end` (`end <= start`: the window runs past midnight into the next day)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return (
            self.end - self.start if self.end > self.start else DAY_MINUTES - self.start + self.end
        )

    def __str__(self) -> str:
        return f"{clock_text(self.start)}-{clock_text(self.end or DAY_MINUTES)}"


@dataclass(frozen=True)
class WeeklyHours:
    """Windows per weekday (0 = Monday). A window belongs to the day it starts on."""

    days: tuple[tuple[Window, ...], ...] = ((),) * 7

    def windows(self, weekday: int) -> tuple[Window, ...]:
        return self.days[weekday]

    @property
    def empty(self) -> bool:
        return not any(self.days)


@dataclass(frozen=True)
class Contact:
    """Where a centre or a person is told: e-mail addresses, a webhook, a command (the
    names of `[webhook.NAME]` and `[command.NAME]` tables)."""

    email: tuple[str, ...] = ()
    webhook: str | None = None
    command: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.email or self.webhook or self.command)


@dataclass(frozen=True)
class Site:
    name: str
    zone: ZoneInfo
    hours: WeeklyHours
    holidays: frozenset[date] = frozenset()
    roster: str | None = None
    contact: Contact = Contact()


@dataclass(frozen=True)
class Layer:
    """One rotation: `members` take turns of `turn`, the first from `start` (a local
    wall-clock time in the roster's zone when `anchor` is "local", UTC when "utc").
    `restrict`: the only hours the layer applies (empty: always)."""

    name: str
    members: tuple[str, ...]
    turn: timedelta
    start: datetime
    anchor: Literal["local", "utc"] = "local"
    restrict: WeeklyHours | None = None


@dataclass(frozen=True)
class Override:
    who: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Roster:
    name: str
    zone: ZoneInfo
    layers: tuple[Layer, ...]
    """Lowest first: the last layer that applies wins."""
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class Route:
    match: tuple[tuple[str, frozenset[str]], ...] = ()
    policy: str | None = None
    cont: bool = False
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Step:
    targets: tuple[str, ...]
    wait: float
    """Seconds to wait after this step before the next one."""


@dataclass(frozen=True)
class Policy:
    name: str
    steps: tuple[Step, ...]
    repeat: int = 1
    """How many times the whole list of steps runs while nobody acknowledges."""
    hold: frozenset[Severity] = frozenset()
    """Severities held until the next business hours instead of paging out of hours."""


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: bytes
    timeout: float = 10.0


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    timeout: float = 30.0


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 25
    sender: str = "callhome@localhost"
    starttls: Literal["auto", "require", "never"] = "auto"
    timeout: float = 30.0
    username: str | None = None
    password: str | None = None
    cafile: Path | None = None
    """Certificates to trust for STARTTLS besides the system's (a private CA)."""


@dataclass(frozen=True)
class Delivery:
    attempts: int = 6
    initial: float = 10.0
    cap: float = 600.0
    claim: float = 300.0
    """How long a notification a receiver took to send stays its own (PostgreSQL):
    one whose receiver died mid-send is sent again by another after this long."""


@dataclass(frozen=True)
class Routing:
    """Everything the routing file says."""

    path: Path
    sites: tuple[Site, ...]
    rosters: dict[str, Roster] = field(default_factory=dict)
    people: dict[str, Contact] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    default_policy: str | None = None
    policies: dict[str, Policy] = field(default_factory=dict)
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    smtp: Smtp | None = None
    delivery: Delivery = Delivery()
    link_secret: bytes | None = None
    ack_url: str | None = None
    """The console's acknowledge page, with `{token}` where the signed token goes."""
    link_ttl: float = 7 * 86400.0

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


# -- reading ---------------------------------------------------------------------------


ROUTING_NAME = "oncall.toml"
"""The routing file's name, in the folder of the centre's config."""


def load_routing(path: str | Path) -> Routing:
    return parse_routing(load_toml(path), path)


def routing_next_to(config_path: str | Path) -> Routing | None:
    """The routing file of a centre, checked (a ConfigError names file and key); None
    when the centre has none (incidents then reach nobody: `run` should say so)."""
    path = Path(config_path).parent / ROUTING_NAME
    return load_routing(path) if path.exists() else None


def _zone(table: Table, key: str, default: Any = ...) -> ZoneInfo:
    name = table.get(key, str, default)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.error(key, f"unknown time zone {name!r} (use an IANA name)") from None


def _name(table: Table, key: str = "name") -> str:
    value = table.get(key, str, ...)
    if not _NAME.match(value):
        raise table.error(key, f"{value!r}: use letters, digits, '.', '_' or '-'")
    return str(value)


def _day_list(text: str) -> list[int]:
    """ "mon", "mon-fri", "sat-sun", "daily"."""
    text = text.strip().lower()
    if text in ("daily", "all", "mon-sun"):
        return list(range(7))
    if "-" in text:
        first, last = text.split("-", 1)
        if first in DAYS and last in DAYS and DAYS.index(first) <= DAYS.index(last):
            return list(range(DAYS.index(first), DAYS.index(last) + 1))
    elif text in DAYS:
        return [DAYS.index(text)]
    raise ValueError(f"not a weekday or a range of them: {text!r} (mon..sun, mon-fri, daily)")


def parse_window(text: str) -> Window:
    if text.count("-") != 1:
        raise ValueError(f"not a window: {text!r} (use HH:MM-HH:MM)")
    first, last = text.split("-")
    start, end = parse_clock(first), parse_clock(last, end=True)
    if start == end:
        raise ValueError(f"empty window: {text!r} (a whole day is 00:00-24:00)")
    if end == DAY_MINUTES:
        end = 0  # runs to the next midnight
    return Window(start, end)


def parse_hours(table: Table, key: str) -> WeeklyHours:
    sub = table.table(key)
    days: list[list[Window]] = [[] for _ in range(7)]
    for name in list(sub.data):
        value = sub.get(name, (str, list))
        texts = [value] if isinstance(value, str) else value
        try:
            indexes = _day_list(name)
            windows = [parse_window(item) for item in texts if isinstance(item, str)]
            if len(windows) != len(texts):
                raise ValueError("expected a window or a list of windows")
        except ValueError as exc:
            raise sub.error(name, str(exc)) from None
        for index in indexes:
            days[index].extend(windows)
    for index, windows in enumerate(days):
        windows.sort(key=lambda w: w.start)
        for before, after in itertools.pairwise(windows):
            if before.end == 0 or before.end > after.start or before.end <= before.start:
                raise table.error(
                    key, f"{DAYS[index]}: windows {before} and {after} overlap or are out of order"
                )
    sub.finish()
    return WeeklyHours(tuple(tuple(w) for w in days))


def _holidays(table: Table) -> frozenset[date]:
    found: set[date] = set()
    for index, item in enumerate(table.get("holidays", list, [])):
        try:
            found.add(item if isinstance(item, date) else date.fromisoformat(item))
        except (TypeError, ValueError):
            raise table.error(f"holidays[{index}]", f"not a date: {item!r}") from None
    if "holidays_file" in table.data:
        path = table.path_value("holidays_file")
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise table.error("holidays_file", f"{path}: cannot read: {exc}") from None
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                found.add(date.fromisoformat(text.split()[0]))
            except ValueError:
                raise ConfigError(f"{path}:{number}: not a date: {text!r}") from None
    return frozenset(found)


def _tables(table: Table, key: str) -> list[Table]:
    """`table.tables(key)`, with the parent's path in the names errors give."""
    out = table.tables(key)
    if table.where:
        for item in out:
            item.where = f"{table.where}.{item.where}"
    return out


def _contact(table: Table) -> Contact:
    email = table.get("email", (str, list), [])
    emails = [email] if isinstance(email, str) else email
    if not all(isinstance(item, str) and "@" in item for item in emails):
        raise table.error("email", "expected an address or a list of addresses")
    return Contact(tuple(emails), table.get("webhook", str), table.get("command", str))


def _local_datetime(table: Table, key: str, zone: ZoneInfo, default: Any = ...) -> datetime:
    """An ISO date-time; one without an offset is a wall-clock time in `zone`."""
    value = table.get(key, (str, datetime, date), default)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise table.error(key, f"not a date and time: {value!r}") from None
    if parsed.tzinfo is None:
        return local_to_utc(parsed, zone)
    return parsed.astimezone(UTC)


def _secret(table: Table, key: str) -> bytes | None:
    if key in table.data:
        text = table.get(key, str)
        if len(text) < 16:
            raise table.error(key, "too short: use at least 16 characters")
        return str(text).encode()
    file_key = f"{key}_file"
    if file_key in table.data:
        path = table.path_value(file_key)
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise table.error(file_key, f"{path}: cannot read: {exc.strerror}") from None
        if len(data) < 16:
            raise table.error(file_key, f"{path}: too short: use at least 16 bytes")
        return data
    return None


def _route(table: Table, policies: set[str]) -> Route:
    match = table.table("match")
    pairs = []
    for key in list(match.data):
        if key not in MATCH_KEYS:
            raise match.error(key, f"cannot match on it (use {', '.join(MATCH_KEYS)})")
        value = match.get(key, (str, list))
        values = [value] if isinstance(value, str) else value
        if not values or not all(isinstance(v, str) for v in values):
            raise match.error(key, "expected a string or a list of strings")
        if key == "severity" and not set(values) <= {s.value for s in Severity}:
            raise match.error(key, f"severities are {', '.join(s.value for s in Severity)}")
        pairs.append((key, frozenset(values)))
    match.finish()
    policy = table.get("policy", str)
    if policy is not None and policy not in policies:
        raise table.error("policy", f"no policy named {policy!r}")
    routes = tuple(_route(sub, policies) for sub in _tables(table, "routes"))
    cont = table.get("continue", bool, False)
    table.finish()
    return Route(tuple(pairs), policy, cont, routes)


def parse_routing(data: dict[str, Any], path: str | Path) -> Routing:
    path = Path(path)
    root = Table(data, "", path)

    sites: list[Site] = []
    site_tables = root.tables("site")
    if not site_tables:
        raise root.error("site", "missing: at least one [[site]]")
    for table in site_tables:
        name = _name(table)
        if any(site.name == name for site in sites):
            raise table.error("name", f"two sites named {name!r}")
        hours = parse_hours(table, "hours")
        if hours.empty:
            raise table.error("hours", "missing: the site's business hours")
        sites.append(
            Site(
                name,
                _zone(table, "zone"),
                hours,
                _holidays(table),
                table.get("roster", str),
                _contact(table),
            )
        )
        table.finish()
    by_site = {site.name: site for site in sites}

    people: dict[str, Contact] = {}
    people_table = root.table("people")
    for name in list(people_table.data):
        person = people_table.table(name)
        if not _NAME.match(name):
            raise people_table.error(name, "use letters, digits, '.', '_' or '-' in names")
        people[name] = _contact(person)
        person.finish()
    people_table.finish()

    rosters: dict[str, Roster] = {}
    for table in root.tables("roster"):
        name = _name(table)
        if name in rosters:
            raise table.error("name", f"two rosters named {name!r}")
        site_name = table.get("site", str)
        if site_name is not None and site_name not in by_site:
            raise table.error("site", f"no site named {site_name!r}")
        if "zone" in table.data or site_name is None:
            zone = _zone(table, "zone")
        else:
            zone = by_site[site_name].zone
        layers: list[Layer] = []
        for layer in _tables(table, "layer"):
            members = tuple(layer.strings("members"))
            for index, member in enumerate(members):
                if member not in people:
                    raise layer.error(f"members[{index}]", f"no person named {member!r}")
            turn = layer.duration("turn", minimum=60.0, maximum=366 * 86400.0)
            anchor = layer.get("anchor", str, "local")
            if anchor not in ("local", "utc"):
                raise layer.error("anchor", "expected 'local' or 'utc'")
            start_text = layer.get("start", (str, datetime, date), ...)
            try:
                start = (
                    start_text
                    if isinstance(start_text, datetime)
                    else datetime.fromisoformat(str(start_text))
                )
            except ValueError:
                raise layer.error("start", f"not a date and time: {start_text!r}") from None
            if start.tzinfo is not None:
                raise layer.error("start", "give a wall-clock time, without an offset")
            restrict = parse_hours(layer, "restrict") if "restrict" in layer.data else None
            layers.append(
                Layer(
                    layer.get("name", str, f"layer {len(layers) + 1}"),
                    members,
                    timedelta(seconds=turn),
                    start,
                    anchor,
                    restrict,
                )
            )
            layer.finish()
        overrides = []
        for item in _tables(table, "override"):
            who = item.get("who", str, ...)
            if who not in people:
                raise item.error("who", f"no person named {who!r}")
            start_at = _local_datetime(item, "from", zone)
            end_at = _local_datetime(item, "until", zone)
            if end_at <= start_at:
                raise item.error("until", "must be after 'from'")
            overrides.append(Override(who, start_at, end_at))
            item.finish()
        rosters[name] = Roster(name, zone, tuple(layers), tuple(overrides))
        table.finish()
    for site, table in zip(sites, site_tables, strict=True):
        if site.roster is not None and site.roster not in rosters:
            raise table.error("roster", f"no roster named {site.roster!r}")

    groups: dict[str, tuple[str, ...]] = {}
    group_table = root.table("groups")
    for name in list(group_table.data):
        group = tuple(group_table.strings(name))
        for member in group:
            if member not in people:
                raise group_table.error(name, f"no person named {member!r}")
        groups[name] = group
    group_table.finish()

    webhooks: dict[str, Webhook] = {}
    hooks = root.table("webhook")
    for name in list(hooks.data):
        hook = hooks.table(name)
        url = hook.get("url", str, ...)
        if not re.match(r"^https?://[^/\s]+", url):
            raise hook.error("url", f"not an http(s) URL: {url!r}")
        secret = _secret(hook, "secret")
        if secret is None:
            raise hook.error("secret", "missing: secret or secret_file (the HMAC key)")
        webhooks[name] = Webhook(name, url, secret, hook.duration("timeout", "10s", minimum=0.1))
        hook.finish()
    hooks.finish()

    commands: dict[str, Command] = {}
    command_table = root.table("command")
    for name in list(command_table.data):
        command = command_table.table(name)
        commands[name] = Command(
            name,
            tuple(command.strings("argv")),
            command.duration("timeout", "30s", minimum=0.1, maximum=3600.0),
        )
        command.finish()
    command_table.finish()

    smtp = None
    if "smtp" in root.data:
        table = root.table("smtp")
        starttls = table.get("starttls", str, "auto")
        if starttls not in ("auto", "require", "never"):
            raise table.error("starttls", "expected 'auto', 'require' or 'never'")
        smtp = Smtp(
            table.get("host", str, ...),
            table.number("port", int, 25, minimum=1, maximum=65535),
            table.get("sender", str, "callhome@localhost"),
            starttls,
            table.duration("timeout", "30s", minimum=0.1, maximum=600.0),
            table.get("username", str),
            table.get("password", str),
            table.path_value("cafile") if "cafile" in table.data else None,
        )
        table.finish()

    delivery_table = root.table("delivery")
    delivery = Delivery(
        delivery_table.number("attempts", int, 6, minimum=1, maximum=100),
        delivery_table.duration("backoff_initial", "10s", minimum=0.001, maximum=3600.0),
        delivery_table.duration("backoff_cap", "10m", minimum=0.001, maximum=86400.0),
        delivery_table.duration("claim", "5m", minimum=1.0, maximum=86400.0),
    )
    delivery_table.finish()

    policies: dict[str, Policy] = {}
    policy_tables = root.tables("policy")
    for table in policy_tables:
        name = _name(table)
        if name in policies:
            raise table.error("name", f"two policies named {name!r}")
        steps = []
        step_tables = _tables(table, "step")
        if not step_tables:
            raise table.error("step", "missing: at least one [[policy.step]]")
        for step in step_tables:
            value = step.get("notify", (str, list), ...)
            targets = [value] if isinstance(value, str) else value
            if not targets:
                raise step.error("notify", "expected at least one target")
            for target in targets:
                problem = _target_problem(target, rosters, people, groups)
                if problem:
                    raise step.error("notify", problem)
            steps.append(Step(tuple(targets), step.duration("wait", "0s", maximum=7 * 86400.0)))
            step.finish()
        hold = table.get("hold", list, [])
        if not set(hold) <= {s.value for s in Severity}:
            raise table.error("hold", f"severities are {', '.join(s.value for s in Severity)}")
        policies[name] = Policy(
            name,
            tuple(steps),
            table.number("repeat", int, 1, minimum=1, maximum=100),
            frozenset(Severity(item) for item in hold),
        )
        table.finish()

    routing_table = root.table("routing")
    default_policy = routing_table.get("default_policy", str)
    if default_policy is not None and default_policy not in policies:
        raise routing_table.error("default_policy", f"no policy named {default_policy!r}")
    link_secret = _secret(routing_table, "link_secret")
    ack_url = routing_table.get("ack_url", str)
    if ack_url is not None and "{token}" not in ack_url:
        raise routing_table.error("ack_url", "must contain {token}")
    if ack_url is not None and link_secret is None:
        raise routing_table.error("ack_url", "needs link_secret or link_secret_file")
    link_ttl = routing_table.duration("link_ttl", "7d", minimum=60.0)
    routing_table.finish()

    routes = tuple(_route(table, set(policies)) for table in root.tables("route"))
    root.finish()

    for owner, contact in [*((s.name, s.contact) for s in sites), *people.items()]:
        if contact.webhook is not None and contact.webhook not in webhooks:
            raise ConfigError(f"{path}: {owner}: no [webhook.{contact.webhook}]")
        if contact.command is not None and contact.command not in commands:
            raise ConfigError(f"{path}: {owner}: no [command.{contact.command}]")
        if contact.email and smtp is None:
            raise ConfigError(f"{path}: {owner} has e-mail addresses but there is no [smtp]")

    return Routing(
        path,
        tuple(sites),
        rosters,
        people,
        groups,
        routes,
        default_policy,
        policies,
        webhooks,
        commands,
        smtp,
        delivery,
        link_secret,
        ack_url,
        link_ttl,
    )


def _target_problem(
    target: str,
    rosters: dict[str, Roster],
    people: dict[str, Contact],
    groups: dict[str, tuple[str, ...]],
) -> str | None:
    kind, _, name = target.partition(":")
    if kind in ("centre", "centres", "oncall") and not name:
        return None
    known: dict[str, Any] = {"roster": rosters, "person": people, "group": groups}
    if kind in known and name:
        return None if name in known[kind] else f"no {kind} named {name!r}"
    return f"{target!r}: use centre, centres, oncall, roster:NAME, person:NAME or group:NAME"
