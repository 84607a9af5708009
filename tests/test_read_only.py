"""A store or spool that cannot be written: one clear line, the storage exit code.

Root ignores file modes, so as root the command runs without CAP_DAC_OVERRIDE (dropped
from its bounding set before exec), which makes 0400 mean read-only for it too.
"""

from __future__ import annotations

import base64
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callhome import exitcodes

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1


def _without_dac_override() -> None:
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
            os._exit(99)  # cannot drop it here: the test is skipped


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_without_dac_override,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode == 99:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE in this environment")
    return result


def freeze(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(0o400)
    folder.chmod(0o500)


def thaw(folder: Path) -> None:
    folder.chmod(0o700)
    for path in folder.iterdir():
        path.chmod(0o600)


def test_a_read_only_store_at_the_centre(tmp_path):
    folder = tmp_path / "centre"
    assert run("receiver", "init", str(folder)).returncode == 0
    (folder / "centre.key").chmod(0o600)
    freeze(folder)
    try:
        result = run(
            "receiver",
            "-c",
            str(folder / "centre.toml"),
            "enroll",
            "plant-a",
            "--pubkey",
            base64.b64encode(os.urandom(32)).decode(),
        )
    finally:
        thaw(folder)
    assert result.returncode == exitcodes.STORAGE, result
    assert result.stderr.count("\n") == 1 and "read-only" in result.stderr, result.stderr


def test_a_read_only_spool_at_the_client(tmp_path):
    folder = tmp_path / "client"
    key = base64.b64encode(os.urandom(32)).decode()
    assert (
        run(
            "callhome",
            "init",
            str(folder),
            "--name",
            "a",
            "--centre-key",
            key,
            "--number",
            "1",
            "--port",
            "/dev/null",
        ).returncode
        == 0
    )
    assert (
        run(
            "callhome",
            "-c",
            str(folder / "client.toml"),
            "send",
            "--no-call",
            "--severity",
            "info",
            "--component",
            "x",
            "--state",
            "y",
        ).returncode
        == 0
    )
    freeze(folder)
    try:
        result = run(
            "callhome",
            "-c",
            str(folder / "client.toml"),
            "send",
            "--no-call",
            "--severity",
            "error",
            "--component",
            "x",
            "--state",
            "z",
        )
    finally:
        thaw(folder)
    assert result.returncode == exitcodes.STORAGE, result
    assert result.stderr.count("\n") == 1 and "read-only" in result.stderr, result.stderr
    queued = run("callhome", "-c", str(folder / "client.toml"), "queue")
    assert queued.returncode == 0 and "x y" in queued.stdout  # the first is intact
