"""The agent's check states in node_exporter's textfile format ([agent] textfile):
parsed by prometheus_client's own parser, written after each collection."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callhome.client.agent.textfile import render
from modem_drivers.configfile import ConfigError

from .agentkit import FakeCentre
from .test_daemon import make_agent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_states_are_one_hot_and_values_carry_their_unit() -> None:
    status = {
        "checks": [
            {"check": "md/md0", "state": "CRITICAL", "since": 5.0, "flapping": False},
            {
                "check": 'temp "cpu"',
                "state": "OK",
                "since": 1.0,
                "flapping": True,
                "value": 45.5,
                "unit": "celsius",
                "last_seen": 9.0,
            },
        ],
        "last_call": {"time": 10.0, "result": "busy"},
        "next_test": 99.0,
    }
    found = samples(render(status).decode())
    md = [(k[1], v) for k, v in found.items() if k[0] == "callhome_agent_check_state"]
    assert sorted(v for labels, v in md if ("check", "md/md0") in labels) == [0, 0, 0, 1]
    assert found[("callhome_agent_check_state", (("check", "md/md0"), ("state", "critical")))]
    assert found[("callhome_agent_check_value", (("check", 'temp "cpu"'), ("unit", "celsius")))]
    assert found[("callhome_agent_check_flapping", (("check", 'temp "cpu"'),))] == 1
    assert found[("callhome_agent_last_call_success", ())] == 0
    assert found[("callhome_agent_next_line_test_timestamp_seconds", ())] == 99.0
    assert ("callhome_agent_last_line_test_timestamp_seconds", ()) not in found


async def test_the_daemon_writes_the_file_after_a_collection(tmp_path: Path) -> None:
    (tmp_path / "mirror.txt").write_text("0s md/md0 CRITICAL degraded [U_]\n")
    (tmp_path / "textfile").mkdir()
    agent = make_agent(
        tmp_path,
        'textfile = "textfile/callhome.prom"\n'
        '[[check]]\nkind = "simulated"\nname = "md"\nscript = "mirror.txt"\ninterval = "10s"\n',
        FakeCentre(),
    )
    path = tmp_path / "textfile" / "callhome.prom"
    assert agent.config.textfile == path
    await agent.collect_once(agent.config.checks[0])
    found = samples(path.read_text())
    key = ("callhome_agent_check_state", (("check", "md/md0"), ("state", "critical")))
    assert found[key] == 1
    assert [p.name for p in path.parent.iterdir()] == ["callhome.prom"]  # no leftovers


def test_a_textfile_not_named_prom_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"textfile: node_exporter reads only files named"):
        make_agent(tmp_path, 'textfile = "callhome.txt"\n', FakeCentre())
