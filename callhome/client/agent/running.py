"""Running one collector once, bounded. The real runner (`collectors/runner.py`, with
process isolation) is used when present; this fallback only bounds the time and turns a
hang, a crash or garbage into UNKNOWN, never OK."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import structlog

from .collectors.base import Collector, Reading, State

log = structlog.get_logger("callhome.agent")


async def collect(collector: Collector, deadline: float, *, name: str) -> list[Reading]:
    runner = real_runner()
    if runner is None:
        return await bounded(collector, deadline, name=name)
    readings: list[Reading] = await runner.run_collector(collector, deadline, name=name)
    return readings


def real_runner() -> Any:
    """The collectors' runner module, or None when this build lacks it."""
    name = f"{__package__}.collectors.runner"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


async def bounded(collector: Collector, deadline: float, *, name: str) -> list[Reading]:
    try:
        readings = await asyncio.wait_for(collector.collect(), deadline)
    except TimeoutError:
        return [Reading(name, State.UNKNOWN, f"collector did not answer within {deadline:g} s")]
    except Exception as exc:  # a collector's bug must not stop the agent
        log.warning("collector.failed", check=name, error=type(exc).__name__)
        return [Reading(name, State.UNKNOWN, f"collector failed: {type(exc).__name__}")]
    if not isinstance(readings, list) or not all(isinstance(r, Reading) for r in readings):
        return [Reading(name, State.UNKNOWN, "collector returned something else than readings")]
    return readings
