"""`callhome init`, `send --no-call` and `queue`: the client's commands that need no line."""

from __future__ import annotations

import base64
import json
import os

import pytest
from click.testing import CliRunner

from callhome import exitcodes
from callhome.client.cli import main
from callhome.wire.messages import MAX_CONTENT

CENTRE_KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def config(tmp_path):
    folder = tmp_path / "client"
    result = CliRunner().invoke(
        main,
        [
            "init",
            str(folder),
            "--name",
            "plant-a",
            "--centre-key",
            CENTRE_KEY,
            "--number",
            "5550100",
            "--port",
            "/dev/ttyS0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "callhome-receiver enroll plant-a --pubkey " in result.output
    return folder / "client.toml"


def cli(config, *args):
    return CliRunner().invoke(main, ["-c", str(config), *args])


def test_init_refuses_to_overwrite_and_checks_the_centre_key(config, tmp_path):
    key = (config.parent / "device.key").read_bytes()
    again = CliRunner().invoke(
        main,
        [
            "init",
            str(config.parent),
            "--name",
            "x",
            "--centre-key",
            CENTRE_KEY,
            "--number",
            "1",
            "--port",
            "/dev/ttyS0",
        ],
    )
    assert again.exit_code == exitcodes.USAGE and "refusing to overwrite" in again.output
    assert (config.parent / "device.key").read_bytes() == key
    bad = CliRunner().invoke(
        main,
        [
            "init",
            str(tmp_path / "other"),
            "--name",
            "x",
            "--centre-key",
            "xyz",
            "--number",
            "1",
            "--port",
            "/dev/ttyS0",
        ],
    )
    assert bad.exit_code == exitcodes.USAGE and not (tmp_path / "other").exists()


def test_send_queues_and_queue_lists(config, tmp_path):
    result = cli(
        config,
        "send",
        "--no-call",
        "--severity",
        "warning",
        "--component",
        "psu1",
        "--state",
        "degraded",
    )
    assert result.exit_code == 0 and "queued as message 1" in result.output
    report = tmp_path / "r.json"
    report.write_text(
        json.dumps(
            {"severity": "error", "component": "raid", "state": "failed", "data": {"disks": [1, 2]}}
        )
    )
    assert cli(config, "send", "--no-call", "--file", str(report)).exit_code == 0
    queued = json.loads(cli(config, "queue", "--json").output)
    assert [(m["seq"], m["kind"], m["summary"], m["status"]) for m in queued] == [
        (1, "report", "warning psu1 degraded", "queued"),
        (2, "report", "error raid failed", "queued"),
    ]
    assert "raid" in cli(config, "queue").output


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"severity": "apocalyptic"}', "is not one of"),
    ],
)
def test_send_refuses_a_bad_report_file(config, tmp_path, text, complaint):
    report = tmp_path / "r.json"
    report.write_text(text)
    result = cli(config, "send", "--no-call", "--file", str(report))
    assert result.exit_code == exitcodes.USAGE and complaint in result.output
    assert json.loads(cli(config, "queue", "--json").output) == []


def test_send_refuses_a_report_beyond_the_limit(config, tmp_path):
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"log": "x" * (MAX_CONTENT + 1)}))
    result = cli(config, "send", "--no-call", "--file", str(report))
    assert result.exit_code == exitcodes.USAGE and "limit" in result.output
    assert "Traceback" not in result.output
    assert cli(config, "send").exit_code == exitcodes.USAGE  # nothing to send


def test_init_in_a_folder_that_cannot_be_made(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "init",
            "/proc/callhome-nope",
            "--name",
            "x",
            "--centre-key",
            CENTRE_KEY,
            "--number",
            "1",
            "--port",
            "/dev/ttyS0",
        ],
    )
    assert result.exit_code == exitcodes.USAGE, result.output
    assert "cannot create /proc/callhome-nope" in result.output
    assert not isinstance(result.exception, OSError)
    bad_profile = CliRunner().invoke(
        main,
        [
            "init",
            str(tmp_path / "c"),
            "--name",
            "x",
            "--centre-key",
            CENTRE_KEY,
            "--number",
            "1",
            "--port",
            "/dev/ttyS0",
            "--profile",
            "hayes",
        ],
    )
    assert bad_profile.exit_code == exitcodes.USAGE and not (tmp_path / "c").exists()


def test_help_lists_every_exit_code():
    text = CliRunner().invoke(main, ["--help"]).output
    codes = {
        value
        for name, value in vars(exitcodes).items()
        if name.isupper() and isinstance(value, int)
    }
    assert codes == {code for code, _ in exitcodes.TABLE}
    for code, meaning in exitcodes.TABLE:
        assert f"{code:>2}  {meaning}" in text
    assert set(exitcodes.CALL_RESULTS.values()) <= codes
