"""`callhome-receiver` administration commands (run is covered end to end in tests/e2e)."""

from __future__ import annotations

import base64
import json
import os
import time

import cbor2
import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.store import CallEnd, SQLiteStore


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def centre(tmp_path):
    folder = tmp_path / "centre"
    result = CliRunner().invoke(main, ["init", str(folder), "--port", "/dev/ttyS0"])
    assert result.exit_code == 0, result.output
    assert "centre public key: " in result.output
    return folder / "centre.toml"


def cli(config, *args):
    return CliRunner().invoke(main, ["-c", str(config), *args])


def test_init_creates_a_private_key_and_refuses_to_overwrite(centre):
    folder = centre.parent
    assert oct((folder / "centre.key").stat().st_mode & 0o777) == "0o600"
    before = (folder / "centre.key").read_bytes()
    again = CliRunner().invoke(main, ["init", str(folder)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    assert (folder / "centre.key").read_bytes() == before


def test_enroll_list_and_revoke(centre):
    public = key()
    result = cli(
        centre,
        "enroll",
        "plant-a",
        "--pubkey",
        public,
        "--test-interval",
        "6h",
        "--grace",
        "10m",
        "--site",
        "lyon",
    )
    assert result.exit_code == 0, result.output
    (device,) = json.loads(cli(centre, "devices", "--json").output)
    assert (
        device["name"],
        device["public_key"],
        device["test_interval"],
        device["grace"],
        device["site"],
        device["revoked"],
    ) == ("plant-a", public, 21600, 600, "lyon", None)
    assert "plant-a" in cli(centre, "devices").output
    assert cli(centre, "enroll", "plant-a", "--pubkey", key()).exit_code == 2
    again = cli(centre, "enroll", "plant-b", "--pubkey", public)
    assert again.exit_code == 2 and "already enrolled" in again.output
    bad = cli(centre, "enroll", "plant-c", "--pubkey", "not-a-key")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert cli(centre, "enroll", "plant-c", "--pubkey", key(), "--grace", "soon").exit_code == 2
    assert cli(centre, "revoke", "plant-a").exit_code == 0
    (device,) = json.loads(cli(centre, "devices", "--json").output)
    assert device["revoked"] is not None
    fresh = key()
    rekeyed = cli(centre, "rekey", "plant-a", "--pubkey", fresh)
    assert rekeyed.exit_code == 0 and fresh in rekeyed.output
    (device,) = json.loads(cli(centre, "devices", "--json").output)
    assert device["public_key"] == fresh and device["revoked"] is None
    assert cli(centre, "rekey", "nobody", "--pubkey", key()).exit_code == 2
    missing = cli(centre, "revoke", "nobody")
    assert missing.exit_code == 2 and "no device named" in missing.output


def test_a_devices_customer_is_set_at_enrolment_and_by_assign(centre):
    enrolled = cli(centre, "enroll", "plant-a", "--pubkey", key(), "--customer", "acme")
    assert enrolled.exit_code == 0, enrolled.output
    (device,) = json.loads(cli(centre, "devices", "--json").output)
    assert (device["customer"], device["site"]) == ("acme", None)
    assert "acme" in cli(centre, "devices").output
    assigned = cli(centre, "assign", "plant-a", "--customer", "globex", "--site", "lyon")
    assert assigned.exit_code == 0 and "customer globex, site lyon" in assigned.output
    cleared = cli(centre, "assign", "plant-a", "--site", "")
    assert cleared.exit_code == 0 and "customer globex, site -" in cleared.output
    (device,) = json.loads(cli(centre, "devices", "--json").output)
    assert (device["customer"], device["site"]) == ("globex", None)
    nothing = cli(centre, "assign", "plant-a")
    assert nothing.exit_code == 2 and "give --customer or --site" in nothing.output
    missing = cli(centre, "assign", "nobody", "--customer", "acme")
    assert missing.exit_code == 2 and "no device named" in missing.output
    assert "Traceback" not in missing.output


def test_reports_and_calls_filters(centre):
    assert cli(centre, "enroll", "plant-a", "--pubkey", key()).exit_code == 0
    store = SQLiteStore(centre.parent / "centre.db")
    (device,) = store.devices()
    now = time.time()
    for age, severity in [(7200, "info"), (3000, "warning"), (60, "critical")]:
        store.store_message(
            device.id,
            1,
            age,
            "report",
            cbor2.dumps({"note": b"\xff\x00"}),
            {"severity": severity, "component": "psu", "state": "x"},
            None,
            now - age,
        )
    call = store.start_call("bank0", "5550001", now - 50)
    store.finish_call(
        call,
        CallEnd(
            ended=now - 40,
            outcome="completed",
            device_id=device.id,
            rate=9600,
            modulation=None,
            error_correction=None,
            bytes_in=10,
            bytes_out=5,
            messages=1,
            error=None,
        ),
    )
    store.close()

    def severities(*args):
        result = cli(centre, "reports", "--json", *args)
        assert result.exit_code == 0, result.output
        return [item["severity"] for item in json.loads(result.output)]

    assert severities() == ["critical", "warning", "info"]
    assert severities("--since", "1h") == ["critical", "warning"]
    assert severities("--until", "1h") == ["info"]
    assert severities("--severity", "warning") == ["warning"]
    assert severities("--min-severity", "warning") == ["critical", "warning"]
    assert severities("--device", "nobody") == []
    (first, *_) = json.loads(cli(centre, "reports", "--json").output)
    assert first["content"] == {"note": {"hex": "ff00"}}
    assert cli(centre, "reports", "--since", "yesterday-ish").exit_code == 2
    assert cli(centre, "reports", "--severity", "info", "--min-severity", "info").exit_code == 2
    table = cli(centre, "reports").output
    assert "critical" in table and "psu" in table
    calls = json.loads(cli(centre, "calls", "--json", "--device", "plant-a").output)
    assert [(c["port"], c["outcome"], c["seconds"]) for c in calls] == [
        ("bank0", "completed", 10.0)
    ]
    assert "bank0" in cli(centre, "calls").output


def test_init_in_a_folder_that_cannot_be_made(tmp_path):
    result = CliRunner().invoke(main, ["init", "/proc/callhome-nope"])
    assert result.exit_code == 2 and "cannot create /proc/callhome-nope" in result.output
    assert not isinstance(result.exception, OSError)
    bad = CliRunner().invoke(main, ["init", str(tmp_path / "c"), "--profile", "hayes"])
    assert bad.exit_code == 2 and not (tmp_path / "c").exists()


def test_run_without_ports_says_so(tmp_path):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "c")])
    assert result.exit_code == 0
    run = cli(tmp_path / "c" / "centre.toml", "run")
    assert run.exit_code == 2 and "bank.ports: no modem ports configured" in run.output


def test_one_exit_code_table_for_both_ends(tmp_path):
    from callhome import exitcodes

    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "11  the spool or the store cannot be used" in help_text
    assert " 3  " not in help_text  # 3 is a modem failure, which the centre never exits with
    folder = tmp_path / "c"
    assert CliRunner().invoke(main, ["init", str(folder)]).exit_code == 0
    (folder / "centre.db").write_bytes(b"not a database" * 100)
    result = CliRunner().invoke(main, ["-c", str(folder / "centre.toml"), "devices"])
    assert result.exit_code == exitcodes.STORAGE, result.output
    assert "damaged" in result.output and result.output.count("\n") == 1


def test_a_bank_config_problem_names_file_and_key(tmp_path):
    from callhome import exitcodes

    folder = tmp_path / "c"
    assert CliRunner().invoke(main, ["init", str(folder)]).exit_code == 0
    config = folder / "centre.toml"
    config.write_text(config.read_text().replace("ports = []", 'ports = ["tcp://bank:1"]'))
    result = CliRunner().invoke(main, ["-c", str(config), "run"])
    assert result.exit_code == exitcodes.USAGE, result.output
    assert f"{config}: bank.ports: 'tcp://bank:1': unknown kind of port" in result.output
    assert result.output.count("\n") == 1
    bad = CliRunner().invoke(main, ["init", str(tmp_path / "d"), "--port", "tcp://x:1"])
    assert bad.exit_code == exitcodes.USAGE and not (tmp_path / "d").exists()


def test_run_closes_the_calls_a_crashed_receiver_left_open(centre):
    import signal
    import subprocess
    import sys

    store_path = centre.parent / "centre.db"
    # a port that fails at once: the bank keeps running, and stops at once on SIGTERM
    centre.write_text(centre.read_text().replace("/dev/ttyS0", str(centre.parent / "no-tty")))
    store = SQLiteStore(store_path)
    store.start_call("bank0", "5550001", time.time() - 60)
    store.close()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "receiver", "-c", str(centre), "run", "--json-logs"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        outcome = "in progress"
        while outcome == "in progress" and time.monotonic() < deadline:
            time.sleep(0.05)
            store = SQLiteStore(store_path)
            outcome = store.calls()[0].outcome
            store.close()
        assert outcome == "interrupted"
        # SIGTERM only once the receiver has its handler (the bank has started): before
        # that, the default action ends it with -15
        assert receiver.stderr is not None
        for line in receiver.stderr:
            seen.append(line)
            if '"bank.started"' in line:
                break
    finally:
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=30)
    err = "".join(seen) + err
    assert '"calls.interrupted"' in err and receiver.returncode == 0, err
    stopped = next(json.loads(line) for line in err.splitlines() if '"bank.stopped"' in line)
    # what group commit did, for an operator to read
    counts = [stopped[k] for k in ("store_trips", "commits", "writes", "reads")]
    assert all(isinstance(n, int) and n >= 0 for n in counts), stopped


def test_run_tunes_the_garbage_collector_before_it_serves(centre, monkeypatch):
    import gc
    import types

    import receiver.cli as cli_module

    tuned: list[tuple[int, ...]] = []
    monkeypatch.setattr(cli_module, "tune_gc", lambda: tuned.append(gc.get_threshold()))

    class NoLoop:
        def __init__(self, loop_factory=None) -> None:
            assert loop_factory is None  # asyncio's own loop, by default

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def run(self, coroutine):
            coroutine.close()
            assert tuned, "the collector was not tuned before the loop started"
            return 0

    monkeypatch.setattr(cli_module, "asyncio", types.SimpleNamespace(Runner=NoLoop))
    result = cli(centre, "run")
    assert result.exit_code == 0, result.output
    assert len(tuned) == 1


def test_tune_gc_freezes_start_up_and_collects_the_young_less_often():
    import subprocess
    import sys

    probe = (
        "import gc; from receiver.cli import tune_gc, GC_YOUNG_THRESHOLD; "
        "before = gc.get_threshold(); tune_gc(); after = gc.get_threshold(); "
        "print(before[0] < GC_YOUNG_THRESHOLD, after[0] == GC_YOUNG_THRESHOLD, "
        "after[1:] == before[1:], gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True", "True"]


def test_calls_show_what_the_protocol_counted(centre):
    store = SQLiteStore(centre.parent / "centre.db")
    now = time.time()
    quiet = store.start_call("bank0", None, now - 20)
    attacked = store.start_call("bank1", "5550001", now - 10)
    for call, counters in ((quiet, None), (attacked, {"replays": 2, "crc_failures": 5})):
        store.finish_call(
            call,
            CallEnd(
                ended=now - 5,
                outcome="completed",
                device_id=None,
                rate=None,
                modulation=None,
                error_correction=None,
                bytes_in=0,
                bytes_out=0,
                messages=0,
                error=None,
                security=counters,
            ),
        )
    store.close()
    calls = json.loads(cli(centre, "calls", "--json").output)
    zero = dict.fromkeys(["auth_failures", "replays", "crc_failures", "malformed", "oversize"], 0)
    assert [c["security"] for c in calls] == [
        {**zero, "replays": 2, "crc_failures": 5},
        zero,
    ]
    lines = cli(centre, "calls").output.splitlines()
    assert lines[1].endswith("completed  [replays=2 crc_failures=5]")
    assert lines[2].endswith("completed")
    assert lines[-1] == "2 replays"  # the summary an operator looks for after an attack


def test_a_second_receiver_on_one_sqlite_store_is_refused(centre, monkeypatch):
    """A SQLite store is one site's: its outbox is not claimed row by row, and a second
    receiver would take the first's calls in progress for interrupted ones."""
    from callhome import exitcodes
    from receiver import cli as cli_module
    from receiver.leases import sole_receiver

    async def bank_runs(*args: object) -> int:
        return 0  # had it got this far (it must not)

    monkeypatch.setattr(cli_module, "_run", bank_runs)

    store = SQLiteStore(centre.parent / "centre.db")
    running = sole_receiver(store)  # as the receiver already running holds it
    assert running is not None
    try:
        call = store.start_call("bank0", "5550001", time.time())  # its call in progress
        result = cli(centre, "run")
        assert result.exit_code == exitcodes.STORAGE, result.output
        assert "another receiver is running on this store" in result.output
        assert "PostgreSQL" in result.output and result.output.count("\n") == 1
        assert store.calls()[0].id == call and store.calls()[0].outcome == "in progress"
    finally:
        running.release()
        store.close()


def test_run_names_a_bad_event_loop_and_a_missing_uvloop(centre, monkeypatch):
    text = centre.read_text()
    centre.write_text(text.replace('event_loop = "asyncio"', 'event_loop = "tokio"'))
    bad = cli(centre, "run")
    assert bad.exit_code == 2
    assert "centre.event_loop: expected one of asyncio, uvloop" in bad.output

    sockets = text.replace('event_loop = "asyncio"', 'event_loop = "uvloop"')
    centre.write_text(sockets.replace("/dev/ttyS0", "socket://ts1.example:7001"))
    raw = cli(centre, "run")  # pyserial-asyncio-fast's socket:// transport is asyncio's
    assert raw.exit_code == 2
    assert "uvloop cannot drive socket:// ports (socket://ts1.example:7001)" in raw.output

    centre.write_text(text.replace('event_loop = "asyncio"', 'event_loop = "uvloop"'))
    monkeypatch.setitem(__import__("sys").modules, "uvloop", None)  # not installed
    missing = cli(centre, "run")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "centre.event_loop: uvloop is not installed" in missing.output
    assert "pip install 'callhome[uvloop]'" in missing.output
