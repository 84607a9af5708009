"""The progress display of `send` and `line-test` (issue 18)."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

from callhome.client import dialer
from callhome.client.progress import CallProgress, status_line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_status_line():
    assert status_line("dialling", 12.4) == "dialling    0:12"
    line = status_line("sending", 70, sent=12_288, total=40_960, rate=2_900, line_rate=33_600)
    assert line.startswith("sending     1:10 [#######.................] 12.0 KiB of 40.0 KiB")
    assert "2.9 of 3.4 kB/s (86%)" in line and line.endswith("0:10 left")
    done = status_line("sending", 9, sent=500, total=500, rate=220, line_rate=2400)
    assert "[" + "#" * 24 + "]" in done and "left" not in done
    assert "0.2 kB/s" in status_line("sending", 9, sent=5, total=500, rate=220)


def test_plain_lines_when_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    progress = CallProgress(out, tty=False, clock=clock)
    progress("dialling", number="5550100", port="/dev/ttyS0", profile="usr")
    clock.now += 20
    progress("connected", connect="CONNECT 2400", rate=2400)
    progress("transfer", messages=1)
    for second in range(12):
        clock.now += 1
        progress("sending", sent=100 * second, total=2000, rate=100.0)
    progress("hanging up")
    progress("waiting")  # a field missing: the step's name, never a traceback
    lines = out.getvalue().splitlines()
    assert lines[0] == "[   0.0 s] dialling 5550100 via /dev/ttyS0 (usr) ... ringing, training"
    assert lines[1] == "[  20.0 s] connected: CONNECT 2400"
    sending = [line for line in lines if "sent " in line]
    assert len(sending) == 3  # at most one every 5 s
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_bar_on_a_terminal_after_a_few_seconds():
    out, clock = io.StringIO(), Clock()
    progress = CallProgress(out, tty=True, clock=clock)
    progress("connected", connect="CONNECT 33600", rate=33600)
    progress.tick()
    assert "\r" not in out.getvalue()  # a short call shows no bar
    clock.now += 5
    progress("sending", sent=1000, total=4000, rate=3000.0)
    assert out.getvalue().endswith("1000 B of 4000 B  3.0 of 3.4 kB/s (89%)  0:01 left")
    progress("hanging up")  # the bar gives way to the step, then comes back
    text = out.getvalue()
    assert "\r\x1b[K[   5.0 s] hanging up\n" in text
    assert text.endswith("hanging up  0:05")
    progress.done()
    assert out.getvalue().endswith("\r\x1b[K")


async def test_the_dialer_reports_bytes_sent(monkeypatch):
    session = SimpleNamespace(stats=SimpleNamespace(bytes_out=200))
    queued = [SimpleNamespace(encoded=lambda: SimpleNamespace(body=b"x" * 1000))]
    seen: list[dict[str, object]] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        session.stats.bytes_out += 300
        await real_sleep(0)

    monkeypatch.setattr(dialer.asyncio, "sleep", sleep)
    task = asyncio.ensure_future(
        dialer._sending(session, queued, lambda step, **f: seen.append({"step": step, **f}))
    )
    while len(seen) < 4:
        await real_sleep(0)
    task.cancel()
    assert [s["sent"] for s in seen[:4]] == [500, 800, 1100, 1200]  # capped at the total
    assert all(s["step"] == "sending" and s["total"] == 1200 for s in seen)
