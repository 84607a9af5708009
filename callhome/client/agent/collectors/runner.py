"""Running collectors: each bounded by a deadline, isolated from the others and from the
agent, and never leaving a process behind.

`run_collector` is the only way the agent runs a collector. Whatever the collector does
(hang, raise, ignore cancellation, return garbage), the agent gets a list of well-formed
readings back within the deadline (plus a short grace), and anything the collector could
not vouch for is UNKNOWN, never OK.

`run_command` is the only way a collector runs a program: the child gets its own session
(so its own process group), and the whole group is killed when the deadline passes, when
the caller is cancelled, and after the child exits (a plugin that forks a daemon and
exits must not leave it behind).

`build_collector` turns one `[[check]]` table into a collector through the registry of
kinds; each kind reads and validates its own keys with `Table`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import os
import signal
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from modem_drivers.configfile import REQUIRED, ConfigError, Table

from .base import Collector, Reading, State

log = structlog.get_logger("callhome.agent.collectors")

CANCEL_GRACE = 0.5
"""How long a timed-out collector gets to unwind after it is cancelled; one that ignores
the cancellation is abandoned (its task keeps a reference so it is not collected)."""

MAX_TEXT = 500
"""A reading's text is cut to this many characters: it goes on a narrow-band wire."""

MAX_OUTPUT = 256 * 1024
"""Bytes of a command's stdout (and of its stderr) that are kept; the rest is read and
thrown away so that the child never blocks on a full pipe."""

_abandoned: set[asyncio.Future[Any]] = set()


def collector_check(name: str) -> str:
    """The check that says whether collector `name` itself ran."""
    return f"collector/{name}"


async def run_collector(
    collector: Collector,
    deadline: float,
    *,
    name: str,
    checks: Collection[str] = (),
) -> list[Reading]:
    """One collection of `collector`, bounded by `deadline` seconds.

    On success: the collector's readings (cleaned, see `clean_readings`) and
    `collector/<name>` OK. On a hang, an exception or output that is not a list of
    readings: `collector/<name>` UNKNOWN saying why, and UNKNOWN for every check in
    `checks` (the checks the collector reported last time, so that each of them says
    UNKNOWN instead of keeping a stale OK).

    `collector/<name>` is reported OK on success so that its UNKNOWN has a recovery.
    """
    if not (deadline > 0 and math.isfinite(deadline)):
        raise ValueError(f"deadline must be a positive number of seconds, not {deadline!r}")
    own = collector_check(name)
    try:
        task = asyncio.ensure_future(collector.collect())
    except Exception as error:  # collect() raised at once, or is not a coroutine
        return _failed(own, checks, f"failed: {_describe(error)}")
    try:
        done, _ = await asyncio.wait({task}, timeout=deadline)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        # A collector may swallow the cancellation; it gets a grace, then is abandoned.
        finished, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE)
        if not finished:
            _abandoned.add(task)
            task.add_done_callback(_forget)
            log.warning("collector ignores cancellation, abandoned", collector=name)
        else:
            _consume(task)
        return _failed(own, checks, f"no answer within {deadline:g} s")
    exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
    if exc is not None:
        log.info("collector failed", collector=name, error=type(exc).__name__)
        return _failed(own, checks, f"failed: {_describe(exc)}")
    result = task.result()
    if not isinstance(result, list):
        return _failed(own, checks, f"returned {type(result).__name__}, not a list of readings")
    readings, problems = clean_readings(result, reserved=own)
    if problems and not readings:
        return _failed(own, checks, problems[0])
    if problems:
        own_reading = Reading(own, State.UNKNOWN, _cut("; ".join(problems)))
    else:
        own_reading = Reading(own, State.OK, f"{len(readings)} readings")
    return [*readings, own_reading]


def _forget(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    _consume(task)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "never retrieved"


def _failed(own: str, checks: Collection[str], why: str) -> list[Reading]:
    why = _cut(why)
    out = [Reading(own, State.UNKNOWN, why)]
    out.extend(
        Reading(check, State.UNKNOWN, f"collector: {why}")
        for check in sorted(set(checks))
        if check != own
    )
    return out


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def clean_readings(
    items: Sequence[object], *, reserved: str = ""
) -> tuple[list[Reading], list[str]]:
    """The well-formed readings among `items`, and why the others were refused.

    A reading with a usable check name but a bad field becomes UNKNOWN for that check
    (a collector that says OK with a NaN value has not checked anything). Duplicate
    check names keep the first reading. Texts are cut to `MAX_TEXT`.
    """
    out: list[Reading] = []
    problems: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Reading):
            problems.append(f"not a reading: {type(item).__name__}")
            continue
        check = item.check
        if not isinstance(check, str) or not check or check == reserved or len(check) > 200:
            problems.append(f"bad check name: {check!r:.60}")
            continue
        if check in seen:
            problems.append(f"{check}: reported twice")
            continue
        seen.add(check)
        bad = _bad_field(item)
        if bad:
            problems.append(f"{check}: {bad}")
            out.append(Reading(check, State.UNKNOWN, f"collector gave a bad reading: {bad}"))
            continue
        text = _cut(item.text)
        out.append(item if text == item.text else _replace_text(item, text))
    return out, problems


def _replace_text(item: Reading, text: str) -> Reading:
    return Reading(item.check, item.state, text, item.value, item.unit, item.attributes)


def _bad_field(item: Reading) -> str | None:
    if item.state is not None and not isinstance(item.state, State):
        return f"state {item.state!r:.40}"
    if not isinstance(item.text, str):
        return "text is not a string"
    value = item.value
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        return f"value {value!r:.40}"
    if item.state is None and value is None:
        return "neither a state nor a value"
    if item.unit is not None and not isinstance(item.unit, str):
        return "unit is not a string"
    attributes: Any = item.attributes
    if not hasattr(attributes, "items") or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        return "attributes are not strings"
    return None


# --- commands ----------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    """What a command did. `returncode` is None when it was killed at the deadline."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False
    """More than `MAX_OUTPUT` bytes were written to stdout or stderr (the rest is lost)."""

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class CommandNotFound(Exception):
    """The program does not exist (or is not executable): the tool is not installed."""


async def run_command(
    argv: Sequence[str],
    timeout: float,
    *,
    max_output: int = MAX_OUTPUT,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run `argv` (no shell) with stdin from /dev/null, for at most `timeout` seconds.

    The child leads a new session, so its whole process group (its children and
    grandchildren that did not leave it) is killed with SIGKILL at the deadline, when
    the caller is cancelled, and after the child has exited (stragglers it left). A
    program that does not exist raises `CommandNotFound`.
    """
    argv = tuple(argv)
    if not argv:
        raise ValueError("empty command")
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
    )
    try:
        proc = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        # Cancelled while the pipes were being connected: the child (and whatever it
        # started) may be running already. asyncio's own clean-up would kill the child
        # alone and then wait for pipes its children still hold: forever.
        with contextlib.suppress(Exception):
            started = await spawn
            _kill_group(started.pid)
            await asyncio.shield(_close(started))
        raise
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise CommandNotFound(f"{argv[0]}: {exc.strerror or exc}") from None
    assert proc.stdout is not None and proc.stderr is not None
    out = _Bounded(max_output)
    err = _Bounded(max_output)
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr))
                await proc.wait()
        except TimeoutError:
            timed_out = True
    finally:
        # Always, also on cancellation: the group may outlive its leader.
        _kill_group(proc.pid)
        # Shielded so that a second cancellation does not leave a zombie behind.
        await asyncio.shield(_close(proc))
    return CommandResult(
        argv=argv,
        returncode=None if timed_out else proc.returncode,
        stdout=out.data(),
        stderr=err.data(),
        timed_out=timed_out,
        truncated=out.overflow or err.overflow,
    )


async def _close(proc: asyncio.subprocess.Process) -> None:
    """Close our ends of the pipes (SIGKILL for the child if it still runs), then reap
    it. Waiting without closing would wait for every holder of the pipes, and a
    process that left the group (setsid) may hold them for ever."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()
    elif proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


def _kill_group(pgid: int) -> None:
    # The child made its own session, so its process group id is its pid; that id is
    # not reused while any member of the group is alive.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Bounded:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = self.limit - self.size
            if len(chunk) > room:
                self.overflow = True
                chunk = chunk[: max(room, 0)]
            if chunk:
                self.chunks.append(chunk)
                self.size += len(chunk)

    def data(self) -> bytes:
        return b"".join(self.chunks)


# --- blocking calls ----------------------------------------------------------------

T = TypeVar("T")


async def run_blocking(function: Callable[[], T], timeout: float) -> T:
    """`function()` in a daemon thread of its own, waited for at most `timeout` seconds.

    For a system call that may hang in the kernel (statfs on a dead NFS server): such a
    thread cannot be killed, so on timeout it is abandoned, not joined (a thread of the
    shared executor would be lost to every later call). Raises TimeoutError.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result: Any = function()
        except BaseException as exc:  # handed over to the waiting coroutine
            ok, result = False, exc
        else:
            ok = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=work, name="collector-blocking", daemon=True).start()
    async with asyncio.timeout(timeout):
        return await future


# --- building collectors from the config -------------------------------------------

CollectorFactory = Callable[[Table], Collector]

REGISTRY: dict[str, CollectorFactory] = {}
"""Every kind of collector, by the `kind = "..."` of its `[[check]]` table."""

BUILTIN = (
    "mdraid",
    "smart",
    "hwmon",
    "ipmi",
    "filesystems",
    "systemd",
    "plugin",
    "simulated",
)
"""The modules of this package that register kinds (imported on first use)."""

F = TypeVar("F", bound=CollectorFactory)


def register(kind: str) -> Callable[[F], F]:
    """Register a factory (usually a collector's `from_table` classmethod) for `kind`."""

    def decorate(factory: F) -> F:
        if kind in REGISTRY and REGISTRY[kind] is not factory:
            raise ValueError(f"collector kind {kind!r} registered twice")
        REGISTRY[kind] = factory
        return factory

    return decorate


def _load_builtin() -> None:
    for module in BUILTIN:
        full = f"{__package__}.{module}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:  # a real missing dependency, not a kind not built yet
                raise


def kinds() -> list[str]:
    _load_builtin()
    return sorted(REGISTRY)


def build_collector(table: Table, *, finish: bool = True) -> Collector:
    """The collector of one `[[check]]` table: `kind` picks it, the kind reads its own
    keys. With `finish`, any key left unread is refused (a typo), so the caller reads
    the keys it owns (name, thresholds, intervals) from the same `Table` first."""
    _load_builtin()
    kind = table.get("kind", str, REQUIRED)
    factory = REGISTRY.get(kind)
    if factory is None:
        raise table.error("kind", f"unknown kind {kind!r} (one of: {', '.join(sorted(REGISTRY))})")
    collector = factory(table)
    if finish:
        table.finish()
    return collector


__all__ = [
    "BUILTIN",
    "REGISTRY",
    "CommandNotFound",
    "CommandResult",
    "ConfigError",
    "build_collector",
    "clean_readings",
    "collector_check",
    "kinds",
    "register",
    "run_blocking",
    "run_collector",
    "run_command",
]
