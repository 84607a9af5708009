"""Three sites, one PostgreSQL database: three real `callhome-receiver run` processes
(each its own config, `[centre] receiver` and TCP listener) on a database this test
creates. One leads supervision; it is killed with SIGKILL; another takes over within
10 s, raises nothing again, and goes on alerting; every notification (a command that
appends to a file) is sent exactly once across the three."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.cli_supervision import announce
from receiver.store_pg import PostgresStore

from ..receiver.pgtest import admin, dsn_for, require_postgres

SITES = ("paris", "newyork", "tokyo")
TAKEOVER = 10.0

ROUTING = """
[routing]
default_policy = "page"

[[site]]
name = "everywhere"
zone = "UTC"
hours = {{ mon-sun = "00:00-24:00" }}
roster = "oncall"

[people.pat]
command = "pager"

[[roster]]
name = "oncall"
site = "everywhere"
[[roster.layer]]
name = "always"
members = ["pat"]
turn = "7d"
start = 2026-01-05T00:00:00

[[policy]]
name = "page"
[[policy.step]]
notify = "oncall"
wait = "24h"

[delivery]
attempts = 3
backoff_initial = "1s"
backoff_cap = "2s"

[command.pager]
argv = ["/bin/sh", "-c", "echo \\"$CALLHOME_IDEMPOTENCY_KEY $CALLHOME_INCIDENT $CALLHOME_SUBJECT\\" >> {sent}"]
"""


@pytest.fixture
def database():
    require_postgres()
    name = f"callhome_sites_{uuid.uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_for(name)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Site:
    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.log = folder / "receiver.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "receiver", "-c", str(self.folder / "centre.toml")]
                + ["run", "--json-logs"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
            )

    def events(self, what: str) -> list[dict[str, object]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == what:
                found.append(entry)
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def make_sites(tmp_path: Path, dsn: str, sent: Path) -> list[Site]:
    first = tmp_path / SITES[0]
    result = CliRunner().invoke(main, ["init", str(first), "--store", dsn])
    assert result.exit_code == 0, result.output
    template = (first / "centre.toml").read_text()
    key = (first / "centre.key").read_bytes()
    sites = []
    for name in SITES:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        key_file = folder / "centre.key"
        if not key_file.exists():
            key_file.write_bytes(key)  # one centre key: a device may call any site
            key_file.chmod(0o600)
        text = template.replace("[centre]\n", f'[centre]\nreceiver = "{name}"\n', 1)
        text += '\n[ip]\nlisten = ["127.0.0.1:0"]\n'
        text += '\n[supervision]\ncommand_poll = "0.5s"\n'
        (folder / "centre.toml").write_text(text)
        (folder / "oncall.toml").write_text(ROUTING.format(sent=sent))
        sites.append(Site(name, folder))
    return sites


def sent_lines(sent: Path) -> list[str]:
    return sent.read_text().splitlines() if sent.exists() else []


def test_three_sites_one_supervisor_a_takeover_and_each_notification_once(tmp_path, database):
    sent = tmp_path / "sent.txt"
    sites = make_sites(tmp_path, database, sent)
    store = PostgresStore(database)
    try:
        store.enroll("late-1", os.urandom(32), test_interval=4.0, grace=0.0, site="lyon")
        for site in sites:
            site.start()
        leaders = wait_until(
            lambda: [s for s in sites if s.events("supervision.leading")],
            60,
            "a receiver to lead supervision",
        )
        assert len(leaders) == 1, [s.name for s in leaders]
        leader = leaders[0]
        for site in sites:  # every site answers devices
            wait_until(lambda site=site: site.events("ip.listening"), 30, f"{site.name} ready")
        # late-1 is late: one alert, one page, sent by one of the three
        wait_until(lambda: sent_lines(sent), 60, "the page for late-1")
        first_page = sent_lines(sent)
        assert len(first_page) == 1, first_page
        assert leader.process is not None
        leader.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.process.wait(10)
        others = [s for s in sites if s is not leader]
        successor = wait_until(
            lambda: next((s for s in others if s.events("supervision.leading")), None),
            TAKEOVER + 20,
            "another receiver to take over",
        )
        took = time.monotonic() - killed
        assert took < TAKEOVER, f"took over after {took:.1f} s"
        assert store.lease_holder("supervisor")[0] == successor.name  # type: ignore[index]
        # the new leader goes on: a device enrolled now is watched and alerted
        store.enroll("late-2", os.urandom(32), test_interval=3.0, grace=0.0, site="osaka")
        announce(store, "late-2")
        wait_until(lambda: len(sent_lines(sent)) >= 2, 60, "the page for late-2")
        time.sleep(3 * 2.0)  # a few more turns of the new leader and of every sender
        lines = sent_lines(sent)
        keys = Counter(line.split()[0] for line in lines)
        assert all(count == 1 for count in keys.values()), lines  # each sent once
        incidents = Counter(line.split()[1] for line in lines)
        assert len(lines) == 2 and len(incidents) == 2, lines  # late-1 not alerted again
        opened = store.incident_rows(status=("open", "acknowledged"))
        assert sorted(i.device or "" for i in opened) == ["late-1", "late-2"]
        assert all(row.sent_at is not None for row in store.outbox())
        for site in others:
            assert site.process is not None and site.process.poll() is None
            assert not site.events("supervision.failed")
    finally:
        for site in sites:
            site.stop()
        store.close()
    for site in others:
        assert site.process is not None and site.process.returncode == 0
