"""The check states in node_exporter's textfile format, read back with
prometheus_client's own parser."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callhome.client.agent import textfile
from callhome.client.agent.config import load_agent_config
from callhome.client.agent.daemon import Agent
from callhome.client.config import load_client_config
from modem_drivers.configfile import ConfigError

from .agentkit import FakeCentre, write_config


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_render_gives_each_check_a_state_set_and_its_value() -> None:
    odd = 'disk "a"\\b\nc'  # quotes, a backslash and a newline survive the escaping
    status = {
        "checks": [
            {"check": "md/md0", "state": "CRITICAL", "since": 1700000000.5, "flapping": False},
            {"check": "fan1", "state": "OK", "since": 0, "value": 2400, "unit": "rpm"},
            {"check": odd, "state": "UNKNOWN", "since": 1, "value": math.nan, "flapping": True},
        ],
        "last_call": {"time": 1700000100, "result": "busy"},
        "next_call": 1700000400,
        "next_test": 1700086400,
    }
    got = samples(textfile.render(status, queued=3))
    state = "callhome_agent_check_state"
    assert got[(state, (("check", "md/md0"), ("state", "CRITICAL")))] == 1
    assert got[(state, (("check", "md/md0"), ("state", "OK")))] == 0
    assert sum(v for (name, labels), v in got.items() if name == state) == 3  # one each
    assert got[(state, (("check", odd), ("state", "UNKNOWN")))] == 1
    assert got[("callhome_agent_check_value", (("check", "fan1"), ("unit", "rpm")))] == 2400
    assert math.isnan(got[("callhome_agent_check_value", (("check", odd), ("unit", "")))])
    assert got[("callhome_agent_check_flapping", (("check", odd),))] == 1
    since = "callhome_agent_check_state_since_timestamp_seconds"
    assert got[(since, (("check", "md/md0"),))] == 1700000000.5
    assert got[("callhome_agent_last_call_success", ())] == 0
    assert got[("callhome_agent_messages_queued", ())] == 3
    assert got[("callhome_agent_next_line_test_timestamp_seconds", ())] == 1700086400


async def test_the_agent_writes_its_states_where_node_exporter_reads_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "m.txt").write_text("0s md/md0 CRITICAL degraded [U_]\n0s fan1 2400 rpm\n")
    (tmp_path / "textfile").mkdir()
    path = write_config(
        tmp_path,
        '[agent]\ntextfile = "textfile/callhome.prom"\n'
        '[[check]]\nkind = "simulated"\nname = "sim"\nscript = "m.txt"\n',
    )
    client = load_client_config(path)
    config = load_agent_config(path, client.spool)
    agent = Agent(client, config, b"k" * 32, caller=FakeCentre(), rng=random.Random(1))
    await agent.collect_once(config.checks[0])
    written = tmp_path / "textfile" / "callhome.prom"
    got = samples(written.read_text())
    assert got[("callhome_agent_check_state", (("check", "md/md0"), ("state", "CRITICAL")))] == 1
    assert got[("callhome_agent_messages_queued", ())] == 1  # the event waits for its call
    assert [p.name for p in written.parent.iterdir()] == ["callhome.prom"]  # no leftovers
    assert written.stat().st_mode & 0o777 == 0o644
    agent.spool.close()


def test_a_textfile_must_be_named_for_node_exporter(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[agent]\ntextfile = "callhome.txt"\n')
    with pytest.raises(ConfigError, match=r"agent\.textfile"):
        load_agent_config(path, tmp_path / "spool.db")
