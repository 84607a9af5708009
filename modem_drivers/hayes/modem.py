"""`HayesModem`: the asyncio shell around `ModemCore` and the procedures.

The shell owns the port, the clock and the tasks; every decision about what a byte means
is the core's, and every multi-step procedure (set-up, resynchronisation, dialling and
its clean-up, the carrier check, the hang-up ladder) is a step machine in
`procedures`, which `_run` executes one step at a time. One operation runs at a time (a
second one raises `ModemBusy` rather than queueing behind a dial), unsolicited events
(RING, caller ID) go to a queue of their own, and data after CONNECT goes to the
`DataCall`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from ..text import escape_bytes
from . import procedures as proc
from .call import DataCall, brief
from .callerid import CallerId
from .classify import may_inform
from .dialstring import dial_string
from .drain import LineAccount, PortOutput, modem_has_taken_all
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
from .profiles import DriverProfile, SetupOptions, get_driver_profile
from .results import (
    CallOutcome,
    CommandResponse,
    HangupReport,
    IncomingCall,
    ModemInfo,
    Outcome,
)
from .state import (
    CallerIdReceived,
    CallSetupFailed,
    CarrierLost,
    CarrierSuspect,
    CommandCompleted,
    CommandKind,
    CommandTimedOut,
    Connected,
    DataReceived,
    EscapeEnded,
    Event,
    LineTooLong,
    ModemCore,
    ProbeEnded,
    RingingStopped,
    RingReceived,
    State,
    StrayLine,
)
from .timings import Timings

log = structlog.get_logger("callhome.modem")

HELD_WRITES_LIMIT = 64 * 1024
ECHO_WATCH = 64
"""Bytes kept of what answered the last command, to tell an echo."""


@dataclass(frozen=True)
class _SetUp:
    """A full set-up this process did (see `HayesModem.initialize`)."""

    at: float
    """`time.monotonic()` when it finished."""
    choice: tuple[Any, ...]
    """The profile asked for and the user's settings: another choice sets up anew."""
    profile: DriverProfile
    info: ModemInfo


_RECENT_SETUPS: dict[str, _SetUp] = {}
"""By port URL: what this process set up last on each port, while nothing went wrong
with that modem since."""

RESETTING = (b"&D3", b"&F", b"Z")
"""Settings after which closing the port (DTR drop) resets the modem: no reuse."""
QUIET_LIMIT = 20
"""`Quiet` waits at most this many times its quiet period."""


def _uart_output(port: SerialPort) -> tuple[int | None, bool | None]:
    """The kernel's output queue and CTS of a real UART; (None, None) where the port
    cannot tell (a pty answers 0 to TIOCOUTQ whatever it holds, and has no CTS)."""
    if port.kind != "tty":
        return None, None
    device = getattr(port, "serial", None)
    try:
        return int(device.out_waiting), bool(device.cts)  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError, TypeError):
        return None, None


DCD_LOW_READINGS = 2
"""Consecutive low DCD readings, one `dcd_poll` apart, that end a call."""


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
        init: Sequence[str] = (),
        skip: Sequence[str] = (),
    ) -> None:
        """`init` and `skip` change the profile's settings (see `SetupOptions`);
        ValueError names a wrong entry."""
        self.url = url
        self.name = name or url
        self.timings = timings or Timings()
        self.baudrate = baudrate
        self.setup = SetupOptions.from_config(init, skip)
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
        self._suspect = asyncio.Event()
        self._call: DataCall | None = None
        self._held_writes = bytearray()
        self._account = LineAccount()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_rx = 0.0
        self._lost: BaseException | None = None
        self.dcd_trusted = False
        self.info: ModemInfo | None = None
        self._log = log.bind(port=self.name)
        self._transcript = False
        self._answer_bytes = bytearray()

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

    async def connect(self, *, fresh_core: bool = True) -> None:
        """Open the port. `fresh_core=False` keeps the state machine (the hang-up
        ladder's reopen rung: the procedure running it holds that core)."""
        self._loop = asyncio.get_running_loop()
        self._transcript = self._log.is_enabled_for(logging.DEBUG)
        protocol = _Protocol(self)
        self._protocol = protocol
        self._port = await open_port(self.url, protocol, baudrate=self.baudrate)
        self._lost = None
        if fresh_core:
            self._core = self._new_core()
        self._core.opened()
        self._last_rx = self._loop.time()
        self._log.info("port.opened", **self._port.describe())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._close_port()
        if self._call is not None:
            self._call._end("port closed")

    async def _close_port(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        port, self._port = self._port, None
        protocol, self._protocol = self._protocol, None
        if port is not None:
            await port.close()
            if protocol is not None:
                # the port is closed (and its lock released) only when this fires
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(protocol.closed), 2.0)
        self._core.port_lost()

    async def __aenter__(self) -> HayesModem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def reopen(self, retry_delays: Iterable[float] = ()) -> ModemInfo:
        """Open the port again (after `PortGone`) and re-initialise; on failure, wait each
        of `retry_delays` in turn (a `Backoff`) and try again, then give up."""
        delays = iter(retry_delays)
        attempt = 0
        while True:
            attempt += 1
            with contextlib.suppress(ModemError):
                await self.close()
            try:
                await self.connect()
                return await self.initialize(reuse=False)  # it may have lost power
            except (
                PortOpenError,
                PortGone,
                ModemNotResponding,
                InitialisationError,
                ModemTimeout,
            ) as exc:
                delay = next(delays, None)
                self._log.warning(
                    "port.reopen_failed",
                    attempt=attempt,
                    error=str(exc),
                    retry_in=None if delay is None else round(delay, 3),
                )
                if delay is None:
                    raise
            await asyncio.sleep(delay)

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

    def _port_facts(self) -> proc.Port:
        port = self._port
        return proc.Port(has_dtr=port is not None and port.has_dtr, dcd_trusted=self.dcd_trusted)

    # -- initialisation ------------------------------------------------------------------

    async def initialize(self, *, reuse: bool = True) -> ModemInfo:
        """Drain, wake, reset, identify, then apply the settings one line at a time: the
        required ones must be accepted, an optional one refused marks its feature absent.

        The rule for a shorter set-up: when this process set up the modem on this port
        in full less than `Timings.setup_reuse` ago (10 minutes), with the same profile
        and settings, and nothing went wrong with it since (no timeout, no lost port, no
        failed or resetting hang-up), one `AT` checks it instead: a verbose OK without
        echo shows it is awake and as we left it (closing the port in between drops
        DTR, which with &D2 hangs up and keeps the settings). Anything else, or settings
        that make a DTR drop reset the modem (&D3, &F, Z), and the set-up runs in full.
        The bank keeps its ports open; the agent closes its port between answering
        windows (a person's command may take the modem there), and the one-shot
        commands (`callhome send`, `line-test`) close theirs at the end: this spares
        them the set-up of a modem that nothing touched since."""
        async with self._operation():
            recent = self._recent_setup() if reuse else None
            if recent is not None:
                if await self._run(proc.quick_wake(self._core, self.timings)):
                    return self._reuse(recent)
                _RECENT_SETUPS.pop(self.url, None)
                self._log.info("modem.setup_not_reused", reason="no verbose OK without echo")
            self.dcd_trusted = False
            report: proc.SetupReport = await self._run(
                proc.initialise(
                    self._core,
                    self.timings,
                    self._port_facts(),
                    profile=self._fixed_profile,
                    options=self.setup,
                )
            )
            self.profile = report.profile
            self.dcd_trusted = self._check_dcd()
            assert self._port is not None
            self.info = ModemInfo(
                report.profile.name,
                report.identity,
                self._port.describe(),
                self.dcd_trusted,
                report.settings,
            )
            self._remember_setup(report.profile, self.info)
            summary = proc.settings_summary(report.settings)
            self._log.info(
                "modem.ready",
                profile=report.profile.name,
                identity=" / ".join(
                    escape_bytes(b" ".join(v)) for v in report.identity.values() if v
                ),
                dcd_trusted=self.dcd_trusted,
                features=summary["present"],
                refused=summary["refused"],
            )
            return self.info

    def _setup_choice(self) -> tuple[Any, ...]:
        fixed = self._fixed_profile.name if self._fixed_profile else None
        return (fixed, self.setup, self.baudrate)

    def _recent_setup(self) -> _SetUp | None:
        recent = _RECENT_SETUPS.get(self.url)
        if recent is None or recent.choice != self._setup_choice():
            return None
        if time.monotonic() - recent.at > self.timings.setup_reuse:
            return None
        return recent

    def _remember_setup(self, profile: DriverProfile, info: ModemInfo) -> None:
        sent = [r.setting.command.upper() for r in info.settings if r.accepted]
        if any(marker in command for command in sent for marker in RESETTING):
            _RECENT_SETUPS.pop(self.url, None)
            return
        _RECENT_SETUPS[self.url] = _SetUp(time.monotonic(), self._setup_choice(), profile, info)

    def _reuse(self, recent: _SetUp) -> ModemInfo:
        self.profile = recent.profile
        self._core.use_profile(recent.profile.numeric_table(), recent.profile.reports)
        self.dcd_trusted = self._check_dcd()
        assert self._port is not None
        self.info = replace(recent.info, port=self._port.describe(), dcd_trusted=self.dcd_trusted)
        self._log.info("modem.ready", profile=recent.profile.name, reused_setup=True)
        return self.info

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
        wait = timeout or self.timings.command_timeout
        async with self._operation():
            event = await self._run(
                proc.command(self._core, self.timings, line, wait, expects_info=may_inform(line))
            )
        response = self._response(line, event, wait)
        if check and not response.ok:
            raise CommandRejected(line, response.text.decode("latin-1"))
        return response

    def _response(self, line: bytes, event: Event, timeout: float) -> CommandResponse:
        if isinstance(event, CommandCompleted):
            result = event.result
            return CommandResponse(line, result.kind, result.text, event.info, result.raw)
        if isinstance(event, CommandTimedOut):
            self._log.warning(
                "modem.timeout",
                command=line.decode("latin-1"),
                consecutive=self._core.consecutive_timeouts,
            )
            raise ModemTimeout(f"{self.name}: no answer to {line.decode('latin-1')}")
        raise ModemStateError(f"unexpected {event!r} after {line!r}")

    # -- dialling ------------------------------------------------------------------------

    async def dial(self, number: str, *, timeout: float | None = None) -> CallOutcome:
        """Dial a number (`T`, `P`, `W`, `,`, `!`, `@` allowed) or a `host:port` address
        and return what happened. A failed dial leaves the modem on hook and in step."""
        line = b"ATD" + dial_string(number).encode("ascii")
        started = self._now()
        async with self._operation():
            try:
                result: proc.DialResult = await self._run(
                    proc.dial(self._core, self.timings, line, timeout or self.timings.dial_timeout)
                )
            except asyncio.CancelledError:
                with contextlib.suppress(ModemError):
                    await asyncio.shield(self._cancelled_setup())
                raise
            if result.swallowed:
                self._log.warning("modem.dial_swallowed", times=result.swallowed)
            return self._setup_outcome(result.event, started)

    async def answer(self, *, timeout: float | None = None) -> CallOutcome:
        """Answer the call ringing in. The ring count starts afresh for the next call."""
        started = self._now()
        async with self._operation():
            self._discard_ring_events()
            try:
                event = await self._run(
                    proc.call_setup(
                        self._core,
                        self.timings,
                        b"ATA",
                        CommandKind.ANSWER,
                        timeout or self.timings.answer_timeout,
                    )
                )
            except asyncio.CancelledError:
                with contextlib.suppress(ModemError):
                    await asyncio.shield(self._cancelled_setup())
                raise
            if not isinstance(event, Connected):
                with contextlib.suppress(ModemError):
                    await self._run(proc.after_failed_call(self._core, self.timings))
            return self._setup_outcome(event, started)

    def _setup_outcome(self, event: Event | None, started: float) -> CallOutcome:
        elapsed = self._now() - started
        if isinstance(event, Connected):
            call = self._start_call(event)
            self._log.info(
                "call.connected",
                direction="in" if event.incoming else "out",
                **brief(event.record),
            )
            return CallOutcome(
                Outcome.CONNECTED,
                call,
                event.record.connect_line,
                event.record.lines,
                elapsed,
            )
        if isinstance(event, CallSetupFailed):
            outcome = Outcome.ABORTED if event.aborted else Outcome.of(event.result.kind)
            self._log.info(
                "call.failed",
                outcome=outcome.value,
                result=event.result.text.decode("latin-1"),
            )
            return CallOutcome(outcome, None, event.result.raw, event.progress, elapsed)
        return CallOutcome(Outcome.TIMEOUT, seconds=elapsed)

    async def abort(self) -> None:
        """Stop a dial or answer in progress (the pending `dial()` returns ABORTED)."""
        await self._abort_setup()

    async def _abort_setup(self) -> None:
        if not self._core.may_abort():
            return
        await self._perform(proc.Abort())

    async def _cancelled_setup(self) -> None:
        """A dial or answer whose task was cancelled: abort it and wait (bounded) for the
        modem's answer, so the next operation finds it idle; a CONNECT that won the race
        with the abort is hung up, not left as a call nobody reads."""
        if not self._core.may_abort():
            return
        await self._perform(proc.Abort())
        try:
            event = await asyncio.wait_for(
                self._next_op_event(), self.timings.core.abort_timeout + 1.0
            )
        except TimeoutError:
            return
        if isinstance(event, Connected):
            self._start_call(event)
            self._log.info("call.connected_after_abort")
            await self._run(proc.hangup(self._core, self.timings, self._port_facts()))

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

    def _discard_ring_events(self) -> None:
        """The call being answered was announced by these; the next call's rings and
        caller ID arrive after this point."""
        kept = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if not isinstance(event, RingReceived | CallerIdReceived | RingingStopped):
                kept.append(event)
        for event in kept:
            self._events.put_nowait(event)

    # -- hanging up ----------------------------------------------------------------------

    async def hangup(self) -> HangupReport:
        """Hang up by the first rung that works: DTR, `+++`/ATH, ATZ, close and reopen."""
        started = self._now()
        async with self._operation():  # a dial in progress: cancel it instead (it aborts)
            method = await self._run(proc.hangup(self._core, self.timings, self._port_facts()))
        report = self._hung_up(method, started)
        await self._after_reset(method)
        return report

    async def finish_call(self, patience: float | None = None) -> HangupReport:
        """The protocol on the call is over: the far end has `patience` seconds to hang
        up (its NO CARRIER is believed at once), then this end hangs up."""
        started = self._now()
        wait = self.timings.hangup_patience if patience is None else patience
        async with self._operation():
            method = await self._run(
                proc.finish_call(self._core, self.timings, self._port_facts(), wait)
            )
        report = self._hung_up(method, started)
        await self._after_reset(method)
        return report

    def expect_call_end(self) -> None:
        """The protocol on the call is over (the session closed or completed cleanly):
        from now on a `NO CARRIER` ending the data, or DCD dropping, is the far end
        hanging up as expected, believed at once (an `AT` probe, or one low DCD
        reading, confirms it) instead of after the quiet period and the guarded escape
        that check a carrier loss in the middle of a call. Writes nothing; the call
        stays up until the far end hangs up or `finish_call` does."""
        self._core.expect_call_end(self._now())
        self._reschedule()

    async def _after_reset(self, method: str | None) -> None:
        """The ATZ and reopen rungs leave the modem with its stored settings, not ours
        (&C1, S0=0, E0 ...): set it up again, or the next call runs on the wrong ones."""
        if method in ("atz", "reopen"):
            _RECENT_SETUPS.pop(self.url, None)
            try:
                await self.initialize(reuse=False)
            except ModemError as exc:
                self._log.warning("modem.reinitialise_failed", error=str(exc))

    def _hung_up(self, method: str | None, started: float) -> HangupReport:
        if method is None:
            _RECENT_SETUPS.pop(self.url, None)
            raise HangupFailed(f"{self.name}: could not hang up")
        if self._call is not None:
            self._call._end("hung up" if method != "remote" else "far end hung up")
        report = HangupReport(method, self._now() - started)
        self._log.info("call.hangup", method=method, seconds=round(report.seconds, 3))
        return report

    # -- data mode -----------------------------------------------------------------------

    def _start_call(self, event: Connected) -> DataCall:
        self._held_writes.clear()
        record = event.record
        self._account.start(
            record.tx_rate or record.rate or self.baudrate, self._now(), self.timings.line_time
        )
        self._suspect.clear()
        call = DataCall(self, event.record, incoming=event.incoming)
        self._call = call
        if event.data:
            call._feed(event.data)
        if self.dcd_trusted and self._port is not None and self._port.has_dcd:
            self._spawn(self._watch_carrier(call))
        return call

    async def _watch_carrier(self, call: DataCall) -> None:
        port = self._port
        low = 0
        while not call.ended.is_set() and port is not None and port is self._port:
            await asyncio.sleep(self.timings.dcd_poll)
            if port.dcd() is not False or not self._core.in_call:
                low = 0
                continue
            low += 1
            # one low reading is not a lost carrier: control lines reported from afar
            # (RFC 2217's NOTIFY-MODEMSTATE) can still show the state from before the
            # CONNECT, and a lost carrier stays lost for the next poll; once the end is
            # expected (`expect_call_end`), the first low reading is that end
            if low >= (1 if self._core.call_ending else DCD_LOW_READINGS):
                self._dispatch(self._core.carrier_dropped(self._now()))
                self._reschedule()
                return

    async def _verify_carrier(self) -> None:
        """`NO CARRIER` closed the data and nothing followed: find out (unless an
        operation under way, which then does it itself)."""
        if self._busy:
            return
        with contextlib.suppress(ModemError):
            await self.verify_carrier()

    async def verify_carrier(self) -> bool:
        """Is the call still up? (See `procedures.verify_carrier`.) Meanwhile our writes
        are held, not lost."""
        call = self._call
        if call is None or not call.open:
            return False
        async with self._operation(internal=True):
            return await self._verify_inline()

    async def _verify_inline(self) -> bool:
        self._suspect.clear()
        alive: bool = await self._run(
            proc.verify_carrier(self._core, self.timings, self._port_facts())
        )
        if alive:
            self._release_writes()
        return alive

    def _write_data(self, data: bytes) -> None:
        core = self._core
        if core.state is State.ONLINE_DATA and not core.suspecting and not self._held_writes:
            core.note_data_written(self._now())
            self._account.wrote(len(data), self._now())
            self._write_accounted(data)
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
            self._account.wrote(len(data), self._now())
            self._write_accounted(data)

    def _write_accounted(self, data: bytes) -> None:
        """Write call data, noting for the line account how much the port took before
        back-pressure showed and how much still waits in the driver's buffer."""
        port = self._port
        before = port.write_buffer_size() if port is not None else 0
        self._write(data)
        if port is not None:
            after = port.write_buffer_size()
            if before == 0 and after > 0:
                self._account.accepted(len(data) - after)
            self._account.observed(after, self._now())

    def _observe_output(self) -> int:
        """The driver's buffer now, told to the line account (see `drain`)."""
        port = self._port
        buffered = port.write_buffer_size() if port is not None else 0
        self._account.observed(buffered, self._now())
        return buffered

    async def _drain(self) -> None:
        port = self._port
        while port is not None and self._observe_output() > WRITE_BUFFER_HIGH:
            self._writable.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writable.wait(), 0.05)

    # -- the executor of procedures --------------------------------------------------------

    async def _run(self, procedure: proc.Procedure) -> Any:
        """Run a step machine to its end: perform each step it asks for, tell it what
        happened. An exception from a step (the port gone) ends the procedure."""
        reply: Any = None
        try:
            while True:
                try:
                    step = procedure.send(reply)
                except StopIteration as done:
                    return done.value
                reply = await self._perform(step)
        finally:
            procedure.close()

    async def _perform(self, step: proc.Step) -> Any:
        if isinstance(step, proc.Send):
            return await self._send(step)
        if isinstance(step, proc.AwaitOutcome):
            return await self._next_op_event()
        if isinstance(step, proc.Abort):
            wait = self._core.abort_allowed_at() - self._now()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._core.may_abort():
                self._write(self._core.abort(self._now()))
                self._reschedule()
            return None
        if isinstance(step, proc.WriteRaw):
            self._core.note_data_written(self._now())
            self._write(step.data)
            return None
        if isinstance(step, proc.Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, proc.Quiet):
            await self._quiet(step.seconds)
            return None
        if isinstance(step, proc.SetDtr):
            if self._port is not None and self._port.has_dtr:
                await self._port.set_dtr(step.level)
            return None
        if isinstance(step, proc.WaitDcd):
            return await self._wait_dcd(step.level, step.timeout)
        if isinstance(step, proc.WaitDrained):
            return await self._wait_drained(step.timeout)
        if isinstance(step, proc.Escape):
            return await self._escape(step.guard, step.margin, step.after)
        if isinstance(step, proc.Probe):
            return await self._probe(step.timeout)
        if isinstance(step, proc.WaitCallEnd):
            return await self._wait_call_end(step.timeout)
        if isinstance(step, proc.Reopen):
            self._log.warning("modem.hangup_reopen")
            await self._close_port()
            await self.connect(fresh_core=False)
            return None
        if isinstance(step, proc.Now):
            return self._now()
        if isinstance(step, proc.Echoed):
            return b"AT\r" in bytes(self._answer_bytes).upper()
        if isinstance(step, proc.Note):
            self._log.info(step.event, **dict(step.fields))
            return None
        if isinstance(step, proc.Emit):
            self._dispatch(list(step.events))
            return None
        raise ModemStateError(f"unknown step {step!r}")

    async def _send(self, step: proc.Send) -> Event | proc.Withheld:
        if self._port is None:
            raise PortGone(f"{self.name}: port lost; reopen() it")
        await self._pace()
        if self._port is None:  # lost while we waited
            raise PortGone(f"{self.name}: port lost; reopen() it")
        if (
            step.kind is CommandKind.HANGUP
            and step.line.upper().startswith(b"ATH")
            and self._core.state is State.RINGING
        ):
            # a RING came while this step waited its turn: ATH would reject that call
            self._log.info("modem.hangup_withheld", reason="a call rings in")
            return proc.Withheld()
        self._op_events = asyncio.Queue()
        self._answer_bytes.clear()
        data = self._core.start_command(
            step.line, step.kind, self._now(), step.timeout, expects_info=step.expects_info
        )
        self._write(data)
        self._reschedule()
        return await self._next_op_event()

    async def _next_op_event(self) -> Event:
        assert self._op_events is not None
        event = await self._op_events.get()
        if isinstance(event, _PortLost):
            raise PortGone(f"{self.name}: port lost ({event.exc or 'closed'})")
        return event

    async def _quiet(self, seconds: float) -> None:
        """Wait until nothing has come from the modem for `seconds`, but no longer than
        `QUIET_LIMIT` times that: a line still in data mode may never fall silent."""
        give_up = self._now() + seconds * QUIET_LIMIT
        while True:
            remaining = min(self._last_rx + seconds, give_up) - self._now()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def _pace(self) -> None:
        # re-read each time round: a NO CARRIER arriving meanwhile ends the wait early
        while (wait := self._core.command_allowed_at() - self._now()) > 0:
            await asyncio.sleep(min(wait, max(self.timings.core.pacing, 0.005)))

    async def _wait_dcd(self, level: bool, timeout: float) -> bool:
        deadline = self._now() + timeout
        while True:
            port = self._port
            if port is None:
                return False
            if port.dcd() is level:
                return True
            if self._now() >= deadline:
                return False
            await asyncio.sleep(self.timings.dcd_poll / 4)

    def _port_output(self) -> PortOutput:
        port = self._port
        if port is None:
            return PortOutput(0, 0, None)
        return PortOutput(port.write_buffer_size(), *_uart_output(port))

    async def _wait_drained(self, timeout: float) -> float:
        """Until the modem has taken the last byte written (see `drain`); answers when."""
        deadline = self._now() + timeout
        port_held = False
        while True:
            now = self._now()
            if self._port is None or now >= deadline:
                return now
            if self._core.state is not State.ONLINE_DATA:
                return now  # the call is gone: nothing more will drain
            self._observe_output()
            output = self._port_output()
            if modem_has_taken_all(output, self._account, now):
                if port_held:
                    return now  # the port emptied during the last poll interval
                # it may have drained long ago: the account says when, at the latest
                return min(now, max(self._core.last_write_at, self._account.drained_at))
            port_held = port_held or not output.empty
            # the account's end is known in advance; the port's buffers are polled
            wait = max(self._account.remaining(now), 0.005)
            await asyncio.sleep(min(wait, deadline - now))

    async def _escape(self, guard: float, margin: float, after: float = 0.0) -> bool:
        """Guarded `+++`: silence, the three characters, silence, then OK. The silence
        counts from `after` at the earliest (when the modem took the last byte)."""
        silence = guard + margin
        while True:
            wait = max(self._core.last_write_at, after) + silence - self._now()
            if wait <= 0 and (self._port is None or self._port.write_buffer_size() == 0):
                break
            await asyncio.sleep(max(wait, 0.01))
        if self._core.state is not State.ONLINE_DATA:
            return self._core.state is State.ONLINE_COMMAND
        self._op_events = asyncio.Queue()
        self._write(self._core.start_escape(self._now(), guard))
        self._reschedule()
        while True:
            event = await self._next_op_event()
            if isinstance(event, EscapeEnded):
                return event.ok
            if isinstance(event, CarrierLost):
                return False

    async def _probe(self, timeout: float) -> bool:
        if self._core.state is not State.ONLINE_DATA:
            return not self._core.in_call
        self._op_events = asyncio.Queue()
        self._write(self._core.start_probe(self._now(), timeout))
        self._reschedule()
        while True:
            event = await self._next_op_event()
            if isinstance(event, ProbeEnded):
                return event.answered
            if isinstance(event, CarrierLost):
                return True

    async def _wait_call_end(self, timeout: float) -> bool:
        """Until the call is over or `timeout`; a carrier loss suspected meanwhile is
        checked here (the operation holding the modem is this one)."""
        call = self._call
        deadline = self._now() + timeout
        while call is not None and call.open and self._core.in_call:
            remaining = deadline - self._now()
            if remaining <= 0:
                return False
            if self._core.suspecting:
                self._suspect.set()
            ended = asyncio.ensure_future(call.ended.wait())
            suspect = asyncio.ensure_future(self._suspect.wait())
            try:
                await asyncio.wait(
                    {ended, suspect}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (ended, suspect):
                    task.cancel()
            if self._suspect.is_set() and call.open:
                await self._verify_inline()
        return True

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
        if len(self._answer_bytes) < ECHO_WATCH:
            self._answer_bytes += data[: ECHO_WATCH - len(self._answer_bytes)]
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
        _RECENT_SETUPS.pop(self.url, None)
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
                self._start_call(event)  # the modem answered by itself (S0 > 0)
                self._post_event(event)
                self._log.info(
                    "call.connected",
                    direction="in",
                    auto_answer=True,
                    **brief(event.record),
                )
            elif isinstance(event, CarrierLost):
                self._held_writes.clear()
                self._account.stop()
                if self._call is not None:
                    self._call._end(event.reason)
                if self._op_events is not None:
                    self._op_events.put_nowait(event)
            elif isinstance(event, CarrierSuspect):
                self._suspect.set()
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
        except ModemError:
            # something went wrong with this modem: its next set-up runs in full
            _RECENT_SETUPS.pop(self.url, None)
            raise
        finally:
            self._busy = False
            self._op_events = None
            if internal:
                self._internal = None
