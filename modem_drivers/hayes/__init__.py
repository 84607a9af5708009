"""The Hayes/V.250 modem driver.

Sans-IO layers (`framer` bytes -> lines, `classify` line -> meaning, `state` the call
and command state machine, `procedures` the multi-step procedures as step machines)
under `HayesModem`, the asyncio shell that opens a modem by pyserial URL and executes
the procedures, and `DataCall`, the byte stream of a connected call.
"""

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
