"""A collector that says what it is told: for the demo and the tests.

Driven by a script file, by a control socket, or both. A script line is

    AT  CHECK  WHAT  [TEXT...]

`AT` is a duration since the collector started ("0s", "90s", "2h"), in the agent's
(possibly scaled) time; `WHAT` is OK, WARNING, CRITICAL or UNKNOWN (the collector's
verdict), a number (a value for the thresholds to judge), or `cycle:A,B,...` (values or
states taken in turn, one per collection: a flapping fan). Two pseudo-checks change the
collector itself: `hang on|off` (collect never returns: the runner's deadline must catch
it) and `crash on|off` (collect raises). `#` starts a comment.

A control socket (a Unix stream socket at `control`) takes the same lines without `AT`,
applied at once, and answers "ok" or an error line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from modem_drivers.configfile import Table, parse_duration

from .base import Collector, Reading, State
from .runner import register


class ScriptError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    at: float
    check: str
    what: str
    text: str


def parse_line(line: str, *, timed: bool) -> Step | None:
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    parts = line.split(None, 3 if timed else 2)
    if len(parts) < (3 if timed else 2):
        raise ScriptError(f"expected {'AT ' if timed else ''}CHECK WHAT [TEXT], got {line!r}")
    at = parse_duration(parts.pop(0)) if timed else 0.0
    check, what = parts[0], parts[1]
    text = parts[2] if len(parts) > 2 else ""
    if check in ("hang", "crash"):
        if what not in ("on", "off"):
            raise ScriptError(f"{check} takes on or off, not {what!r}")
    else:
        for item in what.removeprefix("cycle:").split(","):
            _reading_of(check, item, text)  # refuse a bad line now, not at its time
    return Step(at, check, what, text)


def parse_script(text: str) -> list[Step]:
    steps = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            step = parse_line(line, timed=True)
        except ValueError as exc:
            raise ScriptError(f"line {number}: {exc}") from None
        if step is not None:
            steps.append(step)
    return sorted(steps, key=lambda s: s.at)


def _reading_of(check: str, what: str, text: str) -> Reading:
    if what.upper() in State.__members__:
        state = State[what.upper()]
        return Reading(check, state, text or state.name)
    try:
        value = float(what)
    except ValueError:
        raise ScriptError(f"{what!r} is neither a state nor a number") from None
    return Reading(check, None, text or what, value)


class SimulatedCollector:
    kind: ClassVar[str] = "simulated"

    def __init__(
        self,
        steps: list[Step] | None = None,
        *,
        control: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
    ) -> None:
        self.steps = list(steps or [])
        self.control = control
        self.clock = clock
        self.time_scale = time_scale
        self.started: float | None = None
        self.applied = 0
        self.current: dict[str, Reading] = {}
        self.cycles: dict[str, Iterator[Reading]] = {}
        self.hang = False
        self.crash = False
        self._server: asyncio.AbstractServer | None = None

    @classmethod
    def from_table(cls, table: Table, *, time_scale: float = 1.0) -> SimulatedCollector:
        steps: list[Step] = []
        script = table.get("script", str)
        if script is not None:
            path = table.path_value("script")
            try:
                steps = parse_script(path.read_text())
            except OSError as exc:
                raise table.error("script", f"cannot read {path}: {exc.strerror}") from None
            except ScriptError as exc:
                raise table.error("script", f"{path}: {exc}") from None
        control = table.path_value("control") if table.get("control", str) else None
        return cls(steps, control=control, time_scale=time_scale)

    def apply(self, step: Step) -> None:
        if step.check == "hang":
            self.hang = step.what == "on"
        elif step.check == "crash":
            self.crash = step.what == "on"
        elif step.what.startswith("cycle:"):
            items = [_reading_of(step.check, w, step.text) for w in step.what[6:].split(",")]
            self.cycles[step.check] = itertools.cycle(items)
            self.current.pop(step.check, None)
        else:
            self.cycles.pop(step.check, None)
            self.current[step.check] = _reading_of(step.check, step.what, step.text)

    async def collect(self) -> list[Reading]:
        if self.control is not None and self._server is None:
            await self._listen(self.control)
        now = self.clock()
        if self.started is None:
            self.started = now
        elapsed = (now - self.started) / self.time_scale
        while self.applied < len(self.steps) and self.steps[self.applied].at <= elapsed:
            self.apply(self.steps[self.applied])
            self.applied += 1
        if self.crash:
            raise RuntimeError("simulated crash")
        if self.hang:
            await asyncio.Event().wait()  # for ever: the runner's deadline ends it
        readings = dict(self.current)
        for check, cycle in self.cycles.items():
            readings[check] = next(cycle)
        return [readings[check] for check in sorted(readings)]

    async def _listen(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    step = parse_line(line.decode("utf-8", "replace"), timed=False)
                    if step is not None:
                        self.apply(step)
                    writer.write(b"ok\n")
                except ValueError as exc:
                    writer.write(f"error: {exc}\n".encode())
                await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


@register("simulated")
def _from_table(table: Table) -> Collector:
    return SimulatedCollector.from_table(table)
