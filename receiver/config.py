"""The centre's config file (TOML), written by `callhome-receiver init`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from callhome.tomlio import ConfigError, Section, dump_toml, format_duration, load_toml
from modem_drivers.hayes import DRIVER_PROFILES

DEFAULT_PATH = Path("/etc/callhome/centre.toml")


@dataclass
class CentreConfig:
    path: Path
    name: str = "centre"
    key: Path = Path("centre.key")
    store: Path = Path("centre.db")
    ports: list[str] = field(default_factory=list)
    profile: str = "auto"
    rings: int = 1
    health_check: float = 300.0
    drain: float = 60.0
    time_scale: float = 1.0
    test_interval: float = 86400.0
    grace: float = 900.0

    def dump(self) -> str:
        return dump_toml(
            {
                "centre": {"name": self.name, "key": str(self.key), "store": str(self.store)},
                "bank": {"ports": self.ports, "profile": self.profile, "rings": self.rings,
                         "health_check": format_duration(self.health_check),
                         "drain": format_duration(self.drain),
                         "time_scale": self.time_scale},
                "devices": {"test_interval": format_duration(self.test_interval),
                            "grace": format_duration(self.grace)},
            },
            header="callhome centre configuration (callhome-receiver)\n"
                   "paths are relative to this file's folder",
        )


def load_centre_config(path: str | Path) -> CentreConfig:
    path = Path(path)
    raw = load_toml(path)
    unknown = set(raw) - {"centre", "bank", "devices"}
    if unknown:
        raise ConfigError(f"{path}: unknown table [{sorted(unknown)[0]}]")
    config = CentreConfig(path=path)
    centre = Section(path, "centre", raw.get("centre", {}))
    config.name = centre.get("name", str, "centre")
    config.key = centre.path_value("key")
    config.store = centre.path_value("store")
    centre.finish()
    bank = Section(path, "bank", raw.get("bank", {}))
    config.ports = bank.strings("ports", [])
    config.profile = bank.get("profile", str, "auto")
    if config.profile != "auto" and config.profile not in DRIVER_PROFILES:
        raise bank.error("profile", f"unknown profile (auto, {', '.join(DRIVER_PROFILES)})")
    config.rings = bank.get("rings", int, 1)
    if not 1 <= config.rings <= 10:
        raise bank.error("rings", "must be between 1 and 10")
    config.health_check = bank.duration("health_check", "5m")
    if config.health_check < 1:
        raise bank.error("health_check", "must be at least 1s")
    config.drain = bank.duration("drain", "60s")
    config.time_scale = bank.get("time_scale", float, 1.0)
    if config.time_scale <= 0:
        raise bank.error("time_scale", "must be positive")
    bank.finish()
    devices = Section(path, "devices", raw.get("devices", {}))
    config.test_interval = devices.duration("test_interval", "24h")
    config.grace = devices.duration("grace", "15m")
    devices.finish()
    return config
