"""The modem driver's waits for a line that may run faster than real time.

Kept apart from `callhome.link` (which re-exports it) because an idle agent that only
answers or waits needs these and nothing of the protocol: importing `link` pulls in the
session, the records and pyca/cryptography (about 7 MB of RSS) that only a call uses.
"""

from __future__ import annotations

import dataclasses

from modem_drivers.hayes import Timings


def modem_timings(scale: float = 1.0) -> Timings:
    """The driver's waits for a line running `scale` times real time (a virtual network
    run faster); waits on a local reply keep a real floor, since I/O does not scale."""
    if scale == 1.0:
        return Timings()
    scaled = Timings().scaled(scale)
    return dataclasses.replace(
        scaled,
        command_timeout=max(scaled.command_timeout, 2.0),
        init_timeout=max(scaled.init_timeout, 2.0),
        reset_timeout=max(scaled.reset_timeout, 2.0),
        hangup_step=max(scaled.hangup_step, 2.0),
    )
