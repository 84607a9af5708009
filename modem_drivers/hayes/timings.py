"""Every wait of the driver, in one place, so that tests and scaled networks can shrink
them all together."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .state import CoreTimings


@dataclass(frozen=True)
class Timings:
    """Every wait of the driver, in seconds. `scaled()` shrinks them all for tests."""

    command_timeout: float = 3.0
    init_timeout: float = 2.0
    reset_timeout: float = 5.0
    wake_attempts: int = 3
    dial_timeout: float = 90.0
    answer_timeout: float = 60.0
    online_timeout: float = 10.0
    guard: float = 1.0
    """The modem's S12 guard time (S12=50 is one second)."""
    guard_margin: float = 0.1
    """Hayes (00000529): "100 ms is an adequate safety margin" over the guard time."""
    drain_timeout: float = 30.0
    """Longest wait for the modem to take what was written before an escape anyway."""
    setup_reuse: float = 600.0
    """A set-up by this process younger than this is checked with one `AT`, not
    repeated (see `HayesModem.initialize`)."""
    line_time: float = 1.0
    """Seconds of this clock per second of line time: 1 on a real line; `scaled()`
    shrinks it with the rest, as a scaled virtual network runs its lines faster."""
    dtr_drop: float = 0.5
    drain_quiet: float = 0.25
    dcd_poll: float = 0.2
    hangup_step: float = 4.0
    hangup_patience: float = 4.0
    """After the protocol has ended, how long the far end may take to hang up before
    this end does (a caller's escape ladder takes about two guard times)."""
    core: CoreTimings = field(default_factory=CoreTimings)

    def scaled(self, factor: float) -> Timings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, CoreTimings):
                values[f.name] = value.scaled(factor)
            elif isinstance(value, float):
                values[f.name] = value * factor
            else:
                values[f.name] = value
        return Timings(**values)
