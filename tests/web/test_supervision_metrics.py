"""The console over supervision as `run` and `web` set it up: device states on the pages
and in `callhome_devices` are supervision's, supervision's lateness is a histogram; and
calls over TCP are counted with their path and timed like the modem's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from receiver import cli_web
from receiver.cli import main
from receiver.cli_store import open_store, store_location
from receiver.cli_supervision import supervisor_for
from receiver.config import load_centre_config
from receiver.store import AsyncStore
from receiver.supervision.console import StoreSupervision
from receiver.supervision.service import Stored
from receiver.web.app import Console, make_app
from receiver.web.auth import hash_password
from receiver.web.live import Live

from ..receiver.pgtest import (  # noqa: F401 - the fixtures
    pg_database_fixture,
    pg_session_database_fixture,
)
from .conftest import PASSWORD, log_in

HOUR = 3600.0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "centre"
    result = CliRunner().invoke(main, ["init", str(folder), "--port", "/dev/ttyS0"])
    assert result.exit_code == 0, result.output
    path = folder / "centre.toml"
    with path.open("a") as file:
        file.write('\n[web]\nlisten = "127.0.0.1:0"\n')
    return path


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
async def client(config: Path) -> AsyncIterator[tuple[Console, TestClient]]:
    console = cli_web.prepare(load_centre_config(config))
    assert console is not None
    console.sqlite.console_add_account("otto", hash_password(PASSWORD), "operator", 0.0)
    client = TestClient(TestServer(make_app(console)))
    await client.start_server()
    try:
        yield console, client
    finally:
        await client.close()
        console.store.close()


async def test_web_alone_reads_supervision_and_its_states_fill_pages_and_metrics(
    config: Path, client: tuple[Console, TestClient]
) -> None:
    console, web = client
    assert isinstance(console.source, StoreSupervision)  # `web` alone: supervision's store
    centre = load_centre_config(config)
    store = open_store(store_location(centre), timeout=3.0)
    store.enroll("plant-a", bytes(32), test_interval=HOUR, grace=600.0, site="lyon")
    (device,) = store.devices()
    # the engine of `run`, with the console's hooks, elsewhere on the same store
    supervisor = supervisor_for(centre, AsyncStore(store), console=console)
    assert supervisor is not None and supervisor.lateness is not None
    await supervisor.start()
    heard = device.enrolled_at + 60
    supervisor.message_stored(Stored(device, heard, "bank0", "5551234", "line-test", None))
    await supervisor.turn(heard)
    store.advance_counter(device.id, 1, heard)
    call = store.start_call("bank0", "5551234", heard - 5)
    for seq, state in ((1, "failed"), (2, "ok")):  # the newest report of a component counts
        meta = {"severity": "major", "component": f"psu{seq}", "state": state}
        store.store_message(device.id, 1, seq, "report", b"{}", meta, call, heard - seq)
    meta = {"severity": "minor", "component": "psu1", "state": "degraded"}
    store.store_message(device.id, 1, 3, "report", b"{}", meta, call, heard)
    # five seconds past its deadline: late for supervision; its last call alone would
    # still be within the grace ("ok")
    now = heard + HOUR + 5
    await supervisor.turn(now)
    console.clock = lambda: now
    assert await log_in(web, "otto") == 303
    listed = await (await web.get("/devices?state=late")).text()
    assert "plant-a" in listed
    assert "plant-a" not in await (await web.get("/devices?state=ok")).text()
    assert "plant-a" in await (await web.get("/")).text()
    page = await (await web.get("/devices/plant-a")).text()
    checks = page[page.index("<th>check</th>") :]
    assert 'line test</td><td class="state-late">late' in checks
    assert 'psu1</td><td class="state-degraded">degraded' in checks
    assert 'psu2</td><td class="state-ok">ok' in checks
    assert "bank0" not in checks and "modem heard" in checks  # the path supervision knows
    listed = await (await web.get("/devices?path=modem")).text()
    assert "plant-a" in listed and '<span class="state-ok">modem</span>' in listed
    assert "plant-a" not in await (await web.get("/devices?path=ip")).text()
    assert "plant-a" not in await (await web.get("/devices?path=failed")).text()
    found = scrape(await (await web.get("/metrics")).text())
    assert found[("callhome_devices", (("state", "late"),))] == 1
    assert found[("callhome_devices", (("state", "ok"),))] == 0
    late = (("event", "late"),)
    assert found[("callhome_supervision_lateness_seconds_count", late)] == 1
    assert found[("callhome_supervision_lateness_seconds_sum", late)] == pytest.approx(5.0)
    # down a grace later (and 30 s): an incident, counted by kind
    now = heard + HOUR + 600 + 30
    await supervisor.turn(now)
    found = scrape(await (await web.get("/metrics")).text())
    down = (("event", "down"),)
    assert found[("callhome_supervision_lateness_seconds_sum", down)] == pytest.approx(630.0)
    assert found[("callhome_devices", (("state", "down"),))] == 1
    assert found[("callhome_incidents_open", (("kind", "device_down"),))] == 1
    store.close()


async def test_an_ip_call_is_counted_with_its_path_and_timed(tmp_path: Path) -> None:
    from callhome.keys import write_private_key
    from receiver.bank import Bank
    from receiver.ip import IpListener
    from receiver.store import SQLiteStore

    from ..ip.helpers import Centre, acknowledged, enroll, send_report

    live = Live()
    store = SQLiteStore(tmp_path / "centre.db", create=True)
    key = write_private_key(tmp_path / "centre.key")
    bank = Bank([], AsyncStore(store), key, listening=True, notify=live.bank_event)
    listener = IpListener(bank, ["127.0.0.1:0"], status_path=tmp_path / "ip-status.json")
    await listener.start()
    bank.services.append(listener)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(bank.run(stop))
    try:
        centre = Centre(store, bank, listener, key)
        device_key = enroll(centre, tmp_path, "plant")
        events = await send_report(centre, device_key, 1, severity="info", component="psu")
        assert acknowledged(events) == [1]
        calls = ("callhome_calls_total", (("outcome", "completed"), ("path", "ip"), ("port", "ip")))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while calls not in scrape(live.metrics.render().decode()):  # recorded after the end
            assert loop.time() < deadline, "the call was never counted"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)
        store.close()
    found = scrape(live.metrics.render().decode())
    assert found[calls] == 1
    assert found[("callhome_handshake_duration_seconds_count", ())] == 1
    assert found[("callhome_call_duration_seconds_count", ())] == 1
    assert 0 < found[("callhome_handshake_duration_seconds_sum", ())] < 10
    assert found[("callhome_call_received_bytes_total", (("port", "ip"),))] > 0


def test_a_path_label_stays_bounded() -> None:
    live = Live(wall=lambda: 10.0)
    live.bank_event("call", port="ip", path="carrier pigeon", outcome="completed", started=9.0)
    found = scrape(live.metrics.render().decode())
    key = (("outcome", "completed"), ("path", "other"), ("port", "ip"))
    assert found[("callhome_calls_total", key)] == 1
    assert found[("callhome_call_duration_seconds_sum", ())] == 1.0


async def test_the_console_of_a_postgresql_centre_reads_its_database(
    tmp_path: Path, pg_database: Callable[[], str]
) -> None:
    from receiver.store_pg import PostgresStore

    folder = tmp_path / "centre"
    done = CliRunner().invoke(main, ["init", str(folder), "--store", pg_database()])
    assert done.exit_code == 0, done.output
    path = folder / "centre.toml"
    with path.open("a") as file:
        file.write('\n[web]\nlisten = "127.0.0.1:0"\n')
    console = cli_web.prepare(load_centre_config(path))
    assert console is not None and isinstance(console.sqlite, PostgresStore)
    assert not (folder / "centre.db").exists()
    console.sqlite.enroll("plant-pg", bytes(32), test_interval=HOUR, grace=600.0, site=None)
    console.sqlite.console_add_account("otto", hash_password(PASSWORD), "operator", 0.0)
    web = TestClient(TestServer(make_app(console)))
    await web.start_server()
    try:
        assert await log_in(web, "otto") == 303
        assert "plant-pg" in await (await web.get("/devices")).text()
        found = scrape(await (await web.get("/metrics")).text())
        assert found[("callhome_devices", (("state", "never"),))] == 1
    finally:
        await web.close()
        console.store.close()
