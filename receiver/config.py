"""The centre's config file (TOML), written by `callhome-receiver init`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callhome.config import modem_settings, port_urls
from modem_drivers.configfile import (
    Table,
    check_encodable,
    dump_toml,
    format_duration,
    load_toml,
    loads_toml,
)

DEFAULT_PATH = Path("/etc/callhome/centre.toml")
TEST_INTERVAL = (60.0, 366 * 86400.0)
"""The range of a device's line-test interval, in seconds."""
GRACE = (0.0, 30 * 86400.0)
DSN_SCHEMES = ("postgresql://", "postgres://")
"""How `[centre] store` names a PostgreSQL database rather than a SQLite file."""


def is_dsn(value: str) -> bool:
    """Whether a store setting names a PostgreSQL database rather than a SQLite file."""
    return value.startswith(DSN_SCHEMES)


"""The range of how late a line test may be, in seconds."""


@dataclass
class CentreConfig:
    path: Path
    name: str = "centre"
    key: Path = Path("centre.key")
    store: Path = Path("centre.db")
    store_dsn: str | None = None
    """A PostgreSQL store (`postgresql://...`) instead of the SQLite file `store`."""
    ports: list[str] = field(default_factory=list)
    profile: str = "auto"
    init: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    rings: int = 1
    health_check: float = 300.0
    drain: float = 60.0
    time_scale: float = 1.0
    test_interval: float = 86400.0
    grace: float = 900.0
    web: dict[str, Any] = field(default_factory=dict)
    """The console's [web] table, read by receiver/web/config.py."""

    def dump(self) -> str:
        return dump_toml(
            {
                "centre": {
                    "name": self.name,
                    "key": str(self.key),
                    "store": self.store_dsn or str(self.store),
                },
                "bank": {
                    "ports": self.ports,
                    "profile": self.profile,
                    **({"init": list(self.init)} if self.init else {}),
                    **({"skip": list(self.skip)} if self.skip else {}),
                    "rings": self.rings,
                    "health_check": format_duration(self.health_check),
                    "drain": format_duration(self.drain),
                    "time_scale": self.time_scale,
                },
                "devices": {
                    "test_interval": format_duration(self.test_interval),
                    "grace": format_duration(self.grace),
                },
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
    config.key = centre.path_value("key")
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
    config.health_check = bank.duration("health_check", "5m", minimum=1.0, maximum=86400.0)
    config.drain = bank.duration("drain", "60s", maximum=3600.0)
    bank.finish()
    devices = root.table("devices")
    config.test_interval = devices.duration(
        "test_interval", "24h", minimum=TEST_INTERVAL[0], maximum=TEST_INTERVAL[1]
    )
    config.grace = devices.duration("grace", "15m", minimum=GRACE[0], maximum=GRACE[1])
    devices.finish()
    config.web = root.get("web", dict, {})
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
