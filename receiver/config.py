"""The centre's config file (TOML), written by `callhome-receiver init`."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callhome.config import modem_settings, port_urls
from callhome.tcp import parse_endpoint
from modem_drivers.configfile import (
    Table,
    check_encodable,
    dump_toml,
    format_duration,
    load_toml,
    loads_toml,
)

from .supervision.settings import SupervisionSettings, parse_supervision

if TYPE_CHECKING:
    from .ip import IpLimits

DEFAULT_PATH = Path("/etc/callhome/centre.toml")
TEST_INTERVAL = (60.0, 366 * 86400.0)
"""The range of a device's line-test interval, in seconds."""
GRACE = (0.0, 30 * 86400.0)
DSN_SCHEMES = ("postgresql://", "postgres://")
"""How `[centre] store` names a PostgreSQL database rather than a SQLite file."""


def default_receiver() -> str:
    """The name a receiver goes by when its config gives none: the host's."""
    return socket.gethostname() or "receiver"


def is_dsn(value: str) -> bool:
    """Whether a store setting names a PostgreSQL database rather than a SQLite file."""
    return value.startswith(DSN_SCHEMES)


"""The range of how late a line test may be, in seconds."""


ENV_DSN = "CALLHOME_STORE_DSN"
"""The environment variable that can hold the store's DSN (so the password stays out of
the config file); it wins over the config."""


def _ip_limits() -> IpLimits:
    # imported when needed: receiver.ip brings the whole bank, which `callhome-receiver
    # calls` (and every other command but `run`) never uses
    from .ip import IpLimits

    return IpLimits()


EVENT_LOOPS = ("asyncio", "uvloop")


@dataclass
class CentreConfig:
    path: Path
    name: str = "centre"
    receiver: str = field(default_factory=lambda: default_receiver())
    """`[centre] receiver`: this receiver's name among those sharing one store (one per
    site; recorded on its calls). Default: the host's name."""
    key: Path = Path("centre.key")
    event_loop: str = "asyncio"
    """`[centre] event_loop`: "asyncio" (the standard library's), or "uvloop" (libuv's,
    `pip install 'callhome[uvloop]'`: 5 to 14 % less CPU per TCP call)."""
    store: Path = Path("centre.db")
    store_dsn: str | None = None
    """A PostgreSQL store (`postgresql://...`) instead of the SQLite file `store`."""
    ports: list[str] = field(default_factory=list)
    profile: str = "auto"
    init: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    rings: int = 1
    wait_for_caller_id: bool = False
    health_check: float = 300.0
    drain: float = 60.0
    time_scale: float = 1.0
    test_interval: float = 86400.0
    grace: float = 900.0
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    web: dict[str, Any] = field(default_factory=dict)
    """The console's [web] table, read by receiver/web/config.py."""
    ip_listen: list[str] = field(default_factory=list)
    """`[ip] listen`: TCP addresses (host:port) the receiver also answers on."""
    ip_limits: IpLimits = field(default_factory=_ip_limits)
    ip_proxies: list[str] = field(default_factory=list)
    """`[ip] proxies`: TCP proxies (addresses or networks) that send a PROXY header."""

    @property
    def state_dir(self) -> Path:
        """Where the receiver keeps its small state files (`ip-status.json`): beside the
        SQLite store, or beside this config file when the store is PostgreSQL (not the
        working directory a service happened to start in)."""
        return self.path.parent if self.store_dsn else self.store.parent

    def dump(self) -> str:
        return dump_toml(
            {
                "centre": {
                    "name": self.name,
                    "key": str(self.key),
                    "store": self.store_dsn or str(self.store),
                    "event_loop": self.event_loop,
                },
                "bank": {
                    "ports": self.ports,
                    "profile": self.profile,
                    **({"init": list(self.init)} if self.init else {}),
                    **({"skip": list(self.skip)} if self.skip else {}),
                    "rings": self.rings,
                    "wait_for_caller_id": self.wait_for_caller_id,
                    "health_check": format_duration(self.health_check),
                    "drain": format_duration(self.drain),
                    "time_scale": self.time_scale,
                },
                "devices": {
                    "test_interval": format_duration(self.test_interval),
                    "grace": format_duration(self.grace),
                },
                **({"ip": {"listen": self.ip_listen}} if self.ip_listen else {}),
            },
            header="callhome centre configuration (callhome-receiver)\n"
            "paths are relative to this file's folder",
        )


def load_centre_config(path: str | Path) -> CentreConfig:
    return parse_centre_config(load_toml(path), path)


def check_centre_config(config: CentreConfig) -> CentreConfig:
    """What `load_centre_config` will make of `config` once written: `init` checks this
    before it writes anything, so that every file it writes can be read back."""
    text = config.dump()
    check_encodable(text, config.path)
    return parse_centre_config(loads_toml(text, config.path), config.path)


def parse_centre_config(data: dict[str, Any], path: str | Path) -> CentreConfig:
    path = Path(path)
    root = Table(data, "", path)
    config = CentreConfig(path=path)
    centre = root.table("centre")
    config.name = centre.get("name", str, "centre")
    config.receiver = centre.get("receiver", str, config.receiver)
    if not config.receiver.strip() or len(config.receiver) > 63 or ":" in config.receiver:
        raise centre.error("receiver", "give a name of 1 to 63 characters, without ':'")
    config.key = centre.path_value("key")
    config.event_loop = centre.get("event_loop", str, "asyncio")
    if config.event_loop not in EVENT_LOOPS:
        raise centre.error("event_loop", f"expected one of {', '.join(EVENT_LOOPS)}")
    if is_dsn(centre.get("store", str, "")):
        config.store_dsn = centre.get("store", str)
        _check_dsn(centre, "store", config.store_dsn)
    else:
        config.store = centre.path_value("store")
    centre.finish()
    bank = root.table("bank")
    config.ports = port_urls(bank, "ports", [])
    settings = modem_settings(bank)
    config.profile, config.time_scale = settings.profile, settings.time_scale
    config.init, config.skip = settings.init, settings.skip
    config.rings = bank.number("rings", int, 1, minimum=1, maximum=10)
    config.wait_for_caller_id = bank.get("wait_for_caller_id", bool, False)
    config.health_check = bank.duration("health_check", "5m", minimum=1.0, maximum=86400.0)
    config.drain = bank.duration("drain", "60s", maximum=3600.0)
    bank.finish()
    raw_sockets = [port for port in config.ports if port.startswith("socket://")]
    if config.event_loop == "uvloop" and raw_sockets:
        # pyserial-asyncio-fast drives a socket:// port through asyncio's own socket
        # transport (its flush, its socket object), which uvloop's transports lack
        raise centre.error(
            "event_loop",
            f"uvloop cannot drive socket:// ports ({raw_sockets[0]}): use asyncio, "
            "or reach the port as rfc2217://",
        )
    devices = root.table("devices")
    config.test_interval = devices.duration(
        "test_interval", "24h", minimum=TEST_INTERVAL[0], maximum=TEST_INTERVAL[1]
    )
    config.grace = devices.duration("grace", "15m", minimum=GRACE[0], maximum=GRACE[1])
    devices.finish()
    config.supervision = parse_supervision(root.table("supervision"))
    config.web = root.get("web", dict, {})
    config.ip_listen, config.ip_limits, config.ip_proxies = _ip_settings(root.table("ip"))
    root.finish()
    return config


def _check_dsn(table: Table, key: str, dsn: str) -> None:
    import psycopg
    import psycopg.conninfo

    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        # libpq's sentence names the fault; the DSN itself (and its password) is not shown
        raise table.error(key, f"not a usable PostgreSQL DSN: {exc}") from None


def _ip_settings(table: Table) -> tuple[list[str], IpLimits, list[str]]:
    """`[ip]`: where to listen for devices over TCP (none by default) and the limits
    that protect the listener before a peer has authenticated (docs/operations.md)."""
    listen = table.strings("listen", [])
    for address in listen:
        try:
            parse_endpoint(address, listen=True)
        except ValueError as exc:
            raise table.error("listen", str(exc)) from None
    from .ip import IpLimits

    default = IpLimits()
    limits = IpLimits(
        handshake_timeout=table.duration(
            "handshake_timeout", default.handshake_timeout, minimum=0.5, maximum=120.0
        ),
        max_connections=table.number(
            "max_connections", int, default.max_connections, minimum=1, maximum=1_000_000
        ),
        max_handshakes=table.number(
            "max_handshakes", int, default.max_handshakes, minimum=1, maximum=1_000_000
        ),
        max_handshakes_per_source=table.number(
            "max_handshakes_per_source",
            int,
            default.max_handshakes_per_source,
            minimum=1,
            maximum=1_000_000,
        ),
        rate=table.number("rate", float, default.rate, minimum=0.001, maximum=1e6),
        burst=table.number("burst", int, default.burst, minimum=1, maximum=1_000_000),
        sources=table.number("sources", int, default.sources, minimum=16, maximum=10_000_000),
        evict_after=table.duration("evict_after", default.evict_after, minimum=0.1, maximum=120.0),
        handshake_queue=table.number(
            "handshake_queue", int, default.handshake_queue, minimum=1, maximum=1_000_000
        ),
        handshakes_per_turn=table.number(
            "handshakes_per_turn", int, default.handshakes_per_turn, minimum=1, maximum=1024
        ),
    )
    proxies = table.strings("proxies", [])
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise table.error("proxies", f"{proxy!r} is not an address or network") from None
    table.finish()
    return listen, limits, proxies
