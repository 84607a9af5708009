"""Config helpers both ends share: the modem settings of a config file, and `init`'s
all-or-nothing creation of files."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modem_drivers import inproc
from modem_drivers.configfile import REQUIRED, TIME_SCALE, Table
from modem_drivers.hayes import DRIVER_PROFILES, SetupOptions

from .files import COMPANIONS, make_private_folder


def port_problem(url: str) -> str | None:
    """Why `url` cannot name a modem port (a device path or a pyserial URL), or None."""
    if "\0" in url:
        return f"{url!r} is not a port"
    if "://" not in url or url.startswith(inproc.SCHEME):
        return None
    scheme = url.split("://", 1)[0]
    if scheme.isidentifier() and importlib.util.find_spec(f"serial.urlhandler.protocol_{scheme}"):
        return None
    return (
        f"{url!r}: unknown kind of port {scheme + '://'!r} (a device path, rfc2217:// or socket://)"
    )


def port_urls(table: Table, key: str, default: list[str] | None = None) -> list[str]:
    """A list of modem ports, each checked by `port_problem`."""
    ports = table.strings(key, REQUIRED if default is None else default)
    for url in ports:
        problem = port_problem(url)
        if problem:
            raise table.error(key, problem)
    return ports


@dataclass(frozen=True)
class ModemSettings:
    """`[modem]` of the client and `[bank]` of the centre: which driver profile, how the
    user changes its settings for a difficult modem, and the time scale."""

    profile: str = "auto"
    time_scale: float = 1.0
    init: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()


def modem_settings(table: Table) -> ModemSettings:
    profile = table.get("profile", str, "auto")
    if profile != "auto" and profile not in DRIVER_PROFILES:
        raise table.error("profile", f"unknown profile (auto, {', '.join(DRIVER_PROFILES)})")
    time_scale = table.number(
        "time_scale", float, 1.0, minimum=TIME_SCALE[0], maximum=TIME_SCALE[1]
    )
    init = tuple(table.strings("init", []))
    skip = tuple(table.strings("skip", []))
    for key, values in (("init", (init, ())), ("skip", ((), skip))):
        try:
            SetupOptions.from_config(*values)
        except ValueError as exc:
            raise table.error(key, str(exc)) from None
    return ModemSettings(profile, time_scale, init, skip)


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
                make_private_folder(path.parent)  # 0700, whatever the umask
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
                *(path.with_name(path.name + suffix) for suffix in COMPANIONS),
            ):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
        raise
    return results
