"""`HayesModem`: the asyncio shell around `ModemCore`, and `DataCall`, the call it makes.

The shell owns the port, the clock and the tasks; every decision about what a byte
means is the core's. One operation runs at a time (a second one raises `ModemBusy`
rather than queueing behind a dial), unsolicited events (RING, caller ID) go to a
queue of their own, and data after CONNECT goes to the `DataCall`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..text import escape_bytes
from .callerid import CallerId
from .classify import ResultKind, VerboseMode
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
from .port import WRITE_BUFFER_HIGH, SerialPort, open_port
from .profiles import DriverProfile, detect_profile, get_driver_profile
from .state import (
    CallerIdReceived,
    CallSetupFailed,
    CarrierLost,
    CarrierSuspect,
    CommandCompleted,
    CommandKind,
    CommandTimedOut,
    Connected,
    CoreTimings,
    DataReceived,
    EscapeEnded,
    Event,
    LineTooLong,
    ModemCore,
    RingingStopped,
    RingReceived,
    State,
    StrayLine,
)

log = structlog.get_logger("callhome.modem")

DIAL_CHARACTERS = re.compile(r"[0-9*#ABCDabcdTtPpWw,!@;]+")
_DIAL_IGNORED = str.maketrans("", "", " -().")


def dial_string(number: str) -> str:
    """`number` as it goes after ATD (spaces, dashes, dots and brackets dropped);
    ValueError if a modem would not take it. Configs check their numbers with this."""
    cleaned = number.translate(_DIAL_IGNORED)
    if not cleaned or not DIAL_CHARACTERS.fullmatch(cleaned) or ";" in cleaned[:-1]:
        raise ValueError(f"not a dial string: {number!r}")
    return cleaned


READ_BUFFER_LIMIT = 256 * 1024
HELD_WRITES_LIMIT = 64 * 1024


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
    guard_margin: float = 0.2
    dtr_drop: float = 0.5
    drain_quiet: float = 0.25
    dcd_poll: float = 0.2
    hangup_step: float = 4.0
    reopen_backoff: float = 1.0
    reopen_backoff_max: float = 60.0
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
    """dtr, escape, ath, atz or reopen: the first rung of the ladder that worked."""
    seconds: float


@dataclass(frozen=True)
class ModemInfo:
    profile: str
    identity: dict[int, tuple[bytes, ...]]
    port: dict[str, Any]
    dcd_trusted: bool


class _PortLost:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc


class _Protocol(asyncio.Protocol):
    """One per opening of the port: a closed port's late callbacks must not reach the
    port opened after it."""

    def __init__(self, modem: HayesModem) -> None:
        self._modem = modem
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self._modem._protocol is self:
            self._modem._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._modem._protocol is self:
            self._modem._on_lost(exc)

    def pause_writing(self) -> None:
        self._modem._writable.clear()

    def resume_writing(self) -> None:
        self._modem._writable.set()


class HayesModem:
    def __init__(
        self,
        url: str,
        *,
        profile: str | DriverProfile | None = "auto",
        timings: Timings | None = None,
        name: str | None = None,
        baudrate: int = 115200,
        extra_settings: Sequence[str] = (),
    ) -> None:
        self.url = url
        self.name = name or url
        self.timings = timings or Timings()
        self.baudrate = baudrate
        self.extra_settings = tuple(s.encode() for s in extra_settings)
        if isinstance(profile, str) and profile != "auto":
            profile = get_driver_profile(profile)
        self._fixed_profile = profile if isinstance(profile, DriverProfile) else None
        self.profile: DriverProfile | None = self._fixed_profile
        self._core = self._new_core()
        self._port: SerialPort | None = None
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._op_events: asyncio.Queue[Event | _PortLost] | None = None
        self._busy = False
        self._internal: asyncio.Task[Any] | None = None
        self._events: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        self._writable = asyncio.Event()
        self._writable.set()
        self._call: DataCall | None = None
        self._held_writes = bytearray()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_rx = 0.0
        self._lost: BaseException | None = None
        self.dcd_trusted = False
        self.info: ModemInfo | None = None
        self._log = log.bind(port=self.name)
        self._transcript = False

    def _new_core(self) -> ModemCore:
        profile = self.profile
        return ModemCore(
            numeric=profile.numeric_table() if profile else None,
            reports=profile.reports if profile else "dce",
            timings=self.timings.core,
            port_rate=self.baudrate,
        )

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> HayesModem:
        modem = cls(url, **kwargs)
        await modem.connect()
        return modem

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transcript = self._log.is_enabled_for(logging.DEBUG)
        protocol = _Protocol(self)
        self._protocol = protocol
        self._port = await open_port(self.url, protocol, baudrate=self.baudrate)
        self._lost = None
        self._core = self._new_core()
        self._core.opened()
        self._last_rx = self._loop.time()
        self._log.info("port.opened", **self._port.describe())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        port, self._port = self._port, None
        protocol, self._protocol = self._protocol, None
        if port is not None:
            await port.close()
            if protocol is not None:
                # the port is closed (and its lock released) only when this fires
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(protocol.closed), 2.0)
        if self._call is not None:
            self._call._end("port closed")
        self._core.port_lost()

    async def __aenter__(self) -> HayesModem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def reopen(self, *, attempts: int | None = None) -> ModemInfo:
        """Open the port again (after `PortGone`) and re-initialise, with backoff."""
        delay = self.timings.reopen_backoff
        attempt = 0
        while True:
            attempt += 1
            with contextlib.suppress(ModemError):
                await self.close()
            try:
                await self.connect()
                return await self.initialize()
            except (
                PortOpenError,
                PortGone,
                ModemNotResponding,
                InitialisationError,
                ModemTimeout,
            ) as exc:
                self._log.warning(
                    "port.reopen_failed", attempt=attempt, error=str(exc), retry_in=round(delay, 3)
                )
                if attempts is not None and attempt >= attempts:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.timings.reopen_backoff_max)

    # -- properties ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._core.state

    @property
    def consecutive_timeouts(self) -> int:
        return self._core.consecutive_timeouts

    @property
    def port(self) -> SerialPort | None:
        return self._port

    # -- initialisation ------------------------------------------------------------------

    async def initialize(self) -> ModemInfo:
        """Drain, wake, reset, identify, then apply the settings one line at a time."""
        async with self._operation():
            await self._quiet()
            await self._wake()
            await self._expect_ok(b"ATZ", self.timings.reset_timeout, kind=CommandKind.HANGUP)
            self._core.set_verbose(VerboseMode.UNKNOWN)
            identity: dict[int, tuple[bytes, ...]] = {}
            for index in (0, 3):
                response = await self._command(b"ATI%d" % index, self.timings.init_timeout)
                identity[index] = response.info if response.ok else ()
            if self._fixed_profile is None:
                self.profile = detect_profile(identity)
                self._core.context.numeric = self.profile.numeric_table()
                self._core.reports = self.profile.reports
            await self._apply_settings()
            self.dcd_trusted = self._check_dcd()
            assert self._port is not None and self.profile is not None
            self.info = ModemInfo(
                self.profile.name, identity, self._port.describe(), self.dcd_trusted
            )
            self._log.info(
                "modem.ready",
                profile=self.profile.name,
                identity=" / ".join(escape_bytes(b" ".join(v)) for v in identity.values() if v),
                dcd_trusted=self.dcd_trusted,
            )
            return self.info

    async def _wake(self) -> None:
        for _ in range(self.timings.wake_attempts):
            try:
                response = await self._command(b"AT", self.timings.init_timeout, resync=False)
            except ModemTimeout:
                continue
            if response.ok:
                self._core.resynchronised()
                return
        # Perhaps still online from an earlier life: escape, as mgetty's force-init does.
        self._log.warning("modem.not_answering", action="guarded +++ then AT")
        await asyncio.sleep(self.timings.guard + self.timings.guard_margin)
        self._write(b"+++")
        await asyncio.sleep(self.timings.guard + self.timings.guard_margin)
        if self._port is not None and self._port.has_dtr:
            await self._pulse_dtr()
        await self._quiet()
        try:
            response = await self._command(b"AT", self.timings.init_timeout, resync=False)
        except ModemTimeout:
            raise ModemNotResponding(f"{self.name}: no OK to AT") from None
        if not response.ok:
            raise ModemNotResponding(f"{self.name}: no OK to AT")
        self._core.resynchronised()

    async def _apply_settings(self) -> None:
        assert self.profile is not None
        for setting in (*self.profile.settings, *self.extra_settings):
            response = await self._command(setting, self.timings.init_timeout)
            if not response.ok:
                raise InitialisationError(
                    f"{self.name}: {setting.decode()} was answered "
                    f"{response.text.decode('latin-1')}"
                )
            if setting.upper() == b"ATV1":
                self._core.set_verbose(VerboseMode.VERBOSE)

    def _check_dcd(self) -> bool:
        """DCD is only worth watching if it is low while no call is up (&C1 took)."""
        port = self._port
        if port is None or not port.has_dcd:
            return False
        level = port.dcd()
        if level is None:
            return port.kind == "rfc2217"  # not notified yet; terminal servers do notify
        if level:
            self._log.warning(
                "modem.dcd_always_on",
                hint="&C1 not effective or the cable lacks DCD; "
                "falling back to NO CARRIER detection",
            )
        return not level

    # -- commands ------------------------------------------------------------------------

    async def command(
        self, command: str | bytes, *, timeout: float | None = None, check: bool = False
    ) -> CommandResponse:
        """Send one command line (with or without `AT`); returns its final result."""
        line = command.encode() if isinstance(command, str) else bytes(command)
        line = line.strip()
        if not line.upper().startswith(b"AT"):
            line = b"AT" + line
        async with self._operation():
            response = await self._command(line, timeout or self.timings.command_timeout)
        if check and not response.ok:
            raise CommandRejected(line, response.text.decode("latin-1"))
        return response

    async def _command(
        self,
        line: bytes,
        timeout: float,
        *,
        kind: CommandKind = CommandKind.COMMAND,
        resync: bool = True,
    ) -> CommandResponse:
        event = await self._exchange(line, kind, timeout, resync=resync)
        if isinstance(event, CommandCompleted):
            return CommandResponse(line, event.result.kind, event.result.text, event.info)
        if isinstance(event, CommandTimedOut):
            self._log.warning(
                "modem.timeout",
                command=line.decode("latin-1"),
                consecutive=self._core.consecutive_timeouts,
            )
            raise ModemTimeout(f"{self.name}: no answer to {line.decode('latin-1')}")
        raise ModemStateError(f"unexpected {event!r} after {line!r}")

    async def _expect_ok(
        self, line: bytes, timeout: float, kind: CommandKind = CommandKind.COMMAND
    ) -> None:
        response = await self._command(line, timeout, kind=kind)
        if not response.ok:
            raise CommandRejected(line, response.text.decode("latin-1"))

    async def _exchange(
        self, line: bytes, kind: CommandKind, timeout: float, *, resync: bool = True
    ) -> Event:
        if self._port is None:
            raise PortGone(f"{self.name}: port lost; reopen() it")
        if resync and self._core.needs_resync:
            await self._resync()
        await self._pace()
        if self._port is None:  # lost while we waited
            raise PortGone(f"{self.name}: port lost; reopen() it")
        self._op_events = asyncio.Queue()
        data = self._core.start_command(line, kind, self._now(), timeout)
        self._write(data)
        self._reschedule()
        return await self._next_op_event()

    async def _next_op_event(self) -> Event:
        assert self._op_events is not None
        event = await self._op_events.get()
        if isinstance(event, _PortLost):
            raise PortGone(f"{self.name}: port lost ({event.exc or 'closed'})")
        return event

    async def _resync(self) -> None:
        """After a timeout or a stray result: drain, then `AT` -> `OK`, before any command.

        A late reply must never be credited to the next command: it arrives during the
        quiet period (and is logged as stray) or answers this `AT`.
        """
        self._log.info("modem.resync")
        for _ in range(self.timings.wake_attempts):
            await self._quiet()
            self._core.discard_input()
            try:
                response = await self._command(b"AT", self.timings.init_timeout, resync=False)
            except ModemTimeout:
                continue
            if response.ok:
                self._core.resynchronised()
                await self._quiet()
                return
        raise ModemNotResponding(f"{self.name}: no OK to AT after a timeout")

    async def _quiet(self) -> None:
        """Wait until nothing has come from the modem for `drain_quiet` seconds."""
        while True:
            remaining = self._last_rx + self.timings.drain_quiet - self._now()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def _pace(self) -> None:
        # re-read each time round: a NO CARRIER arriving meanwhile ends the wait early
        while (wait := self._core.command_allowed_at() - self._now()) > 0:
            await asyncio.sleep(min(wait, max(self.timings.core.pacing, 0.005)))

    # -- dialling ------------------------------------------------------------------------

    async def dial(self, number: str, *, timeout: float | None = None) -> CallOutcome:
        """Dial (`T`, `P`, `W`, `,`, `!`, `@` allowed) and return what happened."""
        return await self._call_setup(
            b"ATD" + dial_string(number).encode(),
            CommandKind.DIAL,
            timeout or self.timings.dial_timeout,
        )

    async def answer(self, *, timeout: float | None = None) -> CallOutcome:
        return await self._call_setup(
            b"ATA", CommandKind.ANSWER, timeout or self.timings.answer_timeout
        )

    async def _call_setup(self, line: bytes, kind: CommandKind, timeout: float) -> CallOutcome:
        started = self._now()
        async with self._operation():
            try:
                event = await self._exchange(line, kind, timeout)
                if isinstance(event, CommandTimedOut):
                    # still dialling as far as we know: stop it (the core allows this byte)
                    self._write(b"\r")
                    event = await self._next_op_event()
                    if isinstance(event, CallSetupFailed | CommandTimedOut):
                        return CallOutcome(Outcome.TIMEOUT, seconds=self._now() - started)
            except asyncio.CancelledError:
                await asyncio.shield(self._abort_setup())
                raise
            return self._setup_outcome(event, started)

    def _setup_outcome(self, event: Event, started: float) -> CallOutcome:
        elapsed = self._now() - started
        if isinstance(event, Connected):
            call = self._start_call(event)
            self._log.info(
                "call.connected",
                direction="in" if event.incoming else "out",
                **_brief(event.record),
            )
            return CallOutcome(
                Outcome.CONNECTED, call, event.record.connect_line, event.record.lines, elapsed
            )
        if isinstance(event, CallSetupFailed):
            outcome = (
                Outcome.ABORTED
                if event.aborted
                else _OUTCOME_OF.get(event.result.kind, Outcome.ERROR)
            )
            self._log.info(
                "call.failed", outcome=outcome.value, result=event.result.text.decode("latin-1")
            )
            return CallOutcome(outcome, None, event.result.raw, event.progress, elapsed)
        if isinstance(event, CommandTimedOut):
            return CallOutcome(Outcome.TIMEOUT, seconds=elapsed)
        raise ModemStateError(f"unexpected {event!r} during call set-up")

    async def abort(self) -> None:
        """Stop a dial or answer in progress (the pending `dial()` returns ABORTED)."""
        await self._abort_setup()

    async def _abort_setup(self) -> None:
        if self._core.state not in (State.DIALING, State.ANSWERING):
            return
        wait = self._core.abort_allowed_at() - self._now()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._core.state in (State.DIALING, State.ANSWERING):
            self._write(self._core.abort(self._now()))
            self._reschedule()

    # -- incoming calls ------------------------------------------------------------------

    async def wait_for_call(
        self, *, rings: int = 1, wait_for_caller_id: bool = True, timeout: float | None = None
    ) -> IncomingCall:
        """Wait until the line has rung `rings` times (and caller ID came, if it will).

        Caller ID comes between the first and second ring on most lines and before the
        first on some, so with `wait_for_caller_id` one more ring is allowed for it.
        """
        caller_id: CallerId | None = None
        count = 0
        distinctive = None
        deadline = None if timeout is None else self._now() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - self._now())
            try:
                event = await asyncio.wait_for(self._next_event(), remaining)
            except TimeoutError:
                raise ModemTimeout(f"{self.name}: no call within {timeout} s") from None
            if isinstance(event, CallerIdReceived):
                caller_id = event.caller_id
            elif isinstance(event, RingReceived):
                count = event.count
                distinctive = event.distinctive or distinctive
            elif isinstance(event, RingingStopped):
                self._log.info("call.ringing_stopped", rings=event.rings)
                count, caller_id = 0, None
                continue
            else:
                continue
            if count >= rings and (
                caller_id is not None or not wait_for_caller_id or count >= rings + 1
            ):
                return IncomingCall(count, caller_id, distinctive)

    async def events(self) -> AsyncIterator[Any]:
        """Unsolicited events: RingReceived, CallerIdReceived, RingingStopped, Connected."""
        while True:
            yield await self._next_event()

    async def _next_event(self) -> Any:
        if self._lost is not None or self._port is None:
            raise PortGone(f"{self.name}: port lost")
        event = await self._events.get()
        if isinstance(event, _PortLost):
            raise PortGone(f"{self.name}: port lost ({event.exc or 'closed'})")
        return event

    # -- hanging up ----------------------------------------------------------------------

    async def hangup(self) -> HangupReport:
        """Hang up by the first rung that works: DTR, `+++`/ATH, ATZ, close and reopen."""
        started = self._now()
        async with self._operation():  # a dial in progress: cancel it instead (it aborts)
            method = await self._hangup_ladder()
        if self._call is not None:
            self._call._end("hung up")
        report = HangupReport(method, self._now() - started)
        self._log.info("call.hangup", method=method, seconds=round(report.seconds, 3))
        return report

    async def _hangup_ladder(self) -> str:
        port = self._port
        if port is None:
            raise PortGone(f"{self.name}: port lost")
        if self._core.in_call and port.has_dtr:
            await self._pulse_dtr()
            if await self._dtr_took():
                return "dtr"
        if self._core.state is State.ONLINE_DATA:
            if await self._escape():
                if await self._ath():
                    return "escape"
            else:
                self._dispatch(self._core.assume_command_mode())
        elif self._core.state in (State.ESCAPING, State.ONLINE_COMMAND):
            self._dispatch(self._core.assume_command_mode())
        if await self._ath():
            return "ath"
        with contextlib.suppress(ModemError):
            # no resync first: ATZ resets whatever state the modem is in, and is verified
            response = await self._command(
                b"ATZ", self.timings.reset_timeout, kind=CommandKind.HANGUP, resync=False
            )
            if response.result in (ResultKind.OK, ResultKind.NO_CARRIER):
                await self._apply_settings()
                if await self._on_hook():
                    return "atz"
        self._log.warning("modem.hangup_reopen")
        await self.close()
        await self.connect()
        await self._quiet()
        with contextlib.suppress(ModemError):
            await self._wake()
            await self._expect_ok(b"ATZ", self.timings.reset_timeout, kind=CommandKind.HANGUP)
            await self._apply_settings()
            if await self._on_hook():
                return "reopen"
        raise HangupFailed(f"{self.name}: could not hang up")

    async def _dtr_took(self) -> bool:
        """After a DTR pulse: command mode (AT -> OK) and DCD low, or still online."""
        if self.dcd_trusted and self._port is not None:
            deadline = self._now() + self.timings.hangup_step
            while self._port is not None and self._port.dcd() and self._now() < deadline:
                await asyncio.sleep(self.timings.dcd_poll / 4)
            if self._port is None or self._port.dcd():
                return False  # the carrier is still up: the modem ignored DTR
        self._dispatch(self._core.assume_command_mode())
        if await self._on_hook():
            return True
        if self._core.state is State.IDLE:
            self._core.assume_online()
        return False

    async def _ath(self) -> bool:
        with contextlib.suppress(ModemTimeout, CommandRejected):
            response = await self._command(
                b"ATH0", self.timings.hangup_step, kind=CommandKind.HANGUP
            )
            if response.result in (ResultKind.OK, ResultKind.NO_CARRIER):
                return await self._on_hook()
        return False

    async def _on_hook(self) -> bool:
        """Verified: the modem answers AT in command mode, and DCD is low where known."""
        await self._quiet()
        self._core.discard_input()
        for _ in range(2):
            try:
                response = await self._command(b"AT", self.timings.init_timeout, resync=False)
            except ModemTimeout:
                return False
            if response.ok:
                break
            # the NO CARRIER of our own hang-up may answer this AT: ask again
        else:
            return False
        self._core.resynchronised()
        return not (self.dcd_trusted and self._port is not None and self._port.dcd())

    async def _pulse_dtr(self) -> None:
        assert self._port is not None
        await self._port.set_dtr(False)
        await asyncio.sleep(self.timings.dtr_drop)
        if self._port is not None:
            await self._port.set_dtr(True)

    async def _escape(self) -> bool:
        """Guarded `+++`: silence, the three characters, silence, then OK."""
        guard = self.timings.guard + self.timings.guard_margin
        while True:
            wait = self._core.last_write_at + guard - self._now()
            if wait <= 0 and (self._port is None or self._port.write_buffer_size() == 0):
                break
            await asyncio.sleep(max(wait, 0.01))
        if self._core.state is not State.ONLINE_DATA:
            return self._core.state is State.ONLINE_COMMAND
        self._op_events = asyncio.Queue()
        self._write(self._core.start_escape(self._now(), self.timings.guard))
        self._reschedule()
        while True:
            event = await self._next_op_event()
            if isinstance(event, EscapeEnded):
                return event.ok
            if isinstance(event, CarrierLost):
                return False

    # -- data mode -----------------------------------------------------------------------

    def _start_call(self, event: Connected) -> DataCall:
        self._held_writes.clear()
        call = DataCall(self, event.record, incoming=event.incoming)
        self._call = call
        if event.data:
            call._feed(event.data)
        if self.dcd_trusted and self._port is not None and self._port.has_dcd:
            self._spawn(self._watch_carrier(call))
        return call

    async def _watch_carrier(self, call: DataCall) -> None:
        port = self._port
        while not call.ended.is_set() and port is not None and port is self._port:
            await asyncio.sleep(self.timings.dcd_poll)
            if port.dcd() is False and self._core.in_call:
                self._dispatch(self._core.carrier_dropped(self._now()))
                self._reschedule()
                return

    async def _verify_carrier(self) -> None:
        """`NO CARRIER` closed the data and nothing followed: find out."""
        if self._busy:
            return
        with contextlib.suppress(ModemError):
            await self.verify_carrier()

    async def verify_carrier(self) -> bool:
        """Is the call still up? DCD where it can be trusted; otherwise a guarded escape:
        OK means alive (ATO resumes the call), silence means the modem is in command
        mode and the call is gone. Meanwhile our writes are held, not lost."""
        call = self._call
        if call is None or not call.open:
            return False
        port = self._port
        if self.dcd_trusted and port is not None:
            if port.dcd() is False:
                self._dispatch(self._core.carrier_dropped(self._now()))
                return False
            self._dispatch(self._core.release_held())
            self._release_writes()
            return True
        async with self._operation(internal=True):
            if self._core.state is State.ONLINE_DATA and await self._escape():
                event = await self._exchange(
                    b"ATO", CommandKind.ONLINE, self.timings.online_timeout
                )
                if isinstance(event, Connected):
                    self._dispatch(self._core.release_held())
                    self._release_writes()
                    return True
            if self._core.in_call:
                self._dispatch(self._core.assume_command_mode())
            with contextlib.suppress(ModemError):
                await self._on_hook()
            return False

    def _write_data(self, data: bytes) -> None:
        core = self._core
        if core.state is State.ONLINE_DATA and not core.suspecting and not self._held_writes:
            core.note_data_written(self._now())
            self._write(data)
        elif core.in_call:
            # Carrier loss suspected, or escaped to check: a modem in command mode would
            # take these bytes for commands (`A/` redials). Hold them until we know.
            room = HELD_WRITES_LIMIT - len(self._held_writes)
            self._held_writes += data[: max(0, room)]

    def _release_writes(self) -> None:
        core = self._core
        if self._held_writes and core.state is State.ONLINE_DATA and not core.suspecting:
            data, self._held_writes = bytes(self._held_writes), bytearray()
            core.note_data_written(self._now())
            self._write(data)

    async def _drain(self) -> None:
        port = self._port
        while port is not None and port.write_buffer_size() > WRITE_BUFFER_HIGH:
            self._writable.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writable.wait(), 0.05)

    # -- the shell -----------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise PortGone(f"{self.name}: port lost")
        if self._transcript:
            self._log.debug("modem.tx", data=escape_bytes(data, 300))
        port.write(data)

    def _on_data(self, data: bytes) -> None:
        self._last_rx = self._now()
        if self._transcript:
            self._log.debug("modem.rx", data=escape_bytes(data, 300))
        self._dispatch(self._core.receive(data, self._last_rx))
        self._release_writes()  # a suspected NO CARRIER turned out to be data
        self._reschedule()

    def _on_lost(self, exc: BaseException | None) -> None:
        if self._port is None:
            return
        self._lost = exc or ConnectionResetError("closed")
        self._port = None
        self._core.port_lost()
        self._log.error("port.lost", error=str(exc) if exc else "closed")
        marker = _PortLost(exc)
        if self._op_events is not None:
            self._op_events.put_nowait(marker)
        self._post_event(marker)
        if self._call is not None:
            self._call._end("port lost")

    def _reschedule(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._core.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        self._dispatch(self._core.tick(self._now()))
        self._reschedule()

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, DataReceived):
                if self._call is not None:
                    self._call._feed(event.data)
            elif isinstance(event, RingReceived | CallerIdReceived | RingingStopped):
                self._post_event(event)
            elif isinstance(event, Connected) and self._op_events is None:
                call = self._start_call(event)  # the modem answered by itself (S0 > 0)
                self._post_event(event)
                self._log.info(
                    "call.connected", direction="in", auto_answer=True, **_brief(event.record)
                )
                del call
            elif isinstance(event, CarrierLost):
                self._held_writes.clear()
                if self._call is not None:
                    self._call._end(event.reason)
                if self._op_events is not None:
                    self._op_events.put_nowait(event)
            elif isinstance(event, CarrierSuspect):
                self._spawn(self._verify_carrier())
            elif isinstance(event, StrayLine):
                self._log.info(
                    "modem.stray",
                    line=escape_bytes(event.text),
                    result=event.kind.value if event.kind else None,
                )
            elif isinstance(event, LineTooLong):
                self._log.warning("modem.line_too_long", head=escape_bytes(event.head))
            elif self._op_events is not None:
                self._op_events.put_nowait(event)
            else:
                self._log.info("modem.unclaimed", event=type(event).__name__)

    def _post_event(self, event: Any) -> None:
        if self._events.full():
            self._events.get_nowait()  # a flood of RINGs: the oldest goes
        self._events.put_nowait(event)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("modem.task_failed", error=str(task.exception()))

    @contextlib.asynccontextmanager
    async def _operation(self, *, internal: bool = False) -> AsyncIterator[None]:
        """One operation at a time. A caller's operation waits for the driver's own
        (carrier verification) to finish; two of the caller's at once is an error."""
        while not internal and self._internal is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._internal)
        if self._busy:
            raise ModemBusy(
                f"{self.name}: another operation is in progress ({self._core.state.value})"
            )
        if self._port is None:
            raise PortGone(f"{self.name}: port lost; reopen() it")
        self._busy = True
        if internal:
            self._internal = asyncio.current_task()
        try:
            yield
        finally:
            self._busy = False
            self._op_events = None
            if internal:
                self._internal = None


def _brief(record: ConnectRecord) -> dict[str, Any]:
    return {
        "rate": record.rate,
        "dte_rate": record.dte_rate,
        "modulation": record.modulation,
        "ec": record.error_correction,
        "compression": record.compression,
    }


class CallEnded(ModemError):
    """Writing to a call that has ended."""


class DataCall:
    """The byte stream of a connected call."""

    def __init__(self, modem: HayesModem, record: ConnectRecord, *, incoming: bool) -> None:
        self._modem = modem
        self.record = record
        self.incoming = incoming
        self.started = modem._now()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._paused = False

    @property
    def open(self) -> bool:
        return not self.ended.is_set()

    def _feed(self, data: bytes) -> None:
        if self.ended.is_set():
            return
        self.bytes_in += len(data)
        self._buffer += data
        self._readable.set()
        port = self._modem.port
        if len(self._buffer) > READ_BUFFER_LIMIT and port is not None and not self._paused:
            self._paused = True
            port.pause_reading()

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.ended.set()
        self._readable.set()
        modem = self._modem
        modem._log.info(
            "call.summary",
            direction="in" if self.incoming else "out",
            end=reason,
            seconds=round(modem._now() - self.started, 3),
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            **_brief(self.record),
        )

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes`; b"" once the call has ended and everything was read."""
        while not self._buffer and not self.ended.is_set():
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._paused and len(self._buffer) < READ_BUFFER_LIMIT // 2:
            port = self._modem.port
            self._paused = False
            if port is not None:
                port.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self.ended.is_set():
            raise CallEnded(f"the call has ended ({self.end_reason})")
        self.bytes_out += len(data)
        self._modem._write_data(data)

    async def drain(self) -> None:
        await self._modem._drain()

    async def hangup(self) -> HangupReport:
        return await self._modem.hangup()
