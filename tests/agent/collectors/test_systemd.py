"""systemd failed units (fixtures/systemd) with a fake systemctl."""

from __future__ import annotations

from pathlib import Path

import pytest

from callhome.client.agent.collectors import systemd
from callhome.client.agent.collectors.base import State
from callhome.client.agent.collectors.runner import build_collector, run_collector
from callhome.client.agent.collectors.systemd import SystemdCollector, SystemdError
from modem_drivers.configfile import ConfigError, Table

FIXTURES = Path(__file__).parent / "fixtures" / "systemd"


def test_parse_json_and_plain() -> None:
    units = systemd.parse_json_units((FIXTURES / "failed_units.json").read_text())
    assert [u.name for u in units] == ["certbot.service", "run-u42.service", "nginx.service"]
    assert systemd.parse_json_units((FIXTURES / "none_failed.json").read_text()) == []
    plain = systemd.parse_plain_units((FIXTURES / "failed_units_plain.txt").read_text())
    assert [(u.name, u.active, u.description) for u in plain] == [
        ("certbot.service", "failed", "Certbot"),
        ("nginx.service", "failed", "A high performance web server"),
    ]
    bullet = systemd.parse_plain_units("● foo.service loaded failed failed Foo\n")
    assert bullet[0].name == "foo.service"


@pytest.mark.parametrize("text", ["", "garbage", "{}", '[{"x": 1}]', "[1]"])
def test_json_garbage_is_a_typed_error(text: str) -> None:
    with pytest.raises(SystemdError):
        systemd.parse_json_units(text)


def test_every_failure_gets_its_recovery() -> None:
    units = systemd.parse_json_units((FIXTURES / "failed_units.json").read_text())
    readings, seen = systemd.assess(units, set())
    assert {r.check: r.state for r in readings} == {
        "systemd/certbot.service": State.WARNING,
        "systemd/run-u42.service": State.WARNING,
        "systemd/nginx.service": State.WARNING,
    }
    readings, seen = systemd.assess(units[:1], seen, State.CRITICAL)
    assert {r.check: r.state for r in readings} == {
        "systemd/certbot.service": State.CRITICAL,
        "systemd/nginx.service": State.OK,
        "systemd/run-u42.service": State.OK,
    }


def _fake_systemctl(tmp_path: Path, body: str) -> str:
    program = tmp_path / "systemctl"
    program.write_text("#!/bin/sh\n" + body)
    program.chmod(0o755)
    return str(program)


async def test_collector_filters_and_remembers(tmp_path: Path) -> None:
    state = tmp_path / "which"
    state.write_text("failed_units.json")
    program = _fake_systemctl(tmp_path, f'cat "{FIXTURES}/$(cat {state})"\n')
    table = Table(
        {"kind": "systemd", "systemctl": program, "exclude": ["run-*"], "state": "critical"},
        "check[0]",
        "c",
    )
    collector = build_collector(table)
    assert isinstance(collector, SystemdCollector)
    collector.booted = tmp_path
    out = {r.check: r.state for r in await run_collector(collector, 5.0, name="systemd")}
    assert out == {
        "systemd/certbot.service": State.CRITICAL,
        "systemd/nginx.service": State.CRITICAL,
        "collector/systemd": State.OK,
    }
    state.write_text("none_failed.json")
    out = {r.check: r.state for r in await collector.collect()}
    assert out == {"systemd/certbot.service": State.OK, "systemd/nginx.service": State.OK}


async def test_old_systemd_falls_back_to_the_plain_table(tmp_path: Path) -> None:
    program = _fake_systemctl(
        tmp_path,
        'case "$*" in\n'
        '  *--output=json*) echo "Unknown output json" >&2; exit 1 ;;\n'
        f"  *) cat {FIXTURES}/failed_units_plain.txt ;;\nesac\n",
    )
    collector = SystemdCollector(systemctl=program, include=["nginx*"], booted=tmp_path)
    out = await collector.collect()
    assert [(r.check, r.state) for r in out] == [("systemd/nginx.service", State.WARNING)]


async def test_garbage_everywhere_is_unknown_and_no_systemctl_is_nothing(tmp_path: Path) -> None:
    program = _fake_systemctl(tmp_path, "echo '<<garbage>>'\n")
    collector = SystemdCollector(systemctl=program, booted=tmp_path)
    out = await run_collector(collector, 5.0, name="systemd")
    assert [(r.check, r.state) for r in out] == [("collector/systemd", State.UNKNOWN)]
    absent = SystemdCollector(systemctl=str(tmp_path / "absent"), booted=tmp_path)
    assert await absent.collect() == []
    # systemctl installed but systemd not running (a container): nothing to say
    not_booted = SystemdCollector(systemctl=program, booted=tmp_path / "no")
    assert await not_booted.collect() == []


def test_config() -> None:
    with pytest.raises(ConfigError, match=r"check\[0\].state: expected"):
        build_collector(Table({"kind": "systemd", "state": "bad"}, "check[0]", "c"))
