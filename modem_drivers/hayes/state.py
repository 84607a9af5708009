"""The modem conversation as a sans-IO state machine: the whole of it in this file.

`ModemCore` is told what the driver writes (`start_command`, `start_escape`, `abort`)
and what the modem sends (`receive`), with the current time, and returns events. It
never reads a clock, sleeps or touches a port: the asyncio `HayesModem` does that and
calls `tick(now)` at `next_deadline()`. Every state change goes through `TRANSITIONS`;
anything else is a bug in the caller and raises `ModemStateError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .callerid import CallerId, CallerIdAssembler
from .classify import (
    CallerIdLine,
    CarrierLoss,
    Context,
    Echo,
    Expecting,
    Final,
    Info,
    NumericTable,
    Progress,
    ResultKind,
    Ring,
    Stray,
    VerboseMode,
    classify,
    result_of,
)
from .connect import ConnectRecord, ConnectReports, parse_connect
from .errors import ModemBusy, ModemStateError
from .framer import LineFramer

NO_CARRIER_TEXT = b"\r\nNO CARRIER\r\n"
_COMMAND_RESULTS = frozenset({ResultKind.OK, ResultKind.ERROR, ResultKind.NO_CARRIER})
MAX_INFO_LINES = 256
MAX_PROBE_HOLD = 64 * 1024
"""Data kept while a probe is out, to hand on if the line turns out to be up."""


class State(enum.Enum):
    CLOSED = "closed"
    IDLE = "idle"
    COMMAND = "command pending"
    DIALING = "dialing"
    ANSWERING = "answering"
    RINGING = "ringing"
    ONLINE_DATA = "online data"
    ESCAPING = "escaping"
    ONLINE_COMMAND = "online command"
    RESUMING = "resuming"  # ATO sent
    PROBING = "probing"  # AT sent while the line may still be in data mode
    ABORTING = "aborting"  # a character sent to stop a dial or answer
    HANGING_UP = "hanging up"


class Trigger(enum.Enum):
    OPENED = "port opened"
    PORT_LOST = "port lost"
    SEND_COMMAND = "send command"
    SEND_DIAL = "send dial"
    SEND_ANSWER = "send answer"
    SEND_ONLINE = "send ATO"
    SEND_HANGUP = "send hang-up"
    SEND_ABORT = "send abort"
    SEND_ESCAPE = "send +++"
    SEND_PROBE = "send AT, online or not"
    PROBE_ANSWERED = "a modem answered the probe"
    COMPLETED = "final result"
    CONNECTED = "CONNECT"
    FAILED = "call setup failed"
    TIMED_OUT = "timed out"
    RING = "RING"
    RINGING_STOPPED = "no more rings"
    CARRIER_LOST = "carrier lost"
    ESCAPED = "OK after +++"
    COMMAND_MODE = "known to be in command mode"
    STILL_ONLINE = "known to be still in data mode"


RETURN = "return"  # back to the state the pending command was sent from
S = State
T = Trigger

TRANSITIONS: dict[tuple[State, Trigger], State | str] = {
    (S.CLOSED, T.OPENED): S.IDLE,
    (S.IDLE, T.SEND_COMMAND): S.COMMAND,
    (S.RINGING, T.SEND_COMMAND): S.COMMAND,
    (S.ONLINE_COMMAND, T.SEND_COMMAND): S.COMMAND,
    (S.COMMAND, T.COMPLETED): RETURN,
    (S.COMMAND, T.TIMED_OUT): RETURN,
    (S.IDLE, T.SEND_DIAL): S.DIALING,
    (S.IDLE, T.SEND_ANSWER): S.ANSWERING,
    (S.RINGING, T.SEND_ANSWER): S.ANSWERING,
    (S.DIALING, T.CONNECTED): S.ONLINE_DATA,
    (S.ANSWERING, T.CONNECTED): S.ONLINE_DATA,
    (S.DIALING, T.FAILED): S.IDLE,
    (S.ANSWERING, T.FAILED): S.IDLE,
    (S.DIALING, T.SEND_ABORT): S.ABORTING,
    (S.ANSWERING, T.SEND_ABORT): S.ABORTING,
    (S.DIALING, T.TIMED_OUT): S.ABORTING,
    (S.ANSWERING, T.TIMED_OUT): S.ABORTING,
    (S.ABORTING, T.COMPLETED): S.IDLE,
    (S.ABORTING, T.CONNECTED): S.ONLINE_DATA,  # CONNECT raced the abort
    (S.ABORTING, T.TIMED_OUT): S.IDLE,
    (S.IDLE, T.RING): S.RINGING,
    (S.RINGING, T.RING): S.RINGING,
    (S.RINGING, T.RINGING_STOPPED): S.IDLE,
    (S.IDLE, T.CONNECTED): S.ONLINE_DATA,  # the modem auto-answered (S0 > 0)
    (S.RINGING, T.CONNECTED): S.ONLINE_DATA,
    (S.ONLINE_DATA, T.CARRIER_LOST): S.IDLE,
    (S.ONLINE_DATA, T.SEND_ESCAPE): S.ESCAPING,
    (S.ONLINE_DATA, T.COMMAND_MODE): S.IDLE,
    (S.ESCAPING, T.ESCAPED): S.ONLINE_COMMAND,
    (S.ESCAPING, T.CARRIER_LOST): S.IDLE,
    (S.ESCAPING, T.TIMED_OUT): S.ONLINE_DATA,
    (S.ESCAPING, T.COMMAND_MODE): S.IDLE,
    (S.ONLINE_COMMAND, T.SEND_ONLINE): S.RESUMING,
    (S.ONLINE_COMMAND, T.CARRIER_LOST): S.IDLE,
    (S.ONLINE_COMMAND, T.COMMAND_MODE): S.IDLE,
    (S.RESUMING, T.CONNECTED): S.ONLINE_DATA,
    (S.RESUMING, T.FAILED): S.IDLE,
    (S.RESUMING, T.TIMED_OUT): S.ONLINE_COMMAND,
    (S.IDLE, T.SEND_HANGUP): S.HANGING_UP,
    (S.RINGING, T.SEND_HANGUP): S.HANGING_UP,
    (S.ONLINE_COMMAND, T.SEND_HANGUP): S.HANGING_UP,
    (S.HANGING_UP, T.COMPLETED): S.IDLE,
    (S.HANGING_UP, T.TIMED_OUT): S.IDLE,
    (S.ONLINE_DATA, T.SEND_PROBE): S.PROBING,
    (S.PROBING, T.PROBE_ANSWERED): S.IDLE,
    (S.PROBING, T.TIMED_OUT): S.ONLINE_DATA,
    (S.PROBING, T.CARRIER_LOST): S.IDLE,
    (S.IDLE, T.COMMAND_MODE): S.IDLE,
    (S.IDLE, T.STILL_ONLINE): S.ONLINE_DATA,  # a DTR drop that did not take
    (S.RINGING, T.COMMAND_MODE): S.IDLE,
}
for _state in State:
    if _state is not S.CLOSED:
        TRANSITIONS[(_state, T.PORT_LOST)] = S.CLOSED

DATA_IN_FLIGHT = frozenset({S.PROBING, S.ESCAPING})
"""States where we asked the modem for command mode and it may still be passing the far
end's data: what is not a result there is that data, neither logged nor a resync sign
(a bank that hung up on a caller still sending logged a page of ciphertext as strays)."""


class CommandKind(enum.Enum):
    COMMAND = "command"
    DIAL = "dial"
    ANSWER = "answer"
    ONLINE = "online"
    HANGUP = "hangup"


_SEND = {
    CommandKind.COMMAND: T.SEND_COMMAND,
    CommandKind.DIAL: T.SEND_DIAL,
    CommandKind.ANSWER: T.SEND_ANSWER,
    CommandKind.ONLINE: T.SEND_ONLINE,
    CommandKind.HANGUP: T.SEND_HANGUP,
}
_EXPECTING = {
    CommandKind.COMMAND: Expecting.COMMAND,
    CommandKind.DIAL: Expecting.CALL_SETUP,
    CommandKind.ANSWER: Expecting.CALL_SETUP,
    CommandKind.ONLINE: Expecting.CALL_SETUP,
    CommandKind.HANGUP: Expecting.HANGUP,
}


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandCompleted:
    command: bytes
    result: Final
    info: tuple[bytes, ...]


@dataclass(frozen=True)
class CommandTimedOut:
    command: bytes
    kind: CommandKind


@dataclass(frozen=True)
class CallSetupFailed:
    """A dial, answer or ATO ended without CONNECT (BUSY, NO CARRIER, ... or aborted)."""

    command: bytes
    result: Final
    aborted: bool
    progress: tuple[bytes, ...]


@dataclass(frozen=True)
class Connected:
    record: ConnectRecord
    data: bytes
    """Bytes that came in the same read as CONNECT: the start of the data stream."""
    incoming: bool
    resumed: bool = False


@dataclass(frozen=True)
class RingReceived:
    count: int
    distinctive: bytes | None = None


@dataclass(frozen=True)
class CallerIdReceived:
    caller_id: CallerId


@dataclass(frozen=True)
class RingingStopped:
    rings: int


@dataclass(frozen=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True)
class CarrierLost:
    reason: str


@dataclass(frozen=True)
class CarrierSuspect:
    """`NO CARRIER` ended the data and nothing followed: verify before believing it."""


@dataclass(frozen=True)
class EscapeEnded:
    ok: bool


@dataclass(frozen=True)
class ProbeEnded:
    """The answer to `start_probe`: a modem answered (command mode: the call is over),
    or nothing did (the line is still in data mode)."""

    answered: bool


@dataclass(frozen=True)
class StrayLine:
    text: bytes
    kind: ResultKind | None


@dataclass(frozen=True)
class LineTooLong:
    head: bytes


Event = (
    CommandCompleted
    | CommandTimedOut
    | CallSetupFailed
    | Connected
    | RingReceived
    | CallerIdReceived
    | RingingStopped
    | DataReceived
    | CarrierLost
    | CarrierSuspect
    | EscapeEnded
    | ProbeEnded
    | StrayLine
    | LineTooLong
)


@dataclass(frozen=True)
class CoreTimings:
    ring_gap: float = 10.0
    """No RING for this long while ringing: the caller gave up."""
    cid_settle: float = 0.3
    """Caller-ID lines come in a burst; this long after the last one it is complete."""
    nocarrier_quiet: float = 1.0
    """`NO CARRIER` at the end of the data and silence this long: suspect carrier loss."""
    partial_hold: float = 0.05
    """Data ending in the start of `\r\nNO CARRIER\r\n` is held this long for the rest
    of the message (a modem sends it in one burst); then it is data."""
    trailing_no_carrier: float = 3.0
    """After DCD drops, the modem reports NO CARRIER once S10 has passed (1.4 s by
    default); within this window that line belongs to the call, not to a command."""
    abort_grace: float = 0.15
    """V.250 ignores characters within 125 ms of a D/A command's CR."""
    abort_timeout: float = 5.0
    escape_slack: float = 0.5
    """How long after the post-escape guard time the OK may take."""
    pacing: float = 0.1
    """At least this long after a result before the next command (V.250 6.3.1)."""

    def scaled(self, factor: float) -> CoreTimings:
        return CoreTimings(**{k: v * factor for k, v in vars(self).items()})


@dataclass
class _Pending:
    command: bytes
    kind: CommandKind
    sent_at: float
    deadline: float
    info: list[bytes] = field(default_factory=list)
    progress: list[bytes] = field(default_factory=list)
    aborted: bool = False
    abort_written: bool = False


class ModemCore:
    def __init__(
        self,
        *,
        numeric: NumericTable | None = None,
        reports: ConnectReports = "dce",
        timings: CoreTimings | None = None,
        port_rate: int | None = None,
        max_line: int = 512,
    ) -> None:
        self.state = State.CLOSED
        self.timings = timings or CoreTimings()
        self.reports = reports
        self.port_rate = port_rate
        self.context = Context(numeric=numeric or NumericTable())
        self._framer = LineFramer(max_line)
        self._pending: _Pending | None = None
        self._return_state = State.IDLE
        self._cid = CallerIdAssembler()
        self._cid_deadline: float | None = None
        self._rings = 0
        self._ring_deadline: float | None = None
        self._held = b""
        self._suspect_deadline: float | None = None
        self._release_deadline: float | None = None
        self._trailing_until = float("-inf")
        self._skip_lf = False
        self._escape_deadline: float | None = None
        self._ending = False
        self._probe_raw = bytearray()
        self._probe_deadline: float | None = None
        self.last_result_at = float("-inf")
        self.last_write_at = float("-inf")
        self.needs_resync = False
        self.consecutive_timeouts = 0

    # -- the transition table ------------------------------------------------------------

    def _fire(self, trigger: Trigger) -> None:
        target = TRANSITIONS.get((self.state, trigger))
        if target is None:
            raise ModemStateError(f"{trigger.value!r} is not possible while {self.state.value}")
        self.state = self._return_state if target == RETURN else State(target)

    def can(self, trigger: Trigger) -> bool:
        return (self.state, trigger) in TRANSITIONS

    # -- the port ------------------------------------------------------------------------

    def opened(self) -> None:
        self._fire(T.OPENED)
        self._framer.clear()
        self.context.verbose = VerboseMode.UNKNOWN
        self.needs_resync = True

    def port_lost(self) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        self._fire(T.PORT_LOST)
        self._pending = None
        self._reset_call_state()
        return []

    def set_verbose(self, mode: VerboseMode) -> None:
        self.context.verbose = mode

    # -- what the driver sends -----------------------------------------------------------

    def command_allowed_at(self) -> float:
        """Pacing after the last result; and after a carrier loss seen on DCD, the end of
        S10 (the modem eats commands as data until it has said NO CARRIER)."""
        return max(self.last_result_at + self.timings.pacing, self._trailing_until)

    def use_profile(self, numeric: NumericTable, reports: ConnectReports) -> None:
        """The modem family is known now: its numeric codes and CONNECT rates."""
        self.context.numeric = numeric
        self.reports = reports

    def start_command(
        self,
        command: bytes,
        kind: CommandKind,
        now: float,
        timeout: float,
        *,
        expects_info: bool = True,
    ) -> bytes:
        """Register a command line; returns the bytes to write (with the CR).
        `expects_info`: the command may answer with information text (ATI, S7?)."""
        if self._pending is not None or self.state in (
            State.DIALING,
            State.ANSWERING,
            State.ABORTING,
            State.ESCAPING,
        ):
            raise ModemBusy(f"the modem is busy ({self.state.value})")
        trigger = _SEND[kind]
        if not self.can(trigger):
            raise ModemStateError(f"cannot send {command!r} while {self.state.value}")
        if self.state is not State.COMMAND:
            self._return_state = self.state
        self._fire(trigger)
        self._pending = _Pending(command, kind, now, now + timeout)
        self.context.expecting = _EXPECTING[kind]
        self.context.command = command
        self.context.echo_seen = False
        self.context.expects_info = expects_info and kind is CommandKind.COMMAND
        self.last_write_at = now
        return command + b"\r"

    def may_abort(self) -> bool:
        """A dial or answer is out (or timed out) and its abort character is not sent."""
        pending = self._pending
        if pending is None or pending.abort_written:
            return False
        return self.state in (State.DIALING, State.ANSWERING) or (
            self.state is State.ABORTING and pending.aborted
        )

    def abort_allowed_at(self) -> float:
        pending = self._pending
        return pending.sent_at + self.timings.abort_grace if pending else float("-inf")

    def abort(self, now: float) -> bytes:
        """Stop a dial or answer: one character, after the V.250 grace period."""
        pending = self._pending
        timed_out = self.state is State.ABORTING and pending is not None
        if timed_out and pending is not None and pending.abort_written:
            raise ModemStateError("the abort character was sent already")
        if pending is None or not (timed_out or self.state in (State.DIALING, State.ANSWERING)):
            raise ModemStateError(f"nothing to abort while {self.state.value}")
        if now < self.abort_allowed_at():
            raise ModemStateError("too early to abort: the modem would ignore it")
        if not timed_out:  # after a time-out the core is ABORTING already
            self._fire(T.SEND_ABORT)
        pending.aborted = pending.abort_written = True
        pending.deadline = now + self.timings.abort_timeout
        self.last_write_at = now
        return b"\r"

    def note_data_written(self, now: float) -> None:
        self.last_write_at = now

    def start_escape(self, now: float, guard: float) -> bytes:
        """`+++`: the caller has kept the line quiet for the guard time already."""
        self._fire(T.SEND_ESCAPE)
        self._flush_held()
        self._framer.clear()
        self.context.expecting = Expecting.HANGUP
        self.context.command = None
        self._escape_deadline = now + guard + self.timings.escape_slack
        self.last_write_at = now
        return b"+++"

    def start_probe(self, now: float, timeout: float) -> bytes:
        """`AT` while the line may still be in data mode (an escape went unanswered, or
        `NO CARRIER` ended the data after the protocol was over). A modem in command mode
        answers: the call is over. Otherwise the bytes were data to the far end and what
        came meanwhile is handed on as data. The leading CR ends whatever the modem has
        in its command buffer (`+++` that was not an escape)."""
        self._fire(T.SEND_PROBE)
        self._probe_raw = bytearray(self._held)
        self._held = b""
        self._suspect_deadline = None
        self._release_deadline = None
        self._framer.clear()
        self.context.expecting = Expecting.COMMAND
        self.context.command = b"AT"
        self.context.echo_seen = False
        self.context.expects_info = False
        self._probe_deadline = now + timeout
        self.last_write_at = now
        return b"\rAT\r"

    def expect_call_end(self, now: float | None = None) -> None:
        """The protocol on the call is over: a `NO CARRIER` ending the data now is the
        far end hanging up, believed at once rather than after `nocarrier_quiet`. One
        that came already is suspected from `now` (the next `tick`), not after the
        quiet period it was given when it arrived."""
        if not self.in_call:
            return
        self._ending = True
        if now is not None and self._suspect_deadline is not None and self.suspecting:
            self._suspect_deadline = min(self._suspect_deadline, now)

    @property
    def call_ending(self) -> bool:
        return self._ending

    def assume_command_mode(self) -> list[Event]:
        """The driver has verified (DTR drop, AT -> OK) that the modem is in command mode."""
        events: list[Event] = []
        if self.state in (State.ONLINE_DATA, State.ESCAPING, State.ONLINE_COMMAND):
            events.append(CarrierLost("hung up"))
        self._fire(T.COMMAND_MODE)
        self._reset_call_state()
        self._framer.clear()
        return events

    def assume_online(self) -> None:
        """A hang-up by DTR could not be verified: the modem is still in data mode."""
        self._fire(T.STILL_ONLINE)
        self._framer.clear()

    def carrier_dropped(self, now: float) -> list[Event]:
        """DCD went low while online."""
        if self.state not in (
            State.ONLINE_DATA,
            State.ESCAPING,
            State.ONLINE_COMMAND,
            State.PROBING,
        ):
            return []
        if self._held != NO_CARRIER_TEXT:
            self._trailing_until = now + self.timings.trailing_no_carrier
        self._held = b""  # `NO CARRIER` from the modem, not data
        self._fire(T.CARRIER_LOST)
        self._reset_call_state()
        return [CarrierLost("DCD dropped")]

    # -- what the modem sends ------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Event]:
        events: list[Event] = []
        if self.state is State.CLOSED:
            return events
        if self.state is State.ONLINE_DATA:
            self._receive_data(data, now, events)
            return events
        if self.state is State.PROBING:
            room = MAX_PROBE_HOLD - len(self._probe_raw)
            self._probe_raw += data[: max(room, 0)]
        self._framer.feed(data)
        self._process_lines(now, events)
        return events

    def _process_lines(self, now: float, events: list[Event]) -> None:
        while self.state is not State.ONLINE_DATA:
            line = self._framer.next_line()
            if line is None:
                return
            if line.overflow:
                if self.state not in DATA_IN_FLIGHT:  # else data, most likely
                    events.append(LineTooLong(line.text[:64]))
                continue
            self._line(line.text, now, events)
        # CONNECT switched us to data mode: the rest of the buffer is data
        rest = self._framer.take_remainder()
        if rest:
            self._receive_data(rest, now, events, from_connect=True)

    def _line(self, text: bytes, now: float, events: list[Event]) -> None:
        token = classify(text, self.context)
        pending = self._pending
        if isinstance(token, Echo):
            return
        if isinstance(token, Ring):
            self._ring(token, now, events)
            return
        if isinstance(token, CallerIdLine):
            self._cid.add(token.text)
            self._cid_deadline = now + self.timings.cid_settle
            return
        if isinstance(token, CarrierLoss):
            if self.state is State.ONLINE_COMMAND:
                self._fire(T.CARRIER_LOST)
                self._reset_call_state()
                events.append(CarrierLost("NO CARRIER"))
            else:
                events.append(StrayLine(text, ResultKind.NO_CARRIER))
            return
        if isinstance(token, Progress):
            if pending is not None:
                pending.progress.append(token.text)
            return
        if isinstance(token, Info):
            if pending is not None and self.state is State.COMMAND:
                if len(pending.info) < MAX_INFO_LINES:
                    pending.info.append(token.text)
            elif pending is not None:
                pending.progress.append(token.text)
            elif self.state not in DATA_IN_FLIGHT:
                events.append(StrayLine(text, None))
            return
        if isinstance(token, Stray):
            if self.state in DATA_IN_FLIGHT:
                return  # data from a line that is still up, most likely
            # a late or doubled result, or a number from a modem that fell into V0
            numeric = self.context.numeric.lookup(text) is not None
            self.needs_resync = self.needs_resync or token.kind is not None or numeric
            events.append(StrayLine(token.text, token.kind))
            return
        assert isinstance(token, Final)
        if token.numeric and self.context.verbose is VerboseMode.VERBOSE:
            self.context.verbose = VerboseMode.UNKNOWN  # the driver restores V1
        self._final(token, now, events)

    def _final(self, result: Final, now: float, events: list[Event]) -> None:
        pending = self._pending
        if (
            result.kind is ResultKind.NO_CARRIER
            and now <= self._trailing_until
            and (pending is None or pending.kind in (CommandKind.COMMAND, CommandKind.HANGUP))
        ):
            self._trailing_until = float("-inf")
            self.last_result_at = now
            events.append(StrayLine(result.raw, result.kind))  # the end of the last call
            return
        self.last_result_at = now
        self.consecutive_timeouts = 0
        if self.state is State.PROBING:
            self._probe_answered(events)
            return
        if self.state is State.ESCAPING:
            self._escape_deadline = None
            if result.kind is ResultKind.OK:
                self._fire(T.ESCAPED)
                self.context.expecting = Expecting.NOTHING
                events.append(EscapeEnded(True))
            elif result.kind is ResultKind.NO_CARRIER:
                self._fire(T.CARRIER_LOST)
                self._reset_call_state()
                events.append(CarrierLost("NO CARRIER"))
            else:
                # ERROR (say) from a far end in command mode that our data reached:
                # not our modem confirming the escape; still online as far as we know
                self._fire(T.TIMED_OUT)
                self.context.expecting = Expecting.NOTHING
                events.append(EscapeEnded(False))
            return
        if result.kind is ResultKind.CONNECT:
            self._connected(result, now, events)
            return
        if pending is None:
            events.append(StrayLine(result.raw, result.kind))
            return
        self._pending = None
        self._clear_expectation()
        if self.state is State.COMMAND:
            self._fire(T.COMPLETED)
            events.append(CommandCompleted(pending.command, result, tuple(pending.info)))
        elif self.state is State.HANGING_UP:
            self._fire(T.COMPLETED)
            self._reset_call_state()
            events.append(CommandCompleted(pending.command, result, tuple(pending.info)))
        elif self.state is State.ABORTING:
            self._fire(T.COMPLETED)
            events.append(CallSetupFailed(pending.command, result, True, tuple(pending.progress)))
        elif self.state in (State.DIALING, State.ANSWERING, State.RESUMING):
            self._fire(T.FAILED)  # always back to idle: the call never came up
            self._reset_call_state()
            events.append(
                CallSetupFailed(pending.command, result, pending.aborted, tuple(pending.progress))
            )

    def _probe_answered(self, events: list[Event]) -> None:
        self._probe_deadline = None
        self._probe_raw.clear()
        self._fire(T.PROBE_ANSWERED)
        self._reset_call_state()
        events.append(ProbeEnded(True))
        events.append(CarrierLost("NO CARRIER"))
        if self._rings and self._ring_deadline is not None:
            self._fire(T.RING)  # the next call rang in while we asked

    def _connected(self, result: Final, now: float, events: list[Event]) -> None:
        pending = self._pending
        incoming = self.state in (State.IDLE, State.RINGING, State.ANSWERING)
        resumed = self.state is State.RESUMING
        progress = pending.progress if pending else []
        self._fire(T.CONNECTED)
        # Some modems time the escape guard from CONNECT, not from the DTE's last
        # character: count the connect as a write so the guard before `+++` covers both.
        self.last_write_at = now
        self._pending = None
        self._clear_expectation()
        self._rings = 0
        self._ring_deadline = None
        record = parse_connect(
            result.text, progress, reports=self.reports, port_rate=self.port_rate
        )
        if result.raw != result.text:
            record = ConnectRecord(**{**record.__dict__, "lines": (*progress, result.raw)})
        # `CONNECT\r` was the last byte read: in V1 its LF may open the next read
        self._skip_lf = (
            self.context.verbose is not VerboseMode.NUMERIC and self._framer.expecting_lf()
        )
        events.append(Connected(record, b"", incoming, resumed))

    def _ring(self, token: Ring, now: float, events: list[Event]) -> None:
        if self._cid:
            events.append(CallerIdReceived(self._cid.take()))
            self._cid_deadline = None
        self._rings += 1
        self._ring_deadline = now + self.timings.ring_gap
        if self.can(T.RING):
            self._fire(T.RING)
        elif self.state is State.COMMAND and self._return_state is State.IDLE:
            self._return_state = State.RINGING  # a call is coming in meanwhile
        events.append(RingReceived(self._rings, token.distinctive))

    def _receive_data(
        self, data: bytes, now: float, events: list[Event], *, from_connect: bool = False
    ) -> None:
        if self._skip_lf and data[:1] == b"\n":
            data = data[1:]
        self._skip_lf = False
        if not data:
            return
        buffer = self._held + data
        if self.suspecting:
            if _only_results(buffer[len(NO_CARRIER_TEXT) :]):
                # The modem talks on after its NO CARRIER (answers to bytes we wrote
                # before we stopped writing): still a carrier loss, most likely.
                self._held = buffer
                self._suspect_deadline = now + self._suspect_delay()
                return
            self._held = b""  # real data followed: it was all data
        keep = _partial_suffix(buffer, NO_CARRIER_TEXT)
        self._held = buffer[len(buffer) - keep :] if keep else b""
        deliver = buffer[: len(buffer) - keep]
        complete = self._held == NO_CARRIER_TEXT
        self._suspect_deadline = now + self._suspect_delay() if complete else None
        self._release_deadline = (
            now + self.timings.partial_hold if self._held and not complete else None
        )
        if deliver:
            if from_connect and events and isinstance(events[-1], Connected):
                connected = events[-1]
                events[-1] = Connected(
                    connected.record, deliver, connected.incoming, connected.resumed
                )
            else:
                events.append(DataReceived(deliver))

    @property
    def suspecting(self) -> bool:
        """A whole `\r\nNO CARRIER\r\n` ended the data: the call may be gone, and what
        we write now may reach a modem in command mode (the driver holds it back)."""
        return self.state is State.ONLINE_DATA and self._held.startswith(NO_CARRIER_TEXT)

    def release_held(self) -> list[Event]:
        """The suspected `NO CARRIER` was data after all (the call is still up)."""
        held, self._held = self._held, b""
        self._suspect_deadline = None
        self._release_deadline = None
        return [DataReceived(held)] if held else []

    def _flush_held(self) -> None:
        self._held = b""
        self._suspect_deadline = None
        self._release_deadline = None

    # -- time ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        candidates = [
            self._pending.deadline if self._pending else None,
            self._cid_deadline,
            self._ring_deadline,
            self._suspect_deadline,
            self._release_deadline,
            self._escape_deadline,
            self._probe_deadline,
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def _suspect_delay(self) -> float:
        return 0.0 if self._ending else self.timings.nocarrier_quiet

    def tick(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self._probe_deadline is not None and now >= self._probe_deadline:
            self._probe_deadline = None
            if self.state is State.PROBING:
                self._probe_unanswered(events)
        pending = self._pending
        if pending is not None and now >= pending.deadline:
            self._timed_out(pending, now, events)
        if self._cid_deadline is not None and now >= self._cid_deadline:
            self._cid_deadline = None
            if self._cid:
                events.append(CallerIdReceived(self._cid.take()))
        if self._ring_deadline is not None and now >= self._ring_deadline:
            self._ring_deadline = None
            rings, self._rings = self._rings, 0
            if self.state is State.RINGING:
                self._fire(T.RINGING_STOPPED)
            elif self.state is State.COMMAND and self._return_state is State.RINGING:
                self._return_state = State.IDLE
            if rings:
                events.append(RingingStopped(rings))
        if self._release_deadline is not None and now >= self._release_deadline:
            if self.state is State.ONLINE_DATA:
                events.extend(self.release_held())
            self._release_deadline = None
        if self._suspect_deadline is not None and now >= self._suspect_deadline:
            self._suspect_deadline = None
            if self.suspecting:
                events.append(CarrierSuspect())
        if self._escape_deadline is not None and now >= self._escape_deadline:
            self._escape_deadline = None
            if self.state is State.ESCAPING:
                self._fire(T.TIMED_OUT)
                self._clear_expectation()
                events.append(EscapeEnded(False))
        return events

    def _probe_unanswered(self, events: list[Event]) -> None:
        """Nothing answered `AT`: still in data mode; what came meanwhile was data."""
        self._fire(T.TIMED_OUT)
        self._clear_expectation()
        self._framer.clear()
        raw, self._probe_raw = bytes(self._probe_raw), bytearray()
        events.append(ProbeEnded(False))
        if raw:
            events.append(DataReceived(raw))

    def _timed_out(self, pending: _Pending, now: float, events: list[Event]) -> None:
        self.consecutive_timeouts += 1
        self.needs_resync = True
        state = self.state
        if state in (State.DIALING, State.ANSWERING):
            # The modem may still be dialling: the caller must send the abort character.
            self._fire(T.TIMED_OUT)
            pending.aborted = True
            pending.deadline = now + self.timings.abort_timeout
            events.append(CommandTimedOut(pending.command, pending.kind))
            return
        late_code = self._numeric_answer(pending) if state is State.COMMAND else None
        if late_code is not None:
            # the only answer was a bare number, taken for information text because
            # the modem was believed verbose: it was the result code of a modem in V0
            pending.info.clear()
            self.context.verbose = VerboseMode.UNKNOWN
            self._final(late_code, now, events)
            return
        self._pending = None
        self._clear_expectation()
        self._fire(T.TIMED_OUT)
        if state is State.ABORTING:
            self._reset_call_state()
        events.append(CommandTimedOut(pending.command, pending.kind))

    # -- helpers -------------------------------------------------------------------------

    def _numeric_answer(self, pending: _Pending) -> Final | None:
        if len(pending.info) != 1 or pending.progress:
            return None
        raw = pending.info[0]
        text = self.context.numeric.lookup(raw)
        if text is None:
            return None
        result = result_of(text, Context(verbose=VerboseMode.VERBOSE))
        if result is None or result[0] not in _COMMAND_RESULTS:
            return None  # CONNECT or RING cannot end a command: let it time out
        return Final(result[0], result[1], raw)

    def _clear_expectation(self) -> None:
        self.context.expecting = Expecting.NOTHING
        self.context.command = None
        self.context.echo_seen = False

    def _reset_call_state(self) -> None:
        self._held = b""
        self._suspect_deadline = None
        self._release_deadline = None
        self._escape_deadline = None
        self._probe_deadline = None
        self._probe_raw.clear()
        self._ending = False
        self._skip_lf = False
        self._clear_expectation()

    def resynchronised(self) -> None:
        """The caller drained the port and got OK to a plain `AT`."""
        self.needs_resync = False
        self._framer.clear()

    def discard_input(self) -> None:
        self._framer.clear()

    @property
    def pending_command(self) -> bytes | None:
        return self._pending.command if self._pending else None

    @property
    def in_call(self) -> bool:
        return self.state in (
            State.ONLINE_DATA,
            State.ESCAPING,
            State.ONLINE_COMMAND,
            State.RESUMING,
            State.PROBING,
        )


_RESULT_TEXTS = (
    b"OK",
    b"ERROR",
    b"NO CARRIER",
    b"CONNECT",
    b"RING",
    b"BUSY",
    b"NO DIALTONE",
    b"NO DIAL TONE",
    b"NO ANSWER",
    b"DELAYED",
    b"BLACKLISTED",
)


def _only_results(data: bytes) -> bool:
    """True if `data` is nothing but (the start of) CR/LF-framed result codes."""
    parts = data.replace(b"\r", b"\n").split(b"\n")
    for index, part in enumerate(parts):
        if not part:
            continue
        last = index == len(parts) - 1
        if any(part == text or part.startswith(text + b" ") for text in _RESULT_TEXTS):
            continue
        if last and any(text.startswith(part) for text in _RESULT_TEXTS):
            continue  # the beginning of a result still arriving
        return False
    return True


def _partial_suffix(buffer: bytes, pattern: bytes) -> int:
    """Length of the longest suffix of `buffer` that is a prefix of `pattern`."""
    for length in range(min(len(buffer), len(pattern)), 0, -1):
        if buffer.endswith(pattern[:length]):
            return length
    return 0
