"""`/metrics`: parsed by prometheus_client's own parser; what the bank's events and the
store's commits add; the ports as the overview shows them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from receiver.metrics import Metrics, TimedStore, bounded
from receiver.store import SQLiteStore
from receiver.web.live import Live

from .conftest import World


@dataclass
class Meter:
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class Worker:
    name: str
    state: str = "ready"
    in_call: bool = False


class Tick:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    for sample in found[name]:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no {name} {labels}")


def call(live: Live, tick: Tick, worker: Worker, meter: Meter) -> None:
    worker.in_call = True
    live.bank_event("answered", port="bank0", caller="5551234", connect="CONNECT", call=meter)
    tick.now += 0.8
    live.bank_event("accepted", port="bank0", device="plant-a")
    meter.bytes_in, meter.bytes_out = 300, 100
    tick.now += 3.2
    live.bank_event(
        "stored", port="bank0", device="plant-a", message_kind="report", seq=1, duplicate=False
    )
    live.bank_event(
        "stored", port="bank0", device="plant-a", message_kind="report", seq=1, duplicate=True
    )


def test_the_ports_show_the_call_and_its_rate() -> None:
    tick = Tick()
    live = Live(clock=tick, wall=lambda: 1000.0 + tick.now)
    worker, idle = Worker("bank0"), Worker("bank1", "down")
    live.attach_bank([worker, idle])
    meter = Meter()
    call(live, tick, worker, meter)
    ports = live.ports()
    assert ports[0].device == "plant-a" and ports[0].caller == "5551234"
    assert ports[0].rate == 400 / 4.0 and ports[0].since == 1100.0
    assert ports[1].state == "down" and not ports[1].in_call
    assert live.port_counts() == {"in call": 1, "down": 1}


async def test_metrics_parse_and_count(world: World) -> None:
    live = world.console.live
    tick = Tick()
    live._clock = tick
    worker = Worker("bank0")
    live.attach_bank([worker])
    call(live, tick, worker, Meter())
    worker.in_call = False
    live.bank_event(
        "call",
        port="bank0",
        outcome="completed",
        device="plant-a",
        caller="5551234",
        bytes_in=300,
        bytes_out=100,
    )
    live.bank_event("refused", port="bank0", reason="unknown key")
    response = await world.client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(await response.text())
    assert (
        value(found, "callhome_calls_total", port="bank0", path="modem", outcome="completed") == 1
    )
    assert value(found, "callhome_call_received_bytes_total", port="bank0") == 300
    assert value(found, "callhome_call_sent_bytes_total", port="bank0") == 100
    assert value(found, "callhome_messages_stored_total", kind="report") == 1
    assert value(found, "callhome_messages_duplicate_total") == 1
    assert value(found, "callhome_calls_refused_total", reason="unknown key") == 1
    assert value(found, "callhome_handshake_duration_seconds_count") == 1
    assert value(found, "callhome_handshake_duration_seconds_bucket", le="1.0") == 1
    assert value(found, "callhome_call_duration_seconds_sum") == 4.0
    # what the store and supervision hold at scrape time
    assert value(found, "callhome_devices", state="ok") == 1
    assert value(found, "callhome_devices", state="never") == 1
    assert value(found, "callhome_incidents_open", kind="outage") == 1
    assert value(found, "callhome_outbox_pending") == 0
    assert value(found, "callhome_bank_ports", state="ready") == 1
    assert value(found, "callhome_calls_in_progress") == 0


async def test_metrics_can_want_a_token(world: World) -> None:
    from dataclasses import replace

    world.console.config = replace(world.console.config, metrics_token="s3cret")
    assert (await world.client.get("/metrics")).status == 401
    ok = await world.client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200


async def test_store_writes_are_timed_and_reads_are_not(tmp_path: Path) -> None:
    metrics = Metrics()
    times = iter([1.0, 1.25, 2.0, 2.5])
    store = TimedStore(SQLiteStore(tmp_path / "c.db", create=True), metrics, lambda: next(times))
    try:
        call_id = await store.start_call("bank0", None, 1.0)
        assert await store.device_by_key(bytes(32)) is None
        await store.store_message(1, 1, 1, "report", b"", {}, call_id, 2.0)
    except Exception:
        pass  # no device 1: the write fails, and is timed all the same
    finally:
        store.close()
    found = samples(metrics.render().decode())
    assert value(found, "callhome_store_commit_seconds_sum", operation="start_call") == 0.25
    assert value(found, "callhome_store_commit_seconds_count", operation="store_message") == 1
    assert value(found, "callhome_acknowledgement_latency_seconds_sum") == 0.5


def test_label_values_stay_bounded() -> None:
    seen: set[str] = set()
    labels = [bounded(f"reason {n}", seen, 3) for n in range(5)]
    assert labels == ["reason 0", "reason 1", "reason 2", "other", "other"]
    assert bounded("reason 1", seen, 3) == "reason 1"


async def test_the_grafana_dashboard_names_only_metrics_that_exist(world: World) -> None:
    import json
    import re

    dashboard = Path(__file__).parents[2] / "docs" / "grafana-receiver.json"
    exprs = [
        target["expr"]
        for panel in json.loads(dashboard.read_text())["panels"]
        for target in panel["targets"]
    ]
    world.console.live.metrics.calls.labels("bank0", "modem", "completed").inc()
    world.console.live.attach_bank([Worker("bank0")])  # as under `run`
    response = await world.client.get("/metrics")
    text = await response.text()
    families = {family.name for family in text_string_to_metric_families(text)}
    for name in {n for expr in exprs for n in re.findall(r"callhome_\w+", expr)}:
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert base in families, name
