"""The centre supervises itself: its bank ports; sans-IO.

A port whose modem stopped answering (the bank reopens it with backoff) is a trouble;
so is a port that has answered nothing while the others answered `silent_after` calls
between them (a dead line behind a live modem: the hunt group skips it, or it rings
without an answer). Event-driven: judged on each answered call, no timer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PortEvent:
    port: str
    at: float


@dataclass(frozen=True)
class PortDown(PortEvent):
    error: str


@dataclass(frozen=True)
class PortSilent(PortEvent):
    others: int
    """Calls the other ports answered since this one last did."""


@dataclass(frozen=True)
class PortUp(PortEvent):
    pass


class PortWatch:
    def __init__(self, silent_after: int = 20, *, sites: bool = False) -> None:
        self.silent_after = silent_after
        self.sites = sites
        """Ports named `site:port` (several receivers): a port is silent only against
        the ports of its own site, whose calls may go elsewhere by design."""
        self._ready: dict[str, bool] = {}
        self._since: dict[str, int] = {}
        """Calls answered by the other ports since this one answered (or came up)."""
        self._troubled: set[str] = set()

    def assume_troubled(self, port: str) -> None:
        """At start: an incident about `port` is still open (its end will be told)."""
        self._troubled.add(port)

    def ports(self) -> dict[str, bool]:
        return dict(self._ready)

    def state(self, port: str, up: bool, now: float, error: str = "") -> list[PortEvent]:
        was = self._ready.get(port)
        self._ready[port] = up
        if up:
            self._since[port] = 0
            if port in self._troubled:
                self._troubled.discard(port)
                return [PortUp(port, now)]
            return []
        if was is not False and port not in self._troubled:
            self._troubled.add(port)
            return [PortDown(port, now, error)]
        return []

    def answered(self, port: str, now: float) -> list[PortEvent]:
        events: list[PortEvent] = []
        self._since[port] = 0
        if port in self._troubled and self._ready.get(port, True):
            self._troubled.discard(port)
            events.append(PortUp(port, now))
        if self.silent_after <= 0:
            return events
        for other in self._since:
            if other == port or (self.sites and _site(other) != _site(port)):
                continue
            self._since[other] += 1
            if (
                self._since[other] >= self.silent_after
                and self._ready.get(other, False)
                and other not in self._troubled
            ):
                self._troubled.add(other)
                events.append(PortSilent(other, now, self._since[other]))
        return events


def _site(port: str) -> str:
    return port.partition(":")[0]
