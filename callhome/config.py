"""The client's config file (TOML), written by `callhome init`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modem_drivers.configfile import REQUIRED, Table, dump_toml, format_duration, load_toml
from modem_drivers.hayes import DRIVER_PROFILES, dial_string

from .keys import KeyFileError, parse_public_key

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
                "modem": {
                    "ports": self.ports,
                    "profile": self.profile,
                    "time_scale": self.time_scale,
                },
                "calls": {
                    "attempts": self.attempts,
                    "retry_delay": format_duration(self.retry_delay),
                },
            },
            header="callhome client configuration\npaths are relative to this file's folder",
        )


def load_client_config(path: str | Path) -> ClientConfig:
    path = Path(path)
    root = Table(load_toml(path), "", path)
    config = ClientConfig(path=path)
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
    config.numbers = centre.strings("numbers")
    if not config.numbers:
        raise centre.error("numbers", "at least one number of the centre is needed")
    for number in config.numbers:
        try:
            dial_string(number)
        except ValueError as exc:
            raise centre.error("numbers", str(exc)) from None
    centre.finish()
    modem = root.table("modem")
    config.ports = modem.strings("ports")
    if not config.ports:
        raise modem.error("ports", "at least one modem port is needed")
    config.profile, config.time_scale = modem_settings(modem)
    modem.finish()
    calls = root.table("calls")
    config.attempts = calls.get("attempts", int, 3)
    if not 1 <= config.attempts <= 100:
        raise calls.error("attempts", "must be between 1 and 100")
    config.retry_delay = calls.duration("retry_delay", "60s")
    calls.finish()
    root.finish()
    return config


def modem_settings(table: Table) -> tuple[str, float]:
    """`profile` and `time_scale`, as the client's [modem] and the centre's [bank] have
    them."""
    profile = table.get("profile", str, "auto")
    if profile != "auto" and profile not in DRIVER_PROFILES:
        raise table.error("profile", f"unknown profile (auto, {', '.join(DRIVER_PROFILES)})")
    time_scale = table.get("time_scale", float, 1.0)
    if time_scale <= 0:
        raise table.error("time_scale", "must be positive")
    return profile, time_scale


class SetupError(Exception):
    """`init` cannot create its folder or files (it exists already, no permission)."""


def create_files(makers: dict[Path, Callable[[Path], Any]]) -> dict[Path, Any]:
    """Make each file with its maker, in order, for `init`: refused if any of them exists
    already; when one fails, the ones made are removed again, so that `init` can simply
    be run again once the cause is fixed. Returns what each maker returned."""
    for path in makers:
        if path.exists():
            raise SetupError(f"{path} already exists: refusing to overwrite")
    made: list[Path] = []
    results: dict[Path, Any] = {}
    try:
        for path in makers:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SetupError(f"cannot create {path.parent}: {exc.strerror}") from None
            made.append(path)
            try:
                results[path] = makers[path](path)
            except OSError as exc:
                raise SetupError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        for path in made:
            for leftover in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            ):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
        raise
    return results
