"""The centre decodes the agent's messages: `device NAME` and `reports`."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import cbor2
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from callhome.wire.messages import (
    agent_event_content,
    agent_line_test_content,
    agent_throttled_content,
    encode_content,
)
from receiver.agent_reports import agent_content, describe
from receiver.bank import summarise
from receiver.cli import main
from receiver.store import SQLiteStore


def cli(config: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["-c", str(config), *args])


def event(check: str, previous: str, state: str, text: str, t: float, **more: object) -> bytes:
    content = agent_event_content(
        check=check,
        event=str(more.pop("event", "change")),
        state=state,
        previous=previous,
        since=t,
        time=t,
        text=text,
        **more,  # type: ignore[arg-type]
    )
    return encode_content(content)


def test_device_shows_each_check_and_reports_show_the_change(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "c"), "--port", "/dev/ttyS0"]).exit_code == 0
    config = tmp_path / "c" / "centre.toml"
    pubkey = base64.b64encode(os.urandom(32)).decode()
    assert (
        runner.invoke(main, ["-c", str(config), "enroll", "plant-a", "--pubkey", pubkey]).exit_code
        == 0
    )
    store = SQLiteStore(tmp_path / "c" / "centre.db")
    (device,) = store.devices()
    now = time.time()
    bodies = [
        ("report", event("md/md0", "OK", "CRITICAL", "degraded [U_]", now - 300)),
        (
            "report",
            event("fan1", "OK", "WARNING", "fan 500 RPM", now - 250, value=500.0, unit="RPM"),
        ),
        ("report", event("md/md0", "CRITICAL", "OK", "clean [UU]", now - 200)),
        ("report", event("fan1", "WARNING", "WARNING", "flapping", now - 150, event="flapping")),
        (
            "line-test",
            encode_content(agent_line_test_content({"time": int(now)}, "3 checks: 3 OK")),
        ),
        (
            "report",
            encode_content(
                agent_throttled_content(
                    check="temp", held=12, first_held=now, state="WARNING", since=now, text="hot"
                )
            ),
        ),
    ]
    for seq, (kind, body) in enumerate(bodies, 1):
        store.store_message(
            device.id, 7, seq, kind, body, summarise(body), None, now - 300 + seq * 10
        )
    store.close()
    result = runner.invoke(main, ["-c", str(config), "device", "plant-a", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    checks = {c["check"]: c for c in data["checks"]}
    assert checks["md/md0"]["state"] == "OK" and checks["md/md0"]["text"] == "clean [UU]"
    assert checks["fan1"]["flapping"] and checks["fan1"]["value"] == 500.0
    assert checks["temp"]["state"] == "WARNING"
    assert data["last_health"]["health"] == "3 checks: 3 OK"
    text = runner.invoke(main, ["-c", str(config), "device", "plant-a"]).output
    assert "md/md0" in text and "(flapping)" in text
    reports = runner.invoke(main, ["-c", str(config), "reports"]).output
    assert "md/md0 OK -> CRITICAL: degraded [U_]" in reports
    assert "temp throttled: 12 events held back" in reports
    assert "health: 3 checks: 3 OK" in reports
    items = json.loads(runner.invoke(main, ["-c", str(config), "reports", "--json"]).output)
    assert any(i["text"] == "md/md0 CRITICAL -> OK: clean [UU]" for i in items)
    missing = runner.invoke(main, ["-c", str(config), "device", "nobody"])
    assert missing.exit_code == 2 and "no device named" in missing.output


def test_the_store_indexes_agent_events_like_any_report() -> None:
    body = event("md/md0", "OK", "CRITICAL", "degraded", 1.7e9)
    assert summarise(body) == {"severity": "critical", "component": "md/md0", "state": "CRITICAL"}


@given(st.binary(max_size=64))
def test_hostile_content_is_not_an_agent_message(data: bytes) -> None:
    assert describe("report", data) is None or agent_content(data) is not None


def test_a_newer_version_is_not_misread() -> None:
    assert agent_content(cbor2.dumps({"v": 99, "type": "event"})) is None
