"""What the driver's operations return: outcomes, responses, reports (plain data)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .callerid import CallerId
from .classify import ResultKind

if TYPE_CHECKING:
    from .call import DataCall
    from .procedures import SettingResult  # annotations only: the state machine stays out


class Outcome(enum.Enum):
    CONNECTED = "connected"
    BUSY = "busy"
    NO_DIALTONE = "no dial tone"
    NO_ANSWER = "no answer"
    NO_CARRIER = "no carrier"
    DELAYED = "delayed"
    BLACKLISTED = "blacklisted"
    ERROR = "error"
    TIMEOUT = "timeout"
    ABORTED = "aborted"

    @property
    def retry_now(self) -> bool:
        """False for outcomes where dialling again at once is wrong (or illegal)."""
        return self not in (Outcome.DELAYED, Outcome.BLACKLISTED)

    @classmethod
    def of(cls, kind: ResultKind) -> Outcome:
        return _OUTCOME_OF.get(kind, cls.ERROR)


_OUTCOME_OF = {
    ResultKind.BUSY: Outcome.BUSY,
    ResultKind.NO_DIALTONE: Outcome.NO_DIALTONE,
    ResultKind.NO_ANSWER: Outcome.NO_ANSWER,
    ResultKind.NO_CARRIER: Outcome.NO_CARRIER,
    ResultKind.DELAYED: Outcome.DELAYED,
    ResultKind.BLACKLISTED: Outcome.BLACKLISTED,
    ResultKind.ERROR: Outcome.ERROR,
}


@dataclass(frozen=True)
class CommandResponse:
    command: bytes
    result: ResultKind
    text: bytes
    info: tuple[bytes, ...]
    raw: bytes = b""
    """The result line as the modem sent it (`3` for a numeric NO CARRIER)."""

    @property
    def ok(self) -> bool:
        return self.result is ResultKind.OK


@dataclass(frozen=True)
class CallOutcome:
    outcome: Outcome
    call: DataCall | None = None
    result_line: bytes | None = None
    progress: tuple[bytes, ...] = ()
    seconds: float = 0.0

    @property
    def connected(self) -> bool:
        return self.outcome is Outcome.CONNECTED


@dataclass(frozen=True)
class IncomingCall:
    rings: int
    caller_id: CallerId | None
    distinctive: bytes | None = None


@dataclass(frozen=True)
class HangupReport:
    method: str
    """remote (the far end hung up), ringing (a new call rings in: on hook already),
    dtr, escape, ath, atz or reopen: the first rung of the ladder that worked."""
    seconds: float


@dataclass(frozen=True)
class ModemInfo:
    profile: str
    identity: dict[int, tuple[bytes, ...]]
    port: dict[str, Any]
    dcd_trusted: bool
    settings: tuple[SettingResult, ...] = ()

    @property
    def refused(self) -> tuple[SettingResult, ...]:
        return tuple(result for result in self.settings if not result.accepted)
