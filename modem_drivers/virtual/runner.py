"""Runs a `PhoneNetwork` in asyncio, in real or scaled time, and exposes its modems.

The runner is the only place where the virtual network meets a clock: network time is
`(loop time - start) / time_scale`, so `time_scale=0.01` runs ring cadences, training
and guard times a hundred times faster, consistently for every modem and line.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ..text import escape_bytes
from .exposure import (
    EXPOSURE_KINDS,
    Exposure,
    InprocExposure,
    PtyExposure,
    Rfc2217Exposure,
    TcpExposure,
)
from .interpreter import VirtualModem
from .network import PhoneNetwork

log = structlog.get_logger("callhome.sim")

__all__ = ["EXPOSURE_KINDS", "NetworkRunner"]


class NetworkRunner:
    """Drives `network` from the event loop.

    `granularity` (network seconds, default the network's `line_tick`): the runner wakes
    for the network's timers on a grid of this step, each wake-up running every timer
    due by then, each at its own network time. The model's times are unchanged; only
    the real moment its output reaches the ports is late by at most one step. With
    hundreds of lines, each departing a chunk every tick at its own phase, a wake-up per
    timer was most of the simulator's CPU; on the grid it is one per tick for all.
    0 wakes for every timer at its own moment.
    """

    def __init__(
        self,
        network: PhoneNetwork,
        *,
        time_scale: float = 1.0,
        granularity: float | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if granularity is not None and granularity < 0:
            raise ValueError("granularity must not be negative")
        self.network = network
        self.time_scale = time_scale
        self.granularity = network.timing.line_tick if granularity is None else granularity
        self.wakeups = 0
        self.exposures: dict[str, Exposure] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._transcript = False
        self.bytes_from_dte = 0
        self.bytes_to_dte = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        # Escaping every byte for the debug transcript is the costliest thing the runner
        # could do; decide once whether anyone will read it.
        self._transcript = log.bind().is_enabled_for(logging.DEBUG)
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time() - self.network.now * self.time_scale
        if self.network.epoch is None:
            self.network.epoch = datetime.now(UTC) - timedelta(seconds=self.network.now)
        self._after()

    async def stop(self) -> None:
        for exposure in list(self.exposures.values()):
            await exposure.close()
        self.exposures.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def __aenter__(self) -> NetworkRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def now(self) -> float:
        assert self._loop is not None, "runner not started"
        return (self._loop.time() - self._t0) / self.time_scale

    def real_seconds(self, network_seconds: float) -> float:
        return network_seconds * self.time_scale

    # -- exposing modems -----------------------------------------------------------------

    async def expose(
        self, name: str, kind: str, *, path: str | None = None, port: int = 0
    ) -> Exposure:
        modem = self.network.modem(name)
        if name in self.exposures:
            raise ValueError(f"modem {name!r} is already exposed")
        exposure: Exposure
        if kind == "pty":
            exposure = PtyExposure(self, modem, path)
        elif kind == "tcp":
            exposure = TcpExposure(self, modem, port)
        elif kind == "rfc2217":
            exposure = Rfc2217Exposure(self, modem, port)
        elif kind == "inproc":
            exposure = InprocExposure(self, modem, path or name)
        else:
            raise ValueError(f"unknown exposure {kind!r} (one of {', '.join(EXPOSURE_KINDS)})")
        await exposure.start()
        self.exposures[name] = exposure
        log.info("port.ready", modem=name, kind=kind, url=exposure.url)
        return exposure

    async def vanish(self, name: str) -> None:
        """The port disappears, as a USB modem does when unplugged."""
        exposure = self.exposures[name]
        log.warning("port.vanished", modem=name, kind=exposure.kind)
        await exposure.close()

    async def reappear(self, name: str) -> None:
        exposure = self.exposures[name]
        await exposure.start()
        log.info("port.reappeared", modem=name, kind=exposure.kind, url=exposure.url)

    # -- events from the DTE side --------------------------------------------------------

    def dte_input(self, exposure: Exposure, data: bytes) -> None:
        self._advance()
        self.bytes_from_dte += len(data)
        if self._transcript:
            log.debug("dte.rx", modem=exposure.modem.name, data=escape_bytes(data, 200))
        exposure.held += data
        self._feed(exposure)
        self._after()

    def set_dtr(self, modem: VirtualModem, level: bool) -> None:
        self._advance()
        modem.set_dtr(level)
        self._after()

    def at(self, network_time: float, action: Callable[[], Any]) -> None:
        """Run `action` at a network time (scripted faults); coroutines are scheduled."""

        def fire() -> None:
            result = action()
            if asyncio.iscoroutine(result):
                self._background(result)

        self.network.scheduler.call_at(network_time, fire)
        if self._loop is not None:
            self._after()

    def poke(self) -> None:
        """Call after changing the network directly (faults, line changes) from outside."""
        self._advance()
        self._after()

    # -- the pump ------------------------------------------------------------------------

    def _advance(self) -> None:
        if self._loop is not None:
            self.network.advance(self.now())

    def _feed(self, exposure: Exposure) -> None:
        modem = exposure.modem
        while exposure.held and modem.accepting():
            taken = modem.receive(bytes(exposure.held))
            if taken == 0:
                break
            del exposure.held[:taken]
        # CTS low: the port stops reading too, so the bytes wait in the DTE's port
        exposure.set_reading(not exposure.held and modem.accepting())

    def _after(self) -> None:
        self._flush()
        self._reschedule()

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            dirty = self.network.dirty
            while dirty:
                modem = dirty.pop()
                exposure = self.exposures.get(modem.name)
                output = modem.take_output()
                if exposure is None:
                    continue
                if output:
                    self.bytes_to_dte += len(output)
                    if self._transcript:
                        log.debug("dte.tx", modem=modem.name, data=escape_bytes(output, 200))
                    exposure.send_to_dte(output)
                exposure.lines_changed()
                self._feed(exposure)  # feeds what is held; reading follows CTS
        finally:
            self._flushing = False

    def _reschedule(self) -> None:
        if self._loop is None:
            return
        deadline = self.network.next_deadline()
        step = self.granularity
        if deadline is not None and step > 0:
            deadline = math.ceil(deadline / step - 1e-9) * step
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            when = self._t0 + deadline * self.time_scale
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.wakeups += 1
        self._timer = None
        self._timer_at = None
        self._advance()
        self._after()

    def apply_fault(
        self,
        kind: str,
        name: str,
        *,
        seconds: float = 0.0,
        count: int = 16,
        data: bytes = b"",
    ) -> None:
        """Inject one of the scriptable faults into a modem, its port or its line now."""
        network = self.network
        modem = network.modem(name)
        log.warning("fault", kind=kind, modem=name, seconds=seconds)
        if kind == "unresponsive":
            modem.unresponsive = True
        elif kind == "responsive":
            modem.unresponsive = False
            modem.reply_delay = 0.0
        elif kind == "reply-delay":
            modem.reply_delay = seconds
        elif kind == "reset":
            modem.power_cycle()
        elif kind == "garbage":
            payload = data or bytes(network.rng.randrange(256) for _ in range(count))
            modem.emit_raw(payload)
        elif kind == "nuls":
            modem.emit_raw(b"\x00" * count)
        elif kind == "cut":
            network.cut(name)
        elif kind == "unplug":
            network.unplug(name)
        elif kind == "plug":
            network.plug(name)
        elif kind == "vanish":
            self._background(self._vanish_for(name, seconds))
        else:
            raise ValueError(f"unknown fault {kind!r}")
        self.poke()

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _vanish_for(self, name: str, seconds: float) -> None:
        await self.vanish(name)
        if seconds > 0:
            await asyncio.sleep(self.real_seconds(seconds))
            await self.reappear(name)

    def describe(self) -> list[dict[str, Any]]:
        return [exposure.describe() for exposure in self.exposures.values()]
