"""The Hayes/V.250 modem driver.

Three sans-IO layers (`framer` bytes -> lines, `classify` line -> meaning, `state` the
call and command state machine) under `HayesModem`, the asyncio shell that opens a
modem by pyserial URL, and `DataCall`, the byte stream of a connected call.
"""

from .callerid import CallerId
from .classify import ResultKind
from .connect import ConnectRecord
from .errors import (
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
from .modem import (
    CallEnded,
    CallOutcome,
    CommandResponse,
    DataCall,
    HangupReport,
    HayesModem,
    IncomingCall,
    ModemInfo,
    Outcome,
    Timings,
    dial_string,
)
from .profiles import DRIVER_PROFILES, DriverProfile
from .state import CoreTimings, ModemCore, State

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
    "State",
    "Timings",
    "dial_string",
]
