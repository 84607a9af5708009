"""One line from the modem -> what it means, given what the driver is waiting for.

Every decision is an exact whole-line match (or an anchored prefix for lines that carry
a value), never a search inside a line: `NAME = BUSY BEE CAFE` is caller ID, not BUSY,
and `CONNECTICUT GAS` is not CONNECT (mgetty learnt this in 2002). What a line means
also depends on the state: NO CARRIER ends a dial but is carrier loss when nothing is
pending; `0` is OK in V0 and information text in V1.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .callerid import is_caller_id_line


class ResultKind(enum.Enum):
    OK = "ok"
    CONNECT = "connect"
    RING = "ring"
    NO_CARRIER = "no-carrier"
    ERROR = "error"
    NO_DIALTONE = "no-dialtone"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    DELAYED = "delayed"
    BLACKLISTED = "blacklisted"


class Expecting(enum.Enum):
    """What the driver is waiting for when a line arrives."""

    NOTHING = "nothing"  # idle or online command mode with no command pending
    COMMAND = "command"  # an ordinary command: OK / ERROR and information text
    CALL_SETUP = "call-setup"  # ATD / ATA / ATO: CONNECT or a failure, progress reports
    HANGUP = "hangup"  # ATH / ATZ: OK or NO CARRIER


VERBOSE_RESULTS: Mapping[bytes, ResultKind] = MappingProxyType(
    {
        b"OK": ResultKind.OK,
        b"CONNECT": ResultKind.CONNECT,
        b"RING": ResultKind.RING,
        b"NO CARRIER": ResultKind.NO_CARRIER,
        b"ERROR": ResultKind.ERROR,
        b"NO DIALTONE": ResultKind.NO_DIALTONE,
        b"NO DIAL TONE": ResultKind.NO_DIALTONE,
        b"BUSY": ResultKind.BUSY,
        b"NO ANSWER": ResultKind.NO_ANSWER,
        b"DELAYED": ResultKind.DELAYED,
        b"BLACKLISTED": ResultKind.BLACKLISTED,
        b"BLACKLIST FULL": ResultKind.BLACKLISTED,
        b"COMMAND NOT SUPPORT": ResultKind.ERROR,
    }
)

BASIC_NUMERIC: Mapping[int, bytes] = MappingProxyType(
    {
        0: b"OK",
        1: b"CONNECT",
        2: b"RING",
        3: b"NO CARRIER",
        4: b"ERROR",
        5: b"CONNECT 1200",
        6: b"NO DIALTONE",
        7: b"BUSY",
        8: b"NO ANSWER",
    }
)

_PROGRESS = re.compile(
    rb"(CARRIER [0-9]|PROTOCOL:|COMPRESSION:|\+MCR:|\+MRR:|\+ER:|\+DR:|AUTOSTREAM"
    rb"|RINGING$|DIALING$|RRING$)"
)
_DISTINCTIVE_RING = re.compile(rb"RING ?([0-9A-Za-z])$|(DRON|DROF)=[0-9]+$")
_CME_ERROR = re.compile(rb"\+CM[ES] ERROR:")


@dataclass(frozen=True)
class Final:
    kind: ResultKind
    text: bytes
    """The verbose text (numeric codes are translated: `10` -> `CONNECT 2400`)."""
    raw: bytes

    @property
    def numeric(self) -> bool:
        """The modem answered with a number: it is in V0, asked for or not."""
        return self.raw.isdigit()

    def describe(self) -> str:
        """What the modem said, for a person: `OK`, `'3' (numeric NO CARRIER)`."""
        raw = self.raw.decode("latin-1")
        if self.numeric:
            meaning = self.text.decode("latin-1") if self.text != self.raw else "unknown code"
            return f"'{raw}' (numeric {meaning})"
        return f"'{raw}'"


@dataclass(frozen=True)
class Progress:
    """A negotiation report before CONNECT (CARRIER, PROTOCOL:, +MCR:, ...)."""

    text: bytes


@dataclass(frozen=True)
class Ring:
    text: bytes
    distinctive: bytes | None = None
    """`1`/`A` of `RING 1`, or the DRON/DROF cadence line."""


@dataclass(frozen=True)
class CallerIdLine:
    text: bytes


@dataclass(frozen=True)
class CarrierLoss:
    text: bytes


@dataclass(frozen=True)
class Info:
    text: bytes


@dataclass(frozen=True)
class Echo:
    text: bytes


@dataclass(frozen=True)
class Stray:
    """A result nobody is waiting for: a late reply, a reset banner, noise."""

    text: bytes
    kind: ResultKind | None = None


Token = Final | Progress | Ring | CallerIdLine | CarrierLoss | Info | Echo | Stray


@dataclass(frozen=True)
class NumericTable:
    """V0 result codes of one modem family: code -> verbose text."""

    codes: Mapping[int, bytes] = field(default_factory=lambda: BASIC_NUMERIC)

    def lookup(self, line: bytes) -> bytes | None:
        """Exact: codes are sent without leading zeros, so `000` (an S-register) is not 0."""
        if not line.isdigit() or len(line) > 3 or (len(line) > 1 and line[:1] == b"0"):
            return None
        return self.codes.get(int(line))

    @classmethod
    def with_extra(cls, extra: Mapping[int, bytes]) -> NumericTable:
        return cls(MappingProxyType({**BASIC_NUMERIC, **extra}))


class VerboseMode(enum.Enum):
    VERBOSE = "V1"
    NUMERIC = "V0"
    UNKNOWN = "unknown"  # before initialisation, or after a reset we did not ask for


@dataclass
class Context:
    expecting: Expecting = Expecting.NOTHING
    command: bytes | None = None
    """The command line being executed, without CR (for echo detection)."""
    echo_seen: bool = False
    expects_info: bool = True
    """The pending command may answer with information text (ATI, S7?, +GMI). When it
    may not (a setting), a bare number is its result code even if the modem is believed
    to be in V1: a modem that mis-parsed `AT+VCID=1` as `V` has switched to V0."""
    verbose: VerboseMode = VerboseMode.UNKNOWN
    numeric: NumericTable = field(default_factory=NumericTable)


def result_of(line: bytes, context: Context) -> tuple[ResultKind, bytes] | None:
    """The result code a line is, if it is one, as (kind, verbose text)."""
    kind = VERBOSE_RESULTS.get(line)
    if kind is not None:
        return kind, line
    if line.startswith(b"CONNECT ") and len(line) > 8:
        return ResultKind.CONNECT, line
    if _CME_ERROR.match(line):
        return ResultKind.ERROR, line
    if _numeric_possible(context):
        text = context.numeric.lookup(line)
        if text is not None:
            translated = result_of(text, Context(verbose=VerboseMode.VERBOSE))
            if translated is not None:
                return translated
        if _is_code(line) and not context.expects_info:
            # a code this modem family's table does not list: a result all the same
            # (the vendor tables disagree above 8), and certainly not a success
            return ResultKind.ERROR, line
    return None


def _numeric_possible(context: Context) -> bool:
    """May a bare number be a result code here? In V0 or an unknown mode always; in V1
    only as the answer to a command that has no information text to give."""
    if context.verbose is not VerboseMode.VERBOSE:
        return True
    return context.expecting is not Expecting.NOTHING and not context.expects_info


def _is_code(line: bytes) -> bool:
    return line.isdigit() and len(line) <= 3 and (len(line) == 1 or line[:1] != b"0")


def classify(line: bytes, context: Context) -> Token:
    expecting = context.expecting
    if (
        expecting is not Expecting.NOTHING
        and not context.echo_seen
        and context.command is not None
        and line.upper() == context.command.upper()
    ):
        context.echo_seen = True
        return Echo(line)

    if line == b"RING" or (
        context.verbose is not VerboseMode.VERBOSE and context.numeric.lookup(line) == b"RING"
    ):
        return Ring(line)
    distinctive = _DISTINCTIVE_RING.match(line)
    if distinctive:
        return Ring(line, distinctive=distinctive.group(1) or line)
    if is_caller_id_line(line):
        return CallerIdLine(line)

    result = result_of(line, context)
    if expecting is Expecting.NOTHING:
        if result is not None and result[0] is ResultKind.NO_CARRIER:
            return CarrierLoss(line)
        if result is not None and result[0] is ResultKind.CONNECT:
            return Final(ResultKind.CONNECT, result[1], line)  # auto-answered
        return Stray(line, result[0] if result else None)

    if result is not None:
        kind, text = result
        if expecting is Expecting.COMMAND and kind in (
            ResultKind.OK,
            ResultKind.ERROR,
            ResultKind.NO_CARRIER,
            ResultKind.BUSY,
            ResultKind.NO_DIALTONE,
            ResultKind.NO_ANSWER,
            ResultKind.DELAYED,
            ResultKind.BLACKLISTED,
        ):
            return Final(kind, text, line)
        if expecting is Expecting.CALL_SETUP and kind is not ResultKind.RING:
            return Final(kind, text, line)
        if expecting is Expecting.HANGUP and kind in (
            ResultKind.OK,
            ResultKind.NO_CARRIER,
            ResultKind.ERROR,
        ):
            return Final(kind, text, line)
        return Stray(line, kind)

    if expecting is Expecting.CALL_SETUP and _PROGRESS.match(line):
        return Progress(line)
    return Info(line)


def may_inform(line: bytes) -> bool:
    """Whether a command line may answer with information text: queries (`?`), ATI,
    &V, and extended commands that are not assignments (`+GMI`, `+GCAP`)."""
    upper = line.upper()[2:]
    return (
        b"?" in upper
        or upper.startswith((b"I", b"&V"))
        or (upper.startswith(b"+") and b"=" not in upper)
    )
