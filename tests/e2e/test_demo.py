"""The README's first command: `callhome demo` tells its whole story and exits 0."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from receiver.sun.model import load_routing
from receiver.sun.schedule import Schedule, utc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of the demo for every test of it (it takes some twenty seconds)."""
    folder = tmp_path_factory.mktemp("demo") / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "callhome", "demo", "--dir", str(folder), "--time-scale", "0.05"],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder, result.stdout


def test_the_demo_runs_its_story_and_exits_zero(demo_run: tuple[Path, str]) -> None:
    folder, stdout = demo_run
    result = subprocess.CompletedProcess([], 0, stdout, "")
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


def _receiver(folder: Path, *args: str) -> Any:
    """A --json command of the centre the demo left behind, as an operator runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "-c", str(folder / "centre" / "centre.toml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_the_demo_shows_supervision_callbacks_on_test_and_routing(
    demo_run: tuple[Path, str],
) -> None:
    folder, stdout = demo_run
    incidents = _receiver(folder, "incidents", "--all", "--json")
    by_device = {(i["device"], i["kind"]): i for i in incidents}
    # plant-d stopped calling: late (the engine goes down only from late), then down, an
    # incident; the operator's callback went unanswered (down, not its dial-out); it
    # called again and the incident resolved as restored
    down = by_device[("plant-d", "device_down")]
    assert down["severity"] == "critical" and down["status"] == "resolved"
    timeline = _receiver(folder, "incidents", "show", str(down["id"]), "--json")["timeline"]
    whats = [entry["what"] for entry in timeline]
    assert whats[0] == "opened" and whats[-1] == "restored"  # the restore resolved it
    assert "callback" in whats and whats.index("callback") < whats.index("restored")
    callback = next(entry for entry in timeline if entry["what"] == "callback")
    assert "no answer" in callback["text"] and "down" in callback["text"]
    # plant-e answered the centre's callback but never calls out: dial-out broken, and no
    # device_down incident when its grace ended
    broken = by_device[("plant-e", "dial_out_broken")]
    assert broken["status"] == "open" and ("plant-e", "device_down") not in by_device
    # plant-f, on test, stayed silent past its deadline and alerted nobody
    assert not [i for i in incidents if i["device"] == "plant-f"]
    devices = {d["name"]: d for d in _receiver(folder, "devices", "--json")}
    assert devices["plant-f"]["supervision"] == "on test"
    assert devices["plant-f"]["on_test_until"] is not None
    assert devices["plant-d"]["supervision"] in ("restored", "up")
    # each incident went to the centre on duty when it opened, by the routing's own
    # reckoning, and to its on-call; the demo's command notifier wrote every one
    routing = load_routing(folder / "centre" / "oncall.toml")
    on_call = {"tokyo": "aiko", "paris": "alice", "newyork": "carol"}
    with sqlite3.connect(folder / "centre" / "centre.db") as db:
        outbox = [
            (recipient, json.loads(payload), sent)
            for recipient, payload, sent in db.execute(
                "select recipient, payload, sent_at from sun_outbox"
            )
        ]
    notes = [json.loads(line) for line in (folder / "notifications.jsonl").read_text().splitlines()]
    for incident in (down, broken):
        rows = [row for row in outbox if row[1]["incident_id"] == incident["id"]]
        assert rows and all(sent is not None for *_, sent in rows)
        opened = next(row[1] for row in rows if row[1]["change"] == "opened")
        site = Schedule(routing).on_duty(utc(opened["opened_at"]))
        assert site is not None and opened["on_duty"] == site.name
        recipients = {row[0] for row in rows if row[1]["change"] == "opened"}
        assert recipients == {f"centre:{site.name}", f"person:{on_call[site.name]}"}
        keys = {row[1]["idempotency_key"] for row in rows}
        assert keys <= {note["idempotency_key"] for note in notes}
    # and the printed summary says it in words
    summary = stdout[stdout.index("supervision (from the centre's store)") :]
    assert "down at" in summary and "late at" in summary
    assert "dial-out broken" in summary and "routed to the centre on duty" in summary
    assert "on test until" in summary and "restored" in summary


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
