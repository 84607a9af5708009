"""The coverage check and `callhome-receiver oncall`, and config errors that name the key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from modem_drivers.configfile import ConfigError
from receiver.cli import main
from receiver.sun.check import check
from receiver.sun.model import Routing, load_routing

from .conftest import EXAMPLE

SMALL = """
[[site]]
name = "paris"
zone = "Europe/Paris"
hours = { mon-fri = "08:00-20:00" }
roster = "night"

[[site]]
name = "tokyo"
zone = "Asia/Tokyo"
hours = { mon-fri = "09:00-18:00" }
roster = "night"

[people.a]
email = "a@example.com"
[people.b]
email = "b@example.com"
[people.quiet]

[smtp]
host = "127.0.0.1"

[[roster]]
name = "night"
zone = "UTC"
[[roster.layer]]
members = ["a", "b"]
turn = "1d"
start = 2026-01-05T00:00:00
restrict = { mon-fri = "17:00-09:00" }
[[roster.override]]
who = "a"
from = 2026-03-03T00:00:00
until = 2026-03-04T00:00:00
[[roster.override]]
who = "b"
from = 2026-03-03T12:00:00
until = 2026-03-05T00:00:00

[[policy]]
name = "p"
[[policy.step]]
notify = ["oncall", "person:quiet"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oncall.toml"
    path.write_text(text)
    return path


def test_the_example_passes_its_check(example: Routing) -> None:
    coverage = check(example, datetime(2026, 1, 1, tzinfo=UTC), 365)
    assert coverage.ok, coverage.findings
    assert len(coverage.handovers) > 700


def test_the_check_finds_gaps_overlaps_and_empty_steps(tmp_path: Path) -> None:
    routing = load_routing(write(tmp_path, SMALL))
    coverage = check(routing, datetime(2026, 3, 2, tzinfo=UTC), 7)
    kinds = {(f.kind, f.text.split(":")[0]) for f in coverage.findings}
    texts = " | ".join(f.text for f in coverage.findings)
    # weekends: the restricted layer covers only weeknights
    gaps = [f for f in coverage.findings if f.kind == "gap"]
    assert gaps and all("nobody is on call in roster night" in f.text for f in gaps)
    # Friday night's window runs to Saturday 09:00 UTC; nothing then until Monday 17:00
    assert gaps[0].start == datetime(2026, 3, 7, 9, tzinfo=UTC)
    assert ("overlap", "roster night") in kinds, texts
    assert "policy p step 1: quiet has no address" in texts
    assert "policy p step 1: oncall: nobody in roster night" in texts


def test_cli_oncall_shows_the_watch_and_check_exits_1_on_problems(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(
        main, ["oncall", "--routing", str(EXAMPLE), "--at", "2026-03-10T11:59", "--site", "paris"]
    )
    assert shown.exit_code == 0, shown.output
    assert "paris has the watch (in business hours)" in shown.output
    assert "next hand-over: 2026-03-10 12:00 UTC to newyork" in shown.output
    assert "tokyo " not in shown.output
    checked = runner.invoke(
        main,
        ["oncall", "check", "--routing", str(EXAMPLE), "--from", "2026-01-01", "--days", "30"],
    )
    assert checked.exit_code == 0, checked.output
    assert "0 problem(s)" in checked.output
    bad = write(tmp_path, SMALL)
    failed = runner.invoke(
        main, ["oncall", "check", "--routing", str(bad), "--from", "2026-03-02", "--days", "7"]
    )
    assert failed.exit_code == 1
    assert "gap " in failed.output and "overlap " in failed.output
    # the routing file is found next to the centre's config by default
    found = runner.invoke(main, ["-c", str(tmp_path / "centre.toml"), "oncall", "check"])
    assert found.exit_code == 1 and "problem(s)" in found.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('zone = "Europe/Paris"', 'zone = "Europe/Pariss"'), "site[0].zone: unknown time zone"),
        (('"08:00-20:00"', '"08:00-25:00"'), "site[0].hours.mon-fri: not a time of day"),
        (('"08:00-20:00"', '"24:00-08:00"'), "24:00 only ends"),
        (('mon-fri = "08:00-20:00"', 'fri-mon = "08:00-20:00"'), "site[0].hours.fri-mon"),
        (('roster = "night"', 'roster = "day"'), "site[0].roster: no roster named 'day'"),
        (('who = "b"', 'who = "zed"'), "roster[0].override[1].who: no person named 'zed'"),
        (('turn = "1d"', 'turn = "soon"'), "roster[0].layer[0].turn: not a duration"),
        (('"person:quiet"', '"pager:quiet"'), "policy[0].step[0].notify"),
        (("[people.quiet]", '[people.quiet]\npager = "x"'), "people.quiet.pager: unknown key"),
    ],
)
def test_config_errors_name_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    assert change[0] in SMALL
    path = write(tmp_path, SMALL.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as caught:
        load_routing(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    result = CliRunner().invoke(main, ["oncall", "--routing", str(path)])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_holidays_file(tmp_path: Path) -> None:
    (tmp_path / "fr.txt").write_text("# French public holidays\n2026-07-14  fete nationale\n")
    text = SMALL.replace('roster = "night"', 'roster = "night"\nholidays_file = "fr.txt"', 1)
    routing = load_routing(write(tmp_path, text))
    assert {d.isoformat() for d in routing.sites[0].holidays} == {"2026-07-14"}
    (tmp_path / "fr.txt").write_text("14/07/2026\n")
    with pytest.raises(ConfigError, match=r"fr.txt:1: not a date"):
        load_routing(tmp_path / "oncall.toml")


def test_cli_outbox_lists_sent_pending_and_failed(tmp_path: Path) -> None:
    from receiver.store import OutboxItem, SQLiteStore

    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "c")]).exit_code == 0
    store = SQLiteStore(tmp_path / "c" / "centre.db")
    items = [
        OutboxItem(f"k{n}|email|a@b.c", f"k{n}", "email", "a@b.c", "person:a", "s", "b", "{}")
        for n in range(3)
    ]
    store.sun_commit(items, [], [], 1000.0)
    first, second, _ = sorted(store.outbox(), key=lambda row: row.id)
    store.outbox_attempt(first.id, 1001.0, sent=True)
    store.outbox_attempt(second.id, 1002.0, sent=False, error="smtp x: refused: 554")
    store.close()
    config = str(tmp_path / "c" / "centre.toml")
    listed = runner.invoke(main, ["-c", config, "oncall", "outbox"])
    assert listed.exit_code == 1, listed.output
    assert "sent 1970-01-01 00:16 UTC" in listed.output
    assert "FAILED" in listed.output and "smtp x: refused: 554" in listed.output
    assert "pending" in listed.output
    pending = runner.invoke(main, ["-c", config, "oncall", "outbox", "--pending"])
    assert pending.exit_code == 0 and pending.output.count("pending") == 1
    missing = runner.invoke(main, ["-c", str(tmp_path / "none.toml"), "oncall", "outbox"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
