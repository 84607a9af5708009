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
"""The range of how late a line test may be, in seconds."""


@dataclass
class CentreConfig:
    path: Path
    name: str = "centre"
    key: Path = Path("centre.key")
    store: Path = Path("centre.db")
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

    def dump(self) -> str:
        return dump_toml(
            {
                "centre": {"name": self.name, "key": str(self.key), "store": str(self.store)},
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
    devices = root.table("devices")
    config.test_interval = devices.duration(
        "test_interval", "24h", minimum=TEST_INTERVAL[0], maximum=TEST_INTERVAL[1]
    )
    config.grace = devices.duration("grace", "15m", minimum=GRACE[0], maximum=GRACE[1])
    devices.finish()
    root.finish()
    return config
