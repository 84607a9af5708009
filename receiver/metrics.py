"""The receiver's Prometheus metrics (`/metrics`, served by the console).

Two kinds: what the running process sees happen (calls, bytes, durations, store commit
times: counters and histograms since start, as Prometheus expects), and what the store
holds at scrape time (devices by state, open incidents, the notification outbox: gauges,
read by the console's own store connection just before each scrape). Every label has a
bounded set of values: port names come from the config, outcomes and states from fixed
tables, kinds from the store's few message kinds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .store import OPERATION_NAMES, AsyncStore, Operation, Store

T = TypeVar("T")
P = ParamSpec("P")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# a call over a modem lasts seconds to minutes; a handshake a fraction of a second to tens
CALL_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
HANDSHAKE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)
LATENESS_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0)
"""Supervision's lateness: late is found at the deadline itself (seconds of delay at
most, unless the receiver was stopped); down a grace later (minutes to days)."""
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

WRITES = frozenset(
    {
        "advance_counter",
        "start_call",
        "finish_call",
        "close_open_calls",
        "store_message",
        "append_partial",
        "sun_commit",
        "outbox_attempt",
    }
)
"""The store operations whose commit time is measured (a bounded label)."""


@dataclass
class Snapshot:
    """What the store holds, read just before a scrape."""

    devices: Mapping[str, int] = field(default_factory=dict)
    incidents_open: Mapping[str, int] = field(default_factory=dict)
    outbox_pending: int | None = None
    outbox_failed: int | None = None
    ports: Mapping[str, int] = field(default_factory=dict)
    calls_in_progress: int | None = None


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        shot = self.snapshot
        devices = GaugeMetricFamily(
            "callhome_devices", "Enrolled devices by supervision state.", labels=["state"]
        )
        for state, count in sorted(shot.devices.items()):
            devices.add_metric([state], count)
        yield devices
        incidents = GaugeMetricFamily(
            "callhome_incidents_open", "Incidents not yet resolved, by kind.", labels=["kind"]
        )
        for kind, count in sorted(shot.incidents_open.items()):
            incidents.add_metric([kind], count)
        yield incidents
        ports = GaugeMetricFamily(
            "callhome_bank_ports", "Modem ports of the bank by state.", labels=["state"]
        )
        for state, count in sorted(shot.ports.items()):
            ports.add_metric([state], count)
        yield ports
        if shot.calls_in_progress is not None:
            yield GaugeMetricFamily(
                "callhome_calls_in_progress",
                "Calls being served now.",
                value=shot.calls_in_progress,
            )
        if shot.outbox_pending is not None:
            yield GaugeMetricFamily(
                "callhome_outbox_pending",
                "Notifications queued and not yet sent.",
                value=shot.outbox_pending,
            )
        if shot.outbox_failed is not None:
            yield GaugeMetricFamily(
                "callhome_outbox_failed",
                "Notifications that could not be delivered after every attempt.",
                value=shot.outbox_failed,
            )


class Metrics:
    """The receiver's metrics, on a registry of its own (so tests and two receivers in
    one process do not share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter(
            "callhome_calls",
            "Calls answered, by port, path (modem or ip) and outcome.",
            ["port", "path", "outcome"],
            registry=r,
        )
        self.bytes_received = Counter(
            "callhome_call_received_bytes", "Bytes received in calls.", ["port"], registry=r
        )
        self.bytes_sent = Counter(
            "callhome_call_sent_bytes", "Bytes sent in calls.", ["port"], registry=r
        )
        self.call_duration = Histogram(
            "callhome_call_duration_seconds",
            "From CONNECT to the end of the call.",
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.handshake_duration = Histogram(
            "callhome_handshake_duration_seconds",
            "From CONNECT to the device's authentication.",
            buckets=HANDSHAKE_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "callhome_messages_stored",
            "Messages committed to the store, by kind.",
            ["kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "callhome_messages_duplicate",
            "Messages received again that were already stored.",
            registry=r,
        )
        self.refusals = Counter(
            "callhome_calls_refused", "Calls refused, by reason.", ["reason"], registry=r
        )
        self.ack_latency = Histogram(
            "callhome_acknowledgement_latency_seconds",
            "From a message received in full to its acknowledgement (its commit).",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.commit = Histogram(
            "callhome_store_commit_seconds",
            "Time of the store's write operations, by operation.",
            ["operation"],
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.supervision_lateness = Histogram(
            "callhome_supervision_lateness_seconds",
            "How long after its deadline supervision found a device late or down, by event.",
            ["event"],
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self._snapshot = _SnapshotCollector()
        r.register(self._snapshot)

    def observe_lateness(self, event: str, seconds: float) -> None:
        """Supervision's `lateness` hook: "late" or "down" (a bounded label)."""
        self.supervision_lateness.labels(event).observe(max(0.0, seconds))

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot.snapshot = snapshot

    def render(self) -> bytes:
        return generate_latest(self.registry)


REFUSAL_REASONS = 16
"""Distinct refusal reasons kept as label values; more become "other"."""


def bounded(value: str | None, seen: set[str], limit: int) -> str:
    """`value` as a label value, or "other" once `limit` distinct values were seen."""
    text = value or "unknown"
    if text in seen:
        return text
    if len(seen) >= limit:
        return "other"
    seen.add(text)
    return text


class TimedStore(AsyncStore):
    """The bank's AsyncStore, timing each write it runs (and a message's commit as the
    acknowledgement latency: the STORED goes out as soon as the commit returns)."""

    def __init__(
        self, store: Store, metrics: Metrics, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        super().__init__(store)
        self.metrics = metrics
        self._clock = clock

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        name = getattr(function, "__name__", "")
        if name not in WRITES:
            return await super()._call(function, *args, **kwargs)
        start = self._clock()
        try:
            return await super()._call(function, *args, **kwargs)
        finally:
            elapsed = self._clock() - start
            self.metrics.commit.labels(name).observe(elapsed)
            if name == "store_message":
                self.metrics.ack_latency.observe(elapsed)

    async def _submit(self, operation: Operation) -> Any:
        # the bank's writes go through group commit: timed from the call to the return of
        # the batch's commit, which is when a message's STORED goes out
        name = OPERATION_NAMES[type(operation)]
        start = self._clock()
        try:
            return await super()._submit(operation)
        finally:
            elapsed = self._clock() - start
            self.metrics.commit.labels(name).observe(elapsed)
            if name == "store_message":
                self.metrics.ack_latency.observe(elapsed)
