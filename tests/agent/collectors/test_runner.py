"""The runner: deadlines, isolation, garbage, and no process left behind."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.client.agent.collectors import runner
from callhome.client.agent.collectors.base import Reading, State
from callhome.client.agent.collectors.runner import (
    CommandNotFound,
    build_collector,
    run_blocking,
    run_collector,
    run_command,
)
from modem_drivers.configfile import ConfigError, Table


class Fixed:
    kind: ClassVar[str] = "fixed"

    def __init__(self, result: Any) -> None:
        self.result = result

    async def collect(self) -> Any:
        return self.result


class Hangs:
    kind: ClassVar[str] = "hangs"

    async def collect(self) -> list[Reading]:
        await asyncio.Event().wait()
        return []


class Stubborn:
    """Swallows the cancellation and goes on (a badly written collector)."""

    kind: ClassVar[str] = "stubborn"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def collect(self) -> list[Reading]:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue
        return []


class Raises:
    kind: ClassVar[str] = "raises"

    async def collect(self) -> list[Reading]:
        raise RuntimeError("disk on fire\nsecond line")


def states(readings: list[Reading]) -> dict[str, State | None]:
    return {r.check: r.state for r in readings}


async def test_good_readings_pass_and_the_collector_check_is_ok() -> None:
    good = [Reading("md/md0", State.OK, "clean"), Reading("fs//", None, "12 %", 12.0, "%")]
    out = await run_collector(Fixed(good), 1.0, name="md")
    assert out[:2] == good
    assert out[2].check == "collector/md" and out[2].state is State.OK


async def test_an_empty_list_is_fine_absent_tool_is_not_unknown() -> None:
    out = await run_collector(Fixed([]), 1.0, name="ipmi")
    assert states(out) == {"collector/ipmi": State.OK}


async def test_a_hang_is_unknown_for_the_collector_and_its_previous_checks() -> None:
    out = await run_collector(Hangs(), 0.05, name="nfs", checks=["fs//mnt", "fs//home"])
    assert states(out) == {
        "collector/nfs": State.UNKNOWN,
        "fs//home": State.UNKNOWN,
        "fs//mnt": State.UNKNOWN,
    }
    assert "no answer within 0.05 s" in out[0].text


async def test_a_collector_that_ignores_cancellation_is_abandoned() -> None:
    stubborn = Stubborn()
    out = await run_collector(stubborn, 0.02, name="bad")
    assert states(out) == {"collector/bad": State.UNKNOWN}
    assert runner._abandoned
    stubborn.release.set()
    for _ in range(100):
        if not runner._abandoned:
            break
        await asyncio.sleep(0.001)
    assert not runner._abandoned


async def test_an_exception_is_unknown_with_its_first_line() -> None:
    out = await run_collector(Raises(), 1.0, name="x", checks=["x/1"])
    assert states(out) == {"collector/x": State.UNKNOWN, "x/1": State.UNKNOWN}
    assert out[0].text == "failed: RuntimeError: disk on fire"


class NotAsync:
    kind: ClassVar[str] = "not-async"

    def collect(self) -> list[Reading]:
        return [Reading("a", State.OK, "")]


class RaisesAtOnce:
    kind: ClassVar[str] = "raises-at-once"

    def collect(self) -> Any:
        raise OSError("no such file")


@pytest.mark.parametrize("collector", [NotAsync(), RaisesAtOnce()])
async def test_a_collect_that_is_not_a_coroutine_is_unknown(collector: Any) -> None:
    out = await run_collector(collector, 1.0, name="x", checks=["a"])
    assert states(out) == {"collector/x": State.UNKNOWN, "a": State.UNKNOWN}


@pytest.mark.parametrize(
    "garbage", [None, "OK", 42, {"md/md0": "OK"}, (Reading("a", State.OK, ""),)]
)
async def test_not_a_list_is_unknown(garbage: Any) -> None:
    out = await run_collector(Fixed(garbage), 1.0, name="g", checks=["a"])
    assert states(out) == {"collector/g": State.UNKNOWN, "a": State.UNKNOWN}


async def test_bad_items_are_refused_and_bad_fields_become_unknown() -> None:
    items = [
        "OK",
        Reading("", State.OK, "no name"),
        Reading("a", State.OK, "fine"),
        Reading("a", State.CRITICAL, "twice"),
        Reading("nan", State.OK, "", math.nan),
        Reading("nothing", None, "no verdict, no value"),
        Reading("state", 7, "not a state"),  # type: ignore[arg-type]
        Reading("collector/g", State.OK, "impersonates the runner"),
        Reading("long", State.WARNING, "x" * 10_000),
    ]
    out = await run_collector(Fixed(items), 1.0, name="g")
    got = states(out)
    assert got == {
        "a": State.OK,
        "nan": State.UNKNOWN,
        "nothing": State.UNKNOWN,
        "state": State.UNKNOWN,
        "long": State.WARNING,
        "collector/g": State.UNKNOWN,
    }
    assert len(next(r for r in out if r.check == "long").text) == runner.MAX_TEXT


async def test_only_garbage_is_unknown_for_previous_checks() -> None:
    out = await run_collector(Fixed([1, 2]), 1.0, name="g", checks=["a"])
    assert states(out) == {"collector/g": State.UNKNOWN, "a": State.UNKNOWN}


async def test_collectors_run_concurrently_a_hang_blocks_nobody() -> None:
    ok = Fixed([Reading("a", State.OK, "")])
    results = await asyncio.gather(
        run_collector(Hangs(), 0.2, name="h"),
        run_collector(ok, 0.2, name="ok"),
    )
    assert results[1][0].state is State.OK


async def test_cancelling_the_runner_cancels_the_collector() -> None:
    hang = Hangs()
    task = asyncio.ensure_future(run_collector(hang, 10.0, name="h"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("deadline", [0.0, -1.0, math.inf, math.nan])
async def test_a_bad_deadline_is_refused(deadline: float) -> None:
    with pytest.raises(ValueError):
        await run_collector(Fixed([]), deadline, name="x")


# --- commands ---------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed orphan may wait a moment for
    init to reap it; it is dead all the same)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    for _ in range(200):
        if not _alive(pid):
            return True
        time.sleep(0.01)
    return False


async def _pid_from(path: Path) -> int:
    for _ in range(500):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        await asyncio.sleep(0.01)
    raise AssertionError("the child never wrote its pid")


async def test_run_command_output_and_exit_code() -> None:
    result = await run_command(["sh", "-c", "echo hello; echo oops >&2; exit 3"], 5.0)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"hello\n", b"oops\n")
    assert not result.timed_out and not result.truncated


async def test_a_timeout_kills_the_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 & echo $! > {pidfile}; wait"
    result = await run_command(["sh", "-c", script], 0.3)
    assert result.timed_out and result.returncode is None
    assert _wait_gone(int(pidfile.read_text()))


async def test_a_child_left_behind_after_exit_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 >/dev/null 2>&1 & echo $! > {pidfile}; exit 0"
    result = await run_command(["sh", "-c", script], 5.0)
    assert result.returncode == 0 and not result.timed_out
    assert _wait_gone(int(pidfile.read_text()))


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 1000 & echo $! > {pidfile}; wait"
    task = asyncio.ensure_future(run_command(["sh", "-c", script], 100.0))
    pid = await _pid_from(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _wait_gone(pid)


async def test_a_hung_collector_running_a_command_leaves_nothing(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    class Slow:
        kind: ClassVar[str] = "slow"

        async def collect(self) -> list[Reading]:
            await run_command(["sh", "-c", f"sleep 1000 & echo $! > {pidfile}; wait"], 100.0)
            return []

    out = await run_collector(Slow(), 0.3, name="slow")
    assert out[0].state is State.UNKNOWN
    assert _wait_gone(int(pidfile.read_text()))


async def test_huge_output_is_bounded_and_the_exit_code_kept() -> None:
    code = "import sys; sys.stdout.write('x' * 3_000_000); sys.exit(1)"
    result = await run_command([sys.executable, "-c", code], 20.0, max_output=1000)
    assert result.truncated and len(result.stdout) == 1000 and result.returncode == 1


async def test_a_missing_program_is_command_not_found(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound):
        await run_command([str(tmp_path / "nope")], 1.0)


# --- blocking calls -------------------------------------------------------------------


async def test_run_blocking_returns_and_raises() -> None:
    assert await run_blocking(lambda: 41 + 1, 5.0) == 42
    with pytest.raises(ZeroDivisionError):
        await run_blocking(lambda: 1 // 0, 5.0)


async def test_run_blocking_abandons_a_hung_call() -> None:
    import threading

    gate = threading.Event()
    with pytest.raises(TimeoutError):
        await run_blocking(gate.wait, 0.05)
    gate.set()  # the abandoned thread ends; nothing waits for it


# --- building from the config ---------------------------------------------------------


def test_unknown_kind_is_a_config_error_naming_file_and_key() -> None:
    table = Table({"kind": "nope"}, "check[0]", "/etc/callhome/client.toml")
    with pytest.raises(
        ConfigError, match=r"^/etc/callhome/client.toml: check\[0\].kind: unknown kind 'nope'"
    ):
        build_collector(table)


def test_missing_kind() -> None:
    with pytest.raises(ConfigError, match=r"check\[1\].kind: missing"):
        build_collector(Table({}, "check[1]", "c.toml"))


def test_registered_kind_builds_and_unknown_keys_are_refused() -> None:
    @runner.register("test-fixed")
    def make(table: Table) -> Fixed:
        return Fixed(table.get("value", int, 0))

    try:
        built = build_collector(Table({"kind": "test-fixed", "value": 3}, "check[0]", "c.toml"))
        assert isinstance(built, Fixed) and built.result == 3
        table = Table({"kind": "test-fixed", "valeu": 3}, "check[0]", "c.toml")
        with pytest.raises(ConfigError, match=r"c.toml: check\[0\].valeu: unknown key"):
            build_collector(table)
        # the caller's own keys, read first from the same table, are not refused
        table = Table({"kind": "test-fixed", "name": "x"}, "check[0]", "c.toml")
        table.get("name", str)
        build_collector(table)
        # without finish, the caller refuses the leftovers itself
        build_collector(Table({"kind": "test-fixed", "x": 1}, "c", "c.toml"), finish=False)
    finally:
        del runner.REGISTRY["test-fixed"]


def test_registering_a_kind_twice_is_refused() -> None:
    runner.register("test-twice")(Fixed)
    try:
        with pytest.raises(ValueError):
            runner.register("test-twice")(lambda table: Fixed(None))
    finally:
        del runner.REGISTRY["test-twice"]


_garbage_items = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.builds(
        Reading,
        check=st.one_of(st.text(max_size=8), st.integers()),
        state=st.one_of(st.sampled_from(list(State)), st.none(), st.integers(-1, 5)),
        text=st.one_of(st.text(max_size=8), st.none()),
        value=st.one_of(st.none(), st.floats(), st.booleans(), st.text(max_size=3)),
        unit=st.one_of(st.none(), st.text(max_size=3), st.integers()),
    ),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_garbage_items, max_size=6))
def test_garbage_never_becomes_ok(items: list[Any]) -> None:
    """Whatever a collector returns, each reading out is well formed, and OK only
    where the collector itself gave that very reading as OK."""
    out = asyncio.run(run_collector(Fixed(items), 1.0, name="g", checks=["prev"]))
    given_ok = {
        (i.check, i.text)
        for i in items
        if isinstance(i, Reading) and i.state is State.OK and isinstance(i.check, str)
    }
    for reading in out:
        assert isinstance(reading.check, str) and reading.check
        assert isinstance(reading.state, State) or (
            reading.state is None and isinstance(reading.value, float | int)
        )
        assert isinstance(reading.text, str)
        if reading.state is State.OK and reading.check != "collector/g":
            assert (reading.check, reading.text) in given_ok
    own = [r for r in out if r.check == "collector/g"]
    assert len(own) == 1
    checks = [r.check for r in out]
    assert len(checks) == len(set(checks))


def _pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8, 13])
async def test_cancelled_while_starting_leaves_nothing(yields: int) -> None:
    marker = f"1000.{os.getpid()}{yields}"
    task = asyncio.ensure_future(run_command(["sh", "-c", f"sleep {marker} & wait"], 100.0))
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10.0)
    for _ in range(300):
        if not _pids_with(marker):
            break
        await asyncio.sleep(0.01)
    assert _pids_with(marker) == []


async def test_a_process_that_left_the_group_cannot_hang_us() -> None:
    """setsid takes a grandchild out of reach of killpg, and it keeps stdout open:
    run_command still returns at its deadline (the escapee is the one thing it cannot
    kill; docs/agent-collectors.md says so)."""
    marker = f"1000.{os.getpid()}99"
    try:
        result = await asyncio.wait_for(
            run_command(["sh", "-c", f"setsid sleep {marker} & wait"], 0.3), 10.0
        )
        assert result.timed_out
    finally:
        for pid in _pids_with(marker):
            os.kill(pid, 9)


async def _storm(count: int, seed: int) -> None:
    """Many commands at once, each cancelled or timed out at a random moment (while
    starting, while running): every one ends, and nothing is left behind."""
    import random

    rng = random.Random(seed)
    marker = f"1000.{os.getpid()}{seed}"
    tasks = []
    for index in range(count):
        script = f"sleep {marker} & sleep {marker} & wait"
        timeout = rng.choice([0.05, 0.2, 100.0])  # 100 s: ended by its cancellation
        task = asyncio.ensure_future(run_command(["sh", "-c", script], timeout))
        tasks.append((task, timeout))
        if index % 3 == 0:
            await asyncio.sleep(0)
    for task, timeout in tasks:
        if timeout > 1 or rng.random() < 0.5:
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            task.cancel()
    _done, pending = await asyncio.wait([t for t, _ in tasks], timeout=60.0)
    assert not pending
    for _ in range(300):
        if not _pids_with(marker):
            break
        await asyncio.sleep(0.02)
    assert _pids_with(marker) == []


async def test_a_storm_of_cancellations_leaves_nothing() -> None:
    await _storm(12, seed=1)


@pytest.mark.slow
async def test_a_long_storm_of_cancellations_leaves_nothing() -> None:
    for seed in range(2, 12):
        await _storm(40, seed=seed)
