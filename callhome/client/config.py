"""The client's config file (TOML), written by `callhome init`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modem_drivers.configfile import (
    REQUIRED,
    Table,
    check_encodable,
    dump_toml,
    format_duration,
    load_toml,
    loads_toml,
)
from modem_drivers.hayes import dial_string

from ..config import modem_settings, port_urls
from ..keys import KeyFileError, parse_public_key
from .paths import MODEM, CallPath, parse_path, read_paths

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
    init: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    time_scale: float = 1.0
    attempts: int = 3
    retry_delay: float = 60.0
    path_specs: dict[str, str] = field(default_factory=dict)
    """`[paths]`: name -> "modem" or "host:port", in order of preference (empty: the
    modem alone)."""

    def paths(self) -> list[CallPath]:
        """The paths to the centre, in order of preference (`paths.py`)."""
        specs = self.path_specs or {MODEM: MODEM}
        return [parse_path(name, spec, self.ports, self.numbers) for name, spec in specs.items()]

    def dump(self, centre_key_text: str) -> str:
        return dump_toml(
            {
                "device": {"name": self.name, "key": str(self.key), "spool": str(self.spool)},
                "centre": {"public_key": centre_key_text, "numbers": self.numbers},
                "modem": {
                    "ports": self.ports,
                    "profile": self.profile,
                    **({"init": list(self.init)} if self.init else {}),
                    **({"skip": list(self.skip)} if self.skip else {}),
                    "time_scale": self.time_scale,
                },
                "calls": {
                    "attempts": self.attempts,
                    "retry_delay": format_duration(self.retry_delay),
                },
                **({"paths": self.path_specs} if self.path_specs else {}),
            },
            header="callhome client configuration\npaths are relative to this file's folder",
        )


def load_client_config(path: str | Path) -> ClientConfig:
    return parse_client_config(load_toml(path), path)


def check_client_config(config: ClientConfig, centre_key_text: str) -> ClientConfig:
    """What `load_client_config` will make of `config` once written: `init` checks this
    before it writes anything, so that every file it writes can be read back."""
    text = config.dump(centre_key_text)
    check_encodable(text, config.path)
    return parse_client_config(loads_toml(text, config.path), config.path)


def parse_client_config(data: dict[str, Any], path: str | Path) -> ClientConfig:
    path = Path(path)
    root = Table(data, "", path)
    config = ClientConfig(path=path)
    config.path_specs = read_paths(root.table("paths"))
    modem_used = not config.path_specs or MODEM in config.path_specs.values()
    device = root.table("device")
    config.name = device.get("name", str, REQUIRED)
    config.key = device.path_value("key")
    config.spool = device.path_value("spool")
    device.finish()
    centre = root.table("centre")
    try:
        config.centre_key = parse_public_key(centre.get("public_key", str, REQUIRED))
    except KeyFileError as exc:
        raise centre.error("public_key", str(exc)) from None
    config.numbers = centre.strings("numbers", REQUIRED if modem_used else [])
    if not config.numbers and modem_used:
        raise centre.error("numbers", "at least one number of the centre is needed")
    for number in config.numbers:
        try:
            dial_string(number)
        except ValueError as exc:
            raise centre.error("numbers", str(exc)) from None
    centre.finish()
    modem = root.table("modem")
    config.ports = port_urls(modem, "ports", None if modem_used else [])
    if not config.ports and modem_used:
        raise modem.error("ports", "at least one modem port is needed")
    settings = modem_settings(modem)
    config.profile, config.time_scale = settings.profile, settings.time_scale
    config.init, config.skip = settings.init, settings.skip
    modem.finish()
    calls = root.table("calls")
    config.attempts = calls.number("attempts", int, 3, minimum=1, maximum=100)
    config.retry_delay = calls.duration("retry_delay", "60s", maximum=86400.0)
    calls.finish()
    root.used |= {"agent", "check"}  # the agent's tables: callhome.client.agent.config
    root.finish()
    return config
