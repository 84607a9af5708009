"""The README's first command: `callhome demo` tells its whole story and exits 0."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from receiver.sun.model import load_routing
from receiver.sun.schedule import Schedule, utc

CONSOLE_LINE = re.compile(r"console: (http://127\.0\.0\.1:\d+/) \(log in as demo, password (\S+)\)")


@dataclass
class Visit:
    """What the console answered while the demo ran."""

    login: int
    overview: int
    overview_text: str
    devices_text: str
    running: bool
    """The demo had not finished when the pages were read."""


def _visit(url: str, password: str, process: subprocess.Popen[str]) -> Visit:
    """Log in to the demo's console over HTTP (no browser) and read two pages."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = opener.open(url + "login", timeout=30).read().decode()
    match = re.search(r'name="csrf" value="([^"]*)"', form)
    assert match, form
    data = {"name": "demo", "password": password, "csrf": match.group(1), "next": "/"}
    login = opener.open(url + "login", urllib.parse.urlencode(data).encode(), timeout=30)
    overview = opener.open(url, timeout=30)
    overview_text = overview.read().decode()
    devices_text = opener.open(url + "devices", timeout=30).read().decode()
    return Visit(
        login.status,
        overview.status,
        overview_text,
        devices_text,
        process.poll() is None,
    )


class _Demo:
    """`callhome demo --dir FOLDER --time-scale 0.05 ARGS` running, all of its stdout read
    by a thread (so it never blocks on a full pipe), lines waited for by pattern."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "callhome", "demo", "--dir", str(folder)),
                *("--time-scale", "0.05", *args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._arrived:
                self.lines.append(line)
                self._arrived.notify_all()
        with self._arrived:
            self.lines.append("")  # the end: nothing more will come
            self._arrived.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first line matching `pattern`; None if the output ended or time ran out."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._arrived:
            while True:
                for line in self.lines[seen:]:
                    if found := pattern.search(line):
                        return found
                    if line == "":
                        return None
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    return None

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """Wait for the demo to exit (killed after `timeout`): exit code, stdout, stderr."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        assert self.process.stderr is not None
        return self.process.returncode, "".join(self.lines), self.process.stderr.read()

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Visit]:
    """One run of the demo for every test of it (it takes some twenty seconds), its
    console visited while it runs."""
    folder = tmp_path_factory.mktemp("demo") / "demo"
    demo = _Demo(folder)
    try:
        console = demo.wait_for(CONSOLE_LINE, 60)
        assert console, demo.output
        visit = _visit(console.group(1), console.group(2), demo.process)
    finally:
        code, stdout, stderr = demo.finish(180)
    assert code == 0, stdout + stderr
    return folder, stdout, visit


def test_the_demo_runs_its_story_and_exits_zero(demo_run: tuple[Path, str, Visit]) -> None:
    folder, stdout, _ = demo_run
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
    demo_run: tuple[Path, str, Visit],
) -> None:
    folder, stdout, _ = demo_run
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


def test_the_demo_serves_its_console_while_it_runs(demo_run: tuple[Path, str, Visit]) -> None:
    _, _, visit = demo_run
    assert visit.running  # read while the story went on, not after
    assert (visit.login, visit.overview) == (200, 200)  # the login redirected to /
    assert "<h2>Bank</h2>" in visit.overview_text and "Open incidents" in visit.overview_text
    assert "port states are not known here" not in visit.overview_text  # the bank's own
    assert "demo (operator)" in visit.overview_text  # logged in, may acknowledge
    assert "plant-a" in visit.devices_text


def test_the_demo_serves_its_console_on_loopback_only(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callhome", "demo", "--console-listen", "0.0.0.0:8080"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a loopback address" in result.stderr and "Traceback" not in result.stderr


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


def test_no_console_and_stay_keep_the_centre_up_without_a_console_until_interrupted(
    tmp_path: Path,
) -> None:
    """`--no-console`: no console line, no listening console. `--stay`: after the story
    the demo keeps running (it does not exit) until SIGINT, then sums up and exits 0."""
    import signal

    demo = _Demo(tmp_path / "demo", "--no-console", "--stay")
    try:
        assert demo.wait_for(re.compile("the story is over"), 180), demo.output
        time.sleep(1.0)  # it stays: nothing to wait for but the absence of an exit
        assert demo.process.poll() is None, demo.output
        demo.process.send_signal(signal.SIGINT)
    finally:
        code, stdout, stderr = demo.finish(60)
    assert code == 0, stdout + stderr
    assert not CONSOLE_LINE.search(stdout) and "console:" not in stdout
    assert "everything as expected" in stdout and "Traceback" not in stdout + stderr
    assert stdout.index("the story is over") < stdout.index("everything as expected")
