"""The client's paths to the centre, in order of preference.

A path is either the modem (every modem port, each trying every number of the
centre) or an IP endpoint, `host:port` (an IPv4 or IPv6 address, or a name resolved
at each call, so a centre that moves is found again). The config names them:

    [paths]
    office = "centre.example.net:7070"   # tried first
    phone = "modem"                      # then the modems, with [centre] numbers

Without `[paths]` the one path is the modem, as before paths existed. The dialer tries
the paths in this order in every round, with the one backoff between rounds; the spool
is keyed by message, not by path, so a message cut on one path resumes on another.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from modem_drivers.configfile import Table

from ..tcp import format_address, parse_endpoint

MODEM = "modem"


@dataclass(frozen=True)
class ModemPath:
    name: str
    ports: tuple[str, ...]
    numbers: tuple[str, ...]
    kind = "modem"

    @property
    def spec(self) -> str:
        return MODEM


@dataclass(frozen=True)
class IpPath:
    name: str
    host: str
    port: int
    kind = "ip"

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def spec(self) -> str:
        return self.address


CallPath = ModemPath | IpPath


def parse_path(name: str, spec: str, ports: list[str], numbers: list[str]) -> CallPath:
    """Raises ValueError with a sentence."""
    if spec == MODEM:
        return ModemPath(name, tuple(ports), tuple(numbers))
    host, port = parse_endpoint(spec)
    return IpPath(name, host, port)


def read_paths(table: Table) -> dict[str, str]:
    """`[paths]`: name -> "modem" or "host:port", in the file's order."""
    specs: dict[str, str] = {}
    for name in list(table.data):
        spec = table.get(name, str)
        if not spec:
            raise table.error(name, 'expected "modem" or "host:port"')
        if spec != MODEM:
            try:
                parse_endpoint(spec)
            except ValueError as exc:
                raise table.error(name, f'{exc} (or "modem")') from None
        specs[name] = spec
    if sum(spec == MODEM for spec in specs.values()) > 1:
        raise table.error(
            next(n for n in reversed(specs) if specs[n] == MODEM), "only one path can be the modem"
        )
    table.finish()
    return specs


def legs(paths: list[CallPath]) -> Iterator[tuple[CallPath, str]]:
    """What one round of calling tries, in order: each modem port of a modem path (it
    dials every number), each IP path once (its address)."""
    for path in paths:
        if isinstance(path, ModemPath):
            for port in path.ports:
                yield path, port
        else:
            yield path, path.address
