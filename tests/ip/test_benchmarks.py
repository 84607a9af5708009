"""The IP benchmarks still measure what they say: short runs of each against a real
receiver. Their figures are not checked (this machine is shared); that every call
completes and that the flood's attempt rate is the one the receiver saw are."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_ip_throughput_completes_every_call_it_starts() -> None:
    out = _bench(
        "benchmarks.ip_throughput",
        *("--seconds", "1", "--runs", "2", "--workers", "1"),
        *("--concurrency", "4", "--devices", "8", "--tmpfs"),
    )
    runs = re.findall(r"run \d: (\d+) calls in [\d.]+ s = \d+ calls/s, (\d+) failed", out)
    assert len(runs) == 2, out
    for done, failed in runs:
        assert int(done) > 0 and int(failed) == 0, out


def test_ip_flood_counts_the_attempts_the_receiver_refused() -> None:
    # The receiver resets a flooded connection as it accepts it, often before the
    # flooder is back from connect(): those attempts count (they were once dropped,
    # and the benchmark printed half the rate the receiver saw).
    out = _bench(
        "benchmarks.ip_flood",
        *("--rate", "2000", "--seconds", "1", "--runs", "1"),
        *("--flooders", "1", "--devices", "2"),
    )
    run = re.search(r"with (\d+) forged attempts/s \((\d+) in all\)", out)
    assert run, out
    rate, attempts = float(run[1]), int(run[2])
    refused = re.search(r"refused (\{.*?\})", out)
    assert refused, out
    seen = sum(json.loads(refused[1]).values())  # nearly all refused at accept (rate)
    # beside other work the flooder (at nice 19) falls short of the rate asked, and may
    # overrun its second: its count, not its rate, is what the receiver's must match
    assert 0 < rate <= 2100, out
    assert 0.95 * attempts <= seen <= 1.05 * attempts + 5, out  # 1,996 against 1,997
    assert re.search(r"2 acknowledged, 0 failed", out), out
