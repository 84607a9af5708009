"""Running one collector once, bounded (through `collectors/runner.py`), remembering
which checks each collector reported so that a hung collector turns every one of them
UNKNOWN rather than leaving a stale OK."""

from __future__ import annotations

from collections.abc import Collection

from .collectors.base import Collector, Reading
from .collectors.runner import run_collector


async def collect(
    collector: Collector, deadline: float, *, name: str, checks: Collection[str] = ()
) -> list[Reading]:
    return await run_collector(collector, deadline, name=name, checks=checks)
