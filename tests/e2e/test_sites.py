"""Three sites, one PostgreSQL database: three real `callhome-receiver run` processes
(each its own config, `[centre] receiver` and TCP listener) on a database this test
creates. A device calls each of them. One leads supervision; it is killed with SIGKILL;
another takes over within 10 s, raises nothing again, and goes on alerting; a call to a
site that does not lead reaches supervision; the receiver sending a page is killed in
the middle of it and another sends it; every page (a command that appends to a file
when done) is delivered exactly once across the three."""

from __future__ import annotations

import base64
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
RECEIVER = (sys.executable, "-m", "receiver")
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
claim = "3s"

[command.pager]
argv = ["/bin/sh", "{pager}"]
"""

PAGER = """
echo "$CALLHOME_IDEMPOTENCY_KEY $PPID $$" >> {started}
if [ "$CALLHOME_INCIDENT" = 2 ] && mkdir {hang} 2>/dev/null; then
    i=0; while [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done  # killed first
fi
echo "$CALLHOME_IDEMPOTENCY_KEY $CALLHOME_INCIDENT" >> {sent}
"""
"""The page: appended to `sent` once done. The first send of incident 2's page hangs
(its sender is then killed mid-send, with the machine: the receiver and the command)."""


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
                [*RECEIVER, "-c", str(self.folder / "centre.toml"), "run", "--json-logs"],
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


class Device:
    """A client system whose paths ip, ip2, ip3 are the three sites' listeners."""

    def __init__(self, folder: Path, name: str, centre_key: str, addresses: list[str]) -> None:
        self.config = folder / "client.toml"
        command = ["init", str(folder), "--name", name, "--centre-key", centre_key]
        for address in addresses:
            command += ["--ip", address]
        result = self.cli(*command)
        assert result.returncode == 0, result
        self.public = base64.b64decode(result.stdout.split("device public key: ")[1].split()[0])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "callhome", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def line_test(self, path: str) -> None:
        result = self.cli("line-test", "--path", path, "--json")
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["path"] == path


def make_sites(tmp_path: Path, dsn: str, sent: Path) -> tuple[list[Site], str]:
    first = tmp_path / SITES[0]
    result = CliRunner().invoke(main, ["init", str(first), "--store", dsn])
    assert result.exit_code == 0, result.output
    centre_key = result.output.split("centre public key: ")[1].split()[0]
    pager = tmp_path / "pager.sh"
    pager.write_text(
        PAGER.format(started=sent.with_suffix(".started"), hang=tmp_path / "hang", sent=sent)
    )
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
        (folder / "oncall.toml").write_text(ROUTING.format(pager=pager))
        sites.append(Site(name, folder))
    return sites, centre_key


def sent_lines(sent: Path) -> list[str]:
    return sent.read_text().splitlines() if sent.exists() else []


def wait_until_marked_sent(store: PostgresStore, what: str) -> None:
    """Stopped between its command's success and the row marked sent, a sender's claim
    runs out and another site sends the page again (at least once, operations.md): a
    test that stops a site while pages are out waits for this first."""
    wait_until(
        lambda: (rows := store.outbox()) and all(row.sent_at is not None for row in rows),
        30,
        f"{what} to be marked sent",
    )


def test_three_sites_one_supervisor_a_takeover_and_each_notification_once(tmp_path, database):
    sent = tmp_path / "sent.txt"
    sites, centre_key = make_sites(tmp_path, database, sent)
    store = PostgresStore(database)
    try:
        for site in sites:
            site.start()
        leaders = wait_until(
            lambda: [s for s in sites if s.events("supervision.leading")],
            60,
            "a receiver to lead supervision",
        )
        assert len(leaders) == 1, [s.name for s in leaders]
        leader = leaders[0]
        addresses = [
            str(
                wait_until(lambda s=s: s.events("ip.listening"), 30, f"{s.name} listening")[0][
                    "addresses"
                ][0]
            )  # type: ignore[index]
            for s in sites
        ]
        paths = dict(zip(SITES, ("ip", "ip2", "ip3"), strict=True))
        plant = Device(tmp_path / "plant-a", "plant-a", centre_key, addresses)
        store.enroll("plant-a", plant.public, test_interval=3600.0, grace=600.0, site="lyon")
        store.enroll("late-1", os.urandom(32), test_interval=4.0, grace=0.0, site="lille")
        for name in ("plant-a", "late-1"):
            announce(store, name)
        for path in paths.values():  # a device calls each of the three sites
            plant.line_test(path)
        calls = [c for c in store.calls() if c.device == "plant-a"]
        assert sorted(c.receiver for c in calls) == sorted(SITES)  # type: ignore[attr-defined]
        assert all(c.outcome == "completed" for c in calls)
        # late-1 is late: one alert, one page, sent by one of the three
        wait_until(lambda: sent_lines(sent), 60, "the page for late-1")
        first_page = sent_lines(sent)
        assert len(first_page) == 1, first_page
        wait_until_marked_sent(store, "the page for late-1")
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
        # a call to a site that does not lead reaches supervision through the inbox
        (third,) = [s for s in others if s is not successor]
        called = time.time()
        plant.line_test(paths[third.name])
        wait_until(
            lambda: store.supervision_rows("plant-a")[0].last >= called,
            30,
            "the call to reach the new leader's supervision",
        )
        # the new leader goes on: a device enrolled now is watched and alerted; its page's
        # first sender is killed mid-send, and another sends it once the claim runs out
        store.enroll("late-2", os.urandom(32), test_interval=3.0, grace=0.0, site="osaka")
        announce(store, "late-2")
        started = sent.with_suffix(".started")
        hanging = wait_until(
            lambda: [line for line in sent_lines(started) if line.startswith("incident-2@")],
            60,
            "the page for late-2 to start",
        )
        key, receiver_pid, command_pid = hanging[0].split()
        (sender,) = [s for s in others if s.process and s.process.pid == int(receiver_pid)]
        assert sender.process is not None
        sender.process.send_signal(signal.SIGKILL)
        os.kill(int(command_pid), signal.SIGKILL)
        sender.process.wait(10)
        alive = [s for s in others if s is not sender]
        wait_until(lambda: len(sent_lines(sent)) >= 2, 60, "the page for late-2")
        # nothing more may come: give the leader and every sender a few more turns
        time.sleep(3 * 2.0)
        assert [line.split()[0] for line in sent_lines(started)].count(key) == 2  # resent
        lines = sent_lines(sent)
        keys = Counter(line.split()[0] for line in lines)
        assert all(count == 1 for count in keys.values()), lines  # each sent once
        incidents = Counter(line.split()[1] for line in lines)
        assert len(lines) == 2 and len(incidents) == 2, lines  # late-1 not alerted again
        opened = store.incident_rows(status=("open", "acknowledged"))
        assert sorted(i.device or "" for i in opened) == ["late-1", "late-2"]
        assert all(row.sent_at is not None for row in store.outbox())
        for site in alive:
            assert site.process is not None and site.process.poll() is None
            assert not site.events("supervision.failed")
    finally:
        for site in sites:
            site.stop()
        store.close()
    for site in alive:
        assert site.process is not None and site.process.returncode == 0


def test_a_paused_supervisor_loses_the_lead_and_writes_nothing_when_it_wakes(tmp_path, database):
    """SIGSTOP, not SIGKILL: its connections stay open, but the lease's idle limit ends
    it; another takes over; woken up (SIGCONT), the old leader resigns, and no alert is
    raised twice."""
    sent = tmp_path / "sent.txt"
    sites, _ = make_sites(tmp_path, database, sent)
    sites = sites[:2]
    store = PostgresStore(database)
    try:
        store.enroll("late-1", os.urandom(32), test_interval=3.0, grace=0.0, site="lille")
        for site in sites:
            site.start()
        wait_until(lambda: sent_lines(sent), 60, "the page for late-1")
        wait_until_marked_sent(store, "the page for late-1")
        (leader,) = [s for s in sites if s.events("supervision.leading")]
        (other,) = [s for s in sites if s is not leader]
        assert leader.process is not None
        leader.process.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            wait_until(lambda: other.events("supervision.leading"), 30, "the other to lead")
            took = time.monotonic() - paused
            assert took < 3 * 2.0 + TAKEOVER, f"took over after {took:.1f} s"
        finally:
            leader.process.send_signal(signal.SIGCONT)
        resigned = wait_until(
            lambda: leader.events("supervision.resigned"), 30, "the old leader to resign"
        )
        assert resigned[0]["why"] == "lease lost"
        store.enroll("late-2", os.urandom(32), test_interval=3.0, grace=0.0, site="osaka")
        announce(store, "late-2")
        wait_until(lambda: len(sent_lines(sent)) >= 2, 60, "the page for late-2")
        time.sleep(2 * 2.0)  # nothing more may come
        lines = sent_lines(sent)
        assert len(lines) == 2 and len({line.split()[1] for line in lines}) == 2, lines
        assert store.lease_holder("supervisor")[:2] == (other.name, 2)  # type: ignore[index]
        assert leader.process.poll() is None  # it goes on answering calls
    finally:
        for site in sites:
            site.stop()
        store.close()
