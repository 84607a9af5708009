"""`callhome agent check` and `callhome agent status`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from callhome.client.agent.statefile import write_state
from callhome.client.cli import main

from .agentkit import write_config

CHECKS = """
[[check]]
kind = "simulated"
name = "md"
script = "m.txt"
[[check]]
kind = "simulated"
name = "temps"
script = "t.txt"
warning = 70
critical = 90
[[check]]
kind = "simulated"
name = "stuck"
script = "h.txt"
deadline = "50ms"
"""


def setup(tmp_path: Path) -> Path:
    (tmp_path / "m.txt").write_text("0s md/md0 OK clean [UU]\n")
    (tmp_path / "t.txt").write_text("0s cpu 75 temperature\n")
    (tmp_path / "h.txt").write_text("0s hang on\n")
    return write_config(tmp_path, CHECKS)


def test_check_runs_every_collector_once_and_exits_with_the_worst_state(tmp_path: Path) -> None:
    path = setup(tmp_path)
    result = CliRunner().invoke(main, ["-c", str(path), "agent", "check", "--json"])
    rows = {row["check"]: row for row in json.loads(result.output)}
    assert rows["md/md0"]["state"] == "OK"
    assert rows["cpu"]["state"] == "WARNING" and rows["cpu"]["value"] == 75
    assert rows["collector/stuck"]["state"] == "UNKNOWN"  # a hung collector is never OK
    assert result.exit_code == 3
    table = CliRunner().invoke(main, ["-c", str(path), "agent", "check"])
    assert "md/md0" in table.output and "WARNING" in table.output


def test_status_reads_the_daemons_state_file(tmp_path: Path) -> None:
    path = setup(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["-c", str(path), "agent", "status"])
    assert result.exit_code == 1 and "has not run yet" in result.output
    write_state(
        tmp_path / "spool.db.agent.json",
        {
            "pid": 42,
            "updated": 1.7e9,
            "last_call": {"time": 1.7e9, "result": "ok", "line_test": True},
            "next_call": 1.7e9 + 86400,
            "next_test": 1.7e9 + 86400,
            "checks": [{"check": "md/md0", "state": "CRITICAL", "since": 1.7e9, "value": None}],
        },
    )
    result = runner.invoke(main, ["-c", str(path), "agent", "status"])
    assert result.exit_code == 0, result.output
    assert "md/md0" in result.output and "CRITICAL" in result.output
    assert "(line test)" in result.output
    data = json.loads(runner.invoke(main, ["-c", str(path), "agent", "status", "--json"]).output)
    assert data["queued"] == 0 and data["pid"] == 42


def test_a_config_error_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[agent]\ntest_spread = 2\n")
    result = CliRunner().invoke(main, ["-c", str(path), "agent", "check"])
    assert result.exit_code == 2
    assert result.output.strip().endswith("agent.test_spread: must be at most 0.5") or (
        "agent.test_spread" in result.output and len(result.output.strip().splitlines()) == 1
    )
