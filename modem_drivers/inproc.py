"""In-process serial ports: `inproc://NAME` reaches a port registered by this process.

The virtual network registers each in-process modem here; the Hayes driver opens the
URL like any other. Neither side imports the other: this registry is all they share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

SCHEME = "inproc://"


class ModemLines(Protocol):
    """RS-232 control lines of a port, from the DTE's side."""

    def set_dtr(self, level: bool) -> None: ...

    @property
    def cd(self) -> bool: ...

    @property
    def ri(self) -> bool: ...

    @property
    def dsr(self) -> bool: ...

    @property
    def cts(self) -> bool: ...


Connector = Callable[[asyncio.Protocol], tuple[asyncio.Transport, ModemLines]]
_endpoints: dict[str, Connector] = {}


def register(name: str, connector: Connector) -> str:
    if name in _endpoints:
        raise ValueError(f"in-process port {name!r} is already registered")
    _endpoints[name] = connector
    return SCHEME + name


def unregister(name: str) -> None:
    _endpoints.pop(name, None)


def connect(url: str, protocol: asyncio.Protocol) -> tuple[asyncio.Transport, ModemLines]:
    name = url[len(SCHEME) :] if url.startswith(SCHEME) else url
    try:
        connector = _endpoints[name]
    except KeyError:
        raise FileNotFoundError(f"no in-process port named {name!r}") from None
    return connector(protocol)
