"""The README's first command: `callhome demo` tells its whole story and exits 0."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_its_story_and_exits_zero(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "callhome", "demo", "--dir", str(folder), "--time-scale", "0.05"],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "everything as expected" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    # The summary is printed from the centre's store; check the store itself agrees.
    with sqlite3.connect(folder / "centre" / "centre.db") as db:
        stored = db.execute(
            "select d.name, m.kind, count(*) from messages m join devices d"
            " on d.id = m.device_id group by d.name, m.kind"
        ).fetchall()
        outcomes = [row[0] for row in db.execute("select outcome from calls")]
        agent = db.execute(
            "select d.name, m.component, m.state from messages m join devices d"
            " on d.id = m.device_id where m.component is not null"
        ).fetchall()
    # the hand-made story: a line test each, plant-b's and plant-c's reports; then the
    # agents' scheduled line tests (at least one more each) and their events
    counts = {(name, kind): n for name, kind, n in stored}
    assert counts[("plant-b", "report")] >= 1 and counts[("plant-c", "report")] >= 1
    assert all(counts[(name, "line-test")] >= 2 for name in ("plant-a", "plant-b", "plant-c"))
    assert ("plant-a", "md/md0", "CRITICAL") in agent and ("plant-a", "md/md0", "OK") in agent
    assert [row for row in agent if row[1] == "fan1"] == [("plant-b", "fan1", "OK")] * 2
    assert ("plant-c", "ipmi/psu1", "UNKNOWN") in agent
    assert sum(o.startswith("refused") for o in outcomes) == 1
    assert outcomes.count("completed") >= 5 + 3


def test_the_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("mine")
    result = subprocess.run(
        [sys.executable, "-m", "callhome", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not empty" in result.stderr
    assert (tmp_path / "something").read_text() == "mine"
