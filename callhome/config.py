"""The client's config file (TOML), written by `callhome init`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modem_drivers.hayes import DRIVER_PROFILES

from .keys import parse_public_key
from .tomlio import ConfigError, Section, dump_toml, format_duration, load_toml

DEFAULT_PATH = Path("/etc/callhome/client.toml")


@dataclass
class ClientConfig:
    path: Path
    name: str = "device"
    key: Path = Path("device.key")
    spool: Path = Path("spool.db")
    centre_key: bytes = b""
    numbers: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    profile: str = "auto"
    time_scale: float = 1.0
    attempts: int = 3
    retry_delay: float = 60.0

    def dump(self, centre_key_text: str) -> str:
        return dump_toml(
            {
                "device": {"name": self.name, "key": str(self.key), "spool": str(self.spool)},
                "centre": {"public_key": centre_key_text, "numbers": self.numbers},
                "modem": {"ports": self.ports, "profile": self.profile,
                          "time_scale": self.time_scale},
                "calls": {"attempts": self.attempts,
                          "retry_delay": format_duration(self.retry_delay)},
            },
            header="callhome client configuration\npaths are relative to this file's folder",
        )


def load_client_config(path: str | Path) -> ClientConfig:
    path = Path(path)
    raw = load_toml(path)
    unknown = set(raw) - {"device", "centre", "modem", "calls"}
    if unknown:
        raise ConfigError(f"{path}: unknown table [{sorted(unknown)[0]}]")
    config = ClientConfig(path=path)
    device = Section(path, "device", raw.get("device", {}))
    config.name = device.get("name", str)
    config.key = device.path_value("key")
    config.spool = device.path_value("spool")
    device.finish()
    centre = Section(path, "centre", raw.get("centre", {}))
    try:
        config.centre_key = parse_public_key(centre.get("public_key", str))
    except ValueError as exc:
        raise centre.error("public_key", str(exc)) from None
    config.numbers = centre.strings("numbers")
    if not config.numbers:
        raise centre.error("numbers", "at least one number of the centre is needed")
    centre.finish()
    modem = Section(path, "modem", raw.get("modem", {}))
    config.ports = modem.strings("ports")
    if not config.ports:
        raise modem.error("ports", "at least one modem port is needed")
    config.profile = modem.get("profile", str, "auto")
    if config.profile != "auto" and config.profile not in DRIVER_PROFILES:
        raise modem.error("profile", f"unknown profile (auto, {', '.join(DRIVER_PROFILES)})")
    config.time_scale = modem.get("time_scale", float, 1.0)
    if config.time_scale <= 0:
        raise modem.error("time_scale", "must be positive")
    modem.finish()
    calls = Section(path, "calls", raw.get("calls", {}))
    config.attempts = calls.get("attempts", int, 3)
    if not 1 <= config.attempts <= 100:
        raise calls.error("attempts", "must be between 1 and 100")
    config.retry_delay = calls.duration("retry_delay", "60s")
    calls.finish()
    return config
