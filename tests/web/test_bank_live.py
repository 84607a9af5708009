"""A real call through the bank on the virtual network, with the console's hooks as
`run` sets them up: the bank's events and the timed store reach the metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from receiver.metrics import TimedStore
from receiver.web.live import Live
from tests.bankworld import bank_world


async def test_a_call_through_the_bank_is_counted(tmp_path: Path) -> None:
    async with bank_world(tmp_path) as world:
        live = Live()
        bank = world.bank(TimedStore(world.store, live.metrics), notify=live.bank_event)
        live.attach_bank(bank.workers)
        async with world.serving(bank):
            assert live.port_counts() == {"ready": 1}
            report = await world.line_test()
            assert report.result == "ok", report
            while bank.workers[0].in_call:
                await asyncio.sleep(0.02)
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(live.metrics.render().decode())
        for sample in family.samples
    }
    calls = {key: value for key, value in found.items() if key[0] == "callhome_calls_total"}
    assert list(calls.values()) == [1.0] and ("port", "bank0") in next(iter(calls))[1]
    assert ("path", "modem") in next(iter(calls))[1]
    assert found[("callhome_messages_stored_total", (("kind", "line-test"),))] == 1
    assert found[("callhome_call_received_bytes_total", (("port", "bank0"),))] > 0
    assert found[("callhome_call_sent_bytes_total", (("port", "bank0"),))] > 0
    assert found[("callhome_handshake_duration_seconds_count", ())] == 1
    assert found[("callhome_call_duration_seconds_count", ())] == 1
    assert found[("callhome_acknowledgement_latency_seconds_count", ())] == 1
    assert found[("callhome_store_commit_seconds_count", (("operation", "finish_call"),))] == 1
