"""The virtual phone network: V.250 modems, lines, hunt groups and faults, with no hardware.

`PhoneNetwork` is the sans-IO simulation; `NetworkRunner` runs it in real (or scaled)
time and exposes each modem as a pty, a TCP port, an RFC 2217 port or an in-process
port, so drivers reach it through the same pyserial URL they would use for hardware.
"""

from .interpreter import BlacklistRule, CallerId, VirtualModem
from .line import LineModel
from .network import CallRecord, NetworkTiming, PhoneNetwork
from .profiles import PROFILES, ModemProfile, get_profile
from .sim import Scheduler
from .states import ModemStateError, State

__all__ = [
    "PROFILES",
    "BlacklistRule",
    "CallRecord",
    "CallerId",
    "LineModel",
    "ModemProfile",
    "ModemStateError",
    "NetworkTiming",
    "PhoneNetwork",
    "Scheduler",
    "State",
    "VirtualModem",
    "get_profile",
]
