"""`[agent]` and `[[check]]`: defaults, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from callhome.client.agent.checks import Direction
from callhome.client.agent.config import load_agent_config
from callhome.client.config import load_client_config
from modem_drivers.configfile import ConfigError

from .agentkit import write_config


def load(tmp_path: Path, agent: str):  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, agent)
    client = load_client_config(path)  # the client's own parser accepts the agent's tables
    return load_agent_config(path, client.spool)


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.state == tmp_path / "spool.db.agent.json"
    assert config.policy.test_interval == 86400 and config.policy.test_spread == 0.1
    assert config.policy.warning_delay == 3600 and config.policy.throttle_events == 30
    assert config.checks == []


def test_a_full_check(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[agent]
test_at = "03:30"
test_zone = "Europe/Paris"
[[check]]
kind = "simulated"
name = "fans"
direction = "below"
warning = 1000
warning_clear = 1200
critical = 300
for = "2m"
interval = "30s"
""",
    )
    [check] = config.checks
    assert check.rule.thresholds is not None
    assert check.rule.thresholds.direction is Direction.BELOW
    assert (check.rule.for_seconds, check.interval, check.name) == (120, 30, "fans")


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (
            "[agent]\ntest_zone = 'Mars/Olympus'",
            r"client\.toml: agent\.test_zone: unknown time zone",
        ),
        ("[agent]\ntest_at = '25:00'", r"agent\.test_at: expected a time of day"),
        ("[agent]\nintervall = '1m'", r"agent\.intervall: unknown key"),
        ("[[check]]\nname = 'x'", r"check\[0\]\.kind: missing"),
        ("[[check]]\nkind = 'nosuch'", r"check\[0\]\.kind: "),
        (
            "[[check]]\nkind = 'simulated'\nwarning = 70\nwarning_clear = 75",
            r"check\[0\]\.warning: warning_clear must not be above",
        ),
        (
            "[[check]]\nkind = 'simulated'\ndirection = 'sideways'",
            r"check\[0\]\.direction: expected above or below",
        ),
        (
            "[[check]]\nkind = 'simulated'\nscript = 'missing.txt'",
            r"check\[0\]\.script: cannot read",
        ),
        ("[[check]]\nkind = 'simulated'\nbogus = 1", r"check\[0\]\.bogus: unknown key"),
        (
            "[[check]]\nkind = 'simulated'\n[[check]]\nkind = 'simulated'",
            r"check\[1\]\.name: another",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, agent: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, agent)


def test_the_agent_answers_the_centre_unless_told_not_to(tmp_path: Path) -> None:
    from callhome.client.agent.config import parse_agent_config

    spool = tmp_path / "spool.db"
    assert parse_agent_config({}, tmp_path / "c.toml", spool).answer
    assert not parse_agent_config({"agent": {"answer": False}}, tmp_path / "c.toml", spool).answer


def test_a_device_without_a_modem_does_not_answer(tmp_path: Path) -> None:
    from callhome.client.agent.daemon import Agent
    from callhome.client.spool import Spool

    path = tmp_path / "client.toml"
    path.write_text(
        '[device]\nname = "a"\nkey = "device.key"\nspool = "spool.db"\n'
        f'[centre]\npublic_key = "{"A" * 43}="\n'
        '[paths]\nip = "127.0.0.1:4000"\n'
    )
    Spool(tmp_path / "spool.db", create=True).close()
    client = load_client_config(path)
    config = load_agent_config(path, client.spool)
    assert config.answer and client.ports == []
    assert not Agent(client, config, b"\x01" * 32).answering
