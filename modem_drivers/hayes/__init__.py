"""The Hayes/V.250 modem driver.

Sans-IO layers (`framer` bytes -> lines, `classify` line -> meaning, `state` the call
and command state machine, `procedures` the multi-step procedures as step machines)
under `HayesModem`, the asyncio shell that opens a modem by pyserial URL and executes
the procedures, and `DataCall`, the byte stream of a connected call.

The names below are loaded when first used (PEP 562): a command that only needs the
exit-code table or a result type (`callhome-receiver calls`, `callhome queue`) does not
import asyncio, the shell and the state machine with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .call import DataCall
    from .callerid import CallerId
    from .classify import ResultKind
    from .connect import ConnectRecord
    from .dialstring import dial_string
    from .errors import (
        CallEnded,
        CommandRejected,
        HangupFailed,
        InitialisationError,
        ModemBusy,
        ModemError,
        ModemNotResponding,
        ModemStateError,
        ModemTimeout,
        PortGone,
        PortOpenError,
    )
    from .modem import HayesModem
    from .procedures import SettingResult, settings_summary
    from .profiles import DRIVER_PROFILES, DriverProfile, Setting, SetupOptions
    from .results import (
        CallOutcome,
        CommandResponse,
        HangupReport,
        IncomingCall,
        ModemInfo,
        Outcome,
    )
    from .state import CoreTimings, ModemCore, State
    from .timings import Timings

_HOMES = {
    "DataCall": "call",
    "CallerId": "callerid",
    "ResultKind": "classify",
    "ConnectRecord": "connect",
    "dial_string": "dialstring",
    **dict.fromkeys(
        (
            "CallEnded",
            "CommandRejected",
            "HangupFailed",
            "InitialisationError",
            "ModemBusy",
            "ModemError",
            "ModemNotResponding",
            "ModemStateError",
            "ModemTimeout",
            "PortGone",
            "PortOpenError",
        ),
        "errors",
    ),
    "HayesModem": "modem",
    "SettingResult": "procedures",
    "settings_summary": "procedures",
    **dict.fromkeys(("DRIVER_PROFILES", "DriverProfile", "Setting", "SetupOptions"), "profiles"),
    **dict.fromkeys(
        ("CallOutcome", "CommandResponse", "HangupReport", "IncomingCall", "ModemInfo", "Outcome"),
        "results",
    ),
    **dict.fromkeys(("CoreTimings", "ModemCore", "State"), "state"),
    "Timings": "timings",
}

__all__ = [
    "DRIVER_PROFILES",
    "CallEnded",
    "CallOutcome",
    "CallerId",
    "CommandRejected",
    "CommandResponse",
    "ConnectRecord",
    "CoreTimings",
    "DataCall",
    "DriverProfile",
    "HangupFailed",
    "HangupReport",
    "HayesModem",
    "IncomingCall",
    "InitialisationError",
    "ModemBusy",
    "ModemCore",
    "ModemError",
    "ModemInfo",
    "ModemNotResponding",
    "ModemStateError",
    "ModemTimeout",
    "Outcome",
    "PortGone",
    "PortOpenError",
    "ResultKind",
    "Setting",
    "SettingResult",
    "SetupOptions",
    "State",
    "Timings",
    "dial_string",
    "settings_summary",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
