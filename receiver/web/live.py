"""What the running receiver tells the console as it happens: the bank's events (calls
answered and ended, devices authenticated, messages stored), its ports, and incident
events. Pages subscribe and are pushed a note on each change (server-sent events).

`Live.bank_event` is the bank's `notify` callback; `Live.notify` makes the hub a
supervision `Notifier` (receiver/incident_events.py), so supervision's fan-out can
include the console without either importing the other.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..incident_events import IncidentEvent
from ..metrics import REFUSAL_REASONS, Metrics, bounded

PATHS = ("modem", "ip")
"""The paths a call takes (a label of `callhome_calls_total`; anything else: "other")."""


class Worker(Protocol):
    """What the console reads of a bank's port worker (receiver.bank.PortWorker)."""

    name: str
    state: str
    in_call: bool


class Meter(Protocol):
    """The byte counters of the call on a port (modem_drivers DataCall)."""

    bytes_in: int
    bytes_out: int


@dataclass(frozen=True)
class PortView:
    name: str
    state: str
    in_call: bool
    caller: str | None = None
    device: str | None = None
    since: float | None = None
    """When the call connected (wall clock)."""
    bytes_in: int = 0
    bytes_out: int = 0
    rate: float | None = None
    """Bytes per second, both ways, since the call connected."""


@dataclass
class _Call:
    caller: str | None
    started_wall: float
    started: float
    meter: Meter | None
    device: str | None = None


class Live:
    QUEUE = 64

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._clock, self._wall = clock, wall
        self._workers: list[Worker] = []
        self._calls: dict[str, _Call] = {}
        self._subscribers: set[asyncio.Queue[tuple[str, str]]] = set()
        self._reasons: set[str] = set()
        self.has_bank = False
        self.forward: Callable[[str, dict[str, Any]], None] | None = None
        """Where this receiver's own notes also go (the other receivers, by
        `receiver.events`); what they send comes in by `show`."""

    # -- the bank ------------------------------------------------------------------------

    def attach_bank(self, workers: Iterable[Worker]) -> None:
        self._workers = list(workers)
        self.has_bank = True

    def ports(self) -> list[PortView]:
        now, wall = self._clock(), self._wall()
        out = []
        for worker in self._workers:
            call = self._calls.get(worker.name) if worker.in_call else None
            if call is None:
                out.append(PortView(worker.name, worker.state, worker.in_call))
                continue
            bytes_in = call.meter.bytes_in if call.meter else 0
            bytes_out = call.meter.bytes_out if call.meter else 0
            elapsed = max(now - call.started, 1e-9)
            out.append(
                PortView(
                    worker.name,
                    worker.state,
                    True,
                    call.caller,
                    call.device,
                    wall - (now - call.started),
                    bytes_in,
                    bytes_out,
                    (bytes_in + bytes_out) / elapsed,
                )
            )
        return out

    def port_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for worker in self._workers:
            state = "in call" if worker.in_call else worker.state
            counts[state] = counts.get(state, 0) + 1
        return counts

    def bank_event(self, what: str, **fields: Any) -> None:
        """The bank's `notify`: never raises (a console bug must not cost a call)."""
        try:
            self._bank_event(what, fields)
        except Exception:  # pragma: no cover - defensive
            pass

    def _bank_event(self, what: str, fields: dict[str, Any]) -> None:
        port = str(fields.get("port") or "unknown")
        path = fields.get("path") or "modem"
        if path not in PATHS:
            path = "other"
        metrics = self.metrics
        if what == "answered":
            self._calls[port] = _Call(
                fields.get("caller"), self._wall(), self._clock(), fields.get("call")
            )
        elif what == "accepted":
            call = self._calls.get(port) if path == "modem" else None
            if call is not None:
                call.device = fields.get("device")
                metrics.handshake_duration.observe(self._clock() - call.started)
            elif isinstance(fields.get("started"), float):
                # a TCP connection (many at once on one "port"), or a call the centre
                # made: timed from when it was taken (wall clock)
                metrics.handshake_duration.observe(max(0.0, self._wall() - fields["started"]))
        elif what == "refused":
            metrics.refusals.labels(
                bounded(fields.get("reason"), self._reasons, REFUSAL_REASONS)
            ).inc()
        elif what == "stored":
            if fields.get("duplicate"):
                metrics.duplicates.inc()
            else:
                metrics.messages.labels(str(fields.get("message_kind") or "unknown")).inc()
        elif what == "call":
            call = self._calls.pop(port, None) if path == "modem" else None
            metrics.calls.labels(port, path, str(fields.get("outcome") or "unknown")).inc()
            if call is not None:
                metrics.call_duration.observe(self._clock() - call.started)
            elif isinstance(fields.get("started"), float):
                metrics.call_duration.observe(max(0.0, self._wall() - fields["started"]))
            if "bytes_in" in fields:
                metrics.bytes_received.labels(port).inc(int(fields["bytes_in"]))
                metrics.bytes_sent.labels(port).inc(int(fields["bytes_out"]))
            elif call is not None and call.meter is not None:
                metrics.bytes_received.labels(port).inc(call.meter.bytes_in)
                metrics.bytes_sent.labels(port).inc(call.meter.bytes_out)
        else:
            return
        self.publish(what, {"port": port})

    # -- incidents (a supervision Notifier) ----------------------------------------------

    async def notify(self, event: IncidentEvent) -> None:
        self.publish(
            "incident",
            {"id": event.incident_id, "change": event.change.value, "kind": event.kind},
        )

    # -- subscribers ---------------------------------------------------------------------

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.show(kind, data)
        if self.forward is not None:
            self.forward(kind, data)

    def show(self, kind: str, data: dict[str, Any]) -> None:
        """To this console's pages only (a note of another receiver's, for one)."""
        text = json.dumps(data, separators=(",", ":"))
        for queue in list(self._subscribers):
            if queue.full():
                continue  # a slow page misses notes, not memory: it reloads on the next
            queue.put_nowait((kind, text))

    def subscribe(self) -> asyncio.Queue[tuple[str, str]]:
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(self.QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, str]]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
