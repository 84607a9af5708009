"""`callhome-receiver users ...`, `web`'s config errors, and the console served on the
running loop by what `run` calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from callhome import exitcodes
from receiver import cli_web
from receiver.cli import main
from receiver.config import load_centre_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "centre"
    result = CliRunner().invoke(main, ["init", str(folder), "--port", "/dev/ttyS0"])
    assert result.exit_code == 0, result.output
    return folder / "centre.toml"


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["-c", str(config), *args], input=input)


def test_users_add_passwd_remove_list_and_the_audit(config: Path) -> None:
    added = cli(config, "users", "add", "ada", "--role", "admin", input="a good password\n" * 2)
    assert added.exit_code == 0, added.output
    assert "added ada (admin)" in added.output
    again = cli(config, "users", "add", "ada", "--password", "another password")
    assert again.exit_code == exitcodes.USAGE
    assert again.output.strip().endswith("an account named 'ada' already exists")
    short = cli(config, "users", "add", "bob", "--password", "short")
    assert short.exit_code == exitcodes.USAGE and "at least 10" in short.output
    changed = cli(config, "users", "passwd", "ada", "--role", "operator", "--password", "x" * 12)
    assert changed.exit_code == 0, changed.output
    listed = cli(config, "users", "list")
    assert listed.output.split() == ["ada", "operator"]
    assert cli(config, "users", "remove", "ada").exit_code == 0
    missing = cli(config, "users", "remove", "ada")
    assert missing.exit_code == exitcodes.USAGE and "no account named 'ada'" in missing.output
    from receiver.store import SQLiteStore

    store = SQLiteStore(load_centre_config(config).store)
    actions = [e.action for e in store.console_audit_log()]
    store.close()
    assert actions == ["account removed", "password set", "account added"]


def test_web_config_errors_name_file_and_key(config: Path) -> None:
    result = cli(config, "web")
    assert result.exit_code == exitcodes.USAGE
    assert "web.listen: not set" in result.output
    with config.open("a") as file:
        file.write('\n[web]\nlisten = "nowhere"\n')
    result = cli(config, "web")
    assert result.exit_code == exitcodes.USAGE
    assert f"{config}: web.listen: expected HOST:PORT" in result.output
    config.write_text(config.read_text().replace('"nowhere"', '"127.0.0.1:0"\ntls_cert = "c.pem"'))
    result = cli(config, "web")
    assert "web.tls_key: give tls_cert and tls_key" in result.output


@dataclass
class FakeWorker:
    name: str
    state: str
    in_call: bool = False


async def test_run_serves_the_console_and_metrics_on_its_loop(config: Path) -> None:
    with config.open("a") as file:
        file.write('\n[web]\nlisten = "127.0.0.1:0"\n')
    centre = load_centre_config(config)
    console = cli_web.prepare(centre)
    assert console is not None
    workers = [FakeWorker("bank0", "ready"), FakeWorker("bank1", "down")]
    async with cli_web.served(console, workers):  # type: ignore[arg-type]
        port = console.addresses[0][1]  # port 0: the one the system chose
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            async with session.get(f"http://127.0.0.1:{port}/", allow_redirects=False) as response:
                assert response.status == 303
    assert 'callhome_bank_ports{state="down"} 1.0' in text


async def test_run_with_web_listen_serves_the_bank_s_ports(config: Path) -> None:
    """`run`'s own coroutine, with a port on the virtual network: the console answers
    on the receiver's loop and shows the bank's port; SIGTERM stops both."""
    import os
    import signal

    from callhome.keys import load_private_key
    from modem_drivers.virtual import PhoneNetwork
    from modem_drivers.virtual.runner import NetworkRunner
    from receiver.cli import _run
    from receiver.store import SQLiteStore

    network = PhoneNetwork()
    network.add_modem("bank0", "usr", number="5550100")
    runner = NetworkRunner(network, time_scale=0.05)
    await runner.start()
    try:
        url = (await runner.expose("bank0", "inproc")).url
        with config.open("a") as file:
            file.write('\n[web]\nlisten = "127.0.0.1:0"\n')
        centre = load_centre_config(config)
        centre.ports, centre.time_scale = [url], 0.05
        console = cli_web.prepare(centre)
        assert console is not None
        store = SQLiteStore(centre.store)
        task = asyncio.ensure_future(_run(centre, load_private_key(centre.key), store, console))
        while not console.addresses or not console.live.port_counts().get("ready"):
            assert not task.done()
            await asyncio.sleep(0.02)
        port = console.addresses[0][1]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
        assert 'callhome_bank_ports{state="ready"} 1.0' in text
        assert "callhome_calls_in_progress 0.0" in text
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 10.0) == 0
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.stop()


async def test_the_console_serves_a_postgresql_store(tmp_path: Path) -> None:
    """A site whose store is PostgreSQL: accounts, pages and the calls of every site."""
    from aiohttp.test_utils import TestClient, TestServer

    from receiver.web.app import make_app
    from tests.receiver.pgtest import admin, dsn_for, require_postgres

    from .conftest import csrf_of

    require_postgres()
    import uuid

    name = f"callhome_web_{uuid.uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        folder = tmp_path / "centre"
        made = CliRunner().invoke(main, ["init", str(folder), "--store", dsn_for(name)])
        assert made.exit_code == 0, made.output
        config = folder / "centre.toml"
        with config.open("a") as file:
            file.write('\n[web]\nlisten = "127.0.0.1:0"\n')
        added = cli(config, "users", "add", "ada", "--role", "admin", "--password", "x" * 12)
        assert added.exit_code == 0, added.output
        console = cli_web.prepare(load_centre_config(config))
        assert console is not None and type(console.sqlite).__name__ == "PostgresStore"
        console.sqlite.receiver = "tokyo"
        call = console.sqlite.start_call("ttyS0", "0312345678", 1.0)
        assert [c.receiver for c in console.sqlite.calls()] == ["tokyo"] and call
        async with TestClient(TestServer(make_app(console))) as client:
            page = await client.get("/login")
            token = csrf_of(await page.text())
            login = await client.post(
                "/login",
                data={"name": "ada", "password": "x" * 12, "csrf": token, "next": "/"},
                allow_redirects=False,
            )
            assert login.status == 303
            for path in ("/", "/devices", "/calls", "/incidents", "/audit"):
                response = await client.get(path)
                assert response.status == 200, path
            assert "ttyS0" in await (await client.get("/calls")).text()
        console.sqlite.close()
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
