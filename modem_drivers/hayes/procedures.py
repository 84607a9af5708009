"""The driver's multi-step procedures as sans-IO step machines.

Set-up, resynchronisation, the carrier check, dialling with its clean-up and the hang-up
ladder each take several commands, waits and control-line changes. Each is written here
as a generator that *asks* for one step at a time (`Send` a command line, `Sleep`,
`SetDtr`, `Escape`, ...) and is told what happened; it never touches a port or a
clock. `HayesModem` runs them with one small executor against the real port; the tests
run them against a scripted modem in virtual time.

A procedure may also change the `ModemCore` directly (it is sans-IO too); when that
produces events for the shell (a call that ended), it yields `Emit(events)`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from .classify import Final, ResultKind, VerboseMode
from .errors import InitialisationError, ModemNotResponding
from .profiles import DriverProfile, Setting, SetupOptions, detect_profile, plan_settings
from .state import (
    CallSetupFailed,
    CarrierLost,
    CommandCompleted,
    CommandKind,
    CommandTimedOut,
    Connected,
    Event,
    ModemCore,
    State,
)
from .timings import Timings

# -- the steps a procedure can ask for --------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Write a command line and wait for its outcome: `CommandCompleted`,
    `CommandTimedOut`, `CallSetupFailed` or `Connected`."""

    line: bytes
    kind: CommandKind
    timeout: float
    expects_info: bool = False


@dataclass(frozen=True)
class AwaitOutcome:
    """Wait for the outcome of the command or escape already under way."""


@dataclass(frozen=True)
class Abort:
    """Stop a dial or answer in progress: one character, once V.250 allows it."""


@dataclass(frozen=True)
class WriteRaw:
    """Bytes to the modem outside any command (a CR to end a stray command line)."""

    data: bytes


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Quiet:
    """Wait until nothing has come from the modem for `seconds`."""

    seconds: float


@dataclass(frozen=True)
class SetDtr:
    level: bool


@dataclass(frozen=True)
class WaitDcd:
    """Wait until DCD has `level`; answers True if it did within `timeout`."""

    level: bool
    timeout: float


@dataclass(frozen=True)
class WaitDrained:
    """Wait until the modem has taken the last byte written: the port's output drained
    and CTS high where the port can tell, else the driver's own account of the line
    rate (see `drain`). Answers the time it happened (or `timeout` later, given up)."""

    timeout: float


@dataclass(frozen=True)
class Escape:
    """Keep silent for the guard time (nothing written, the output drained), then `+++`;
    answers True when the modem confirmed command mode within the guard time. The
    silence counts from `after` at the earliest: when the modem took the last byte."""

    guard: float
    margin: float
    after: float = 0.0


@dataclass(frozen=True)
class Probe:
    """`AT` while the line may or may not be in data mode: answers True when the modem
    answered as a modem (it is in command mode; the call is gone)."""

    timeout: float


@dataclass(frozen=True)
class WaitCallEnd:
    """Wait until the call has ended (carrier loss confirmed) or `timeout` passed;
    answers True if it ended."""

    timeout: float


@dataclass(frozen=True)
class Reopen:
    """Close the port and open it again."""


@dataclass(frozen=True)
class Now:
    """Answers the current time (for the core's calls that take one)."""


@dataclass(frozen=True)
class Echoed:
    """Answers True when the modem echoed the last command line (E1: it was reset)."""


@dataclass(frozen=True)
class Note:
    """Something worth a log line: `event` and its fields."""

    event: str
    fields: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Emit:
    """Events the procedure caused in the core, for the shell to dispatch."""

    events: tuple[Event, ...]


Step = (
    Send
    | AwaitOutcome
    | Abort
    | WriteRaw
    | Sleep
    | Quiet
    | SetDtr
    | WaitDcd
    | WaitDrained
    | Escape
    | Probe
    | WaitCallEnd
    | Reopen
    | Now
    | Echoed
    | Note
    | Emit
)
Procedure = Generator[Step, Any, Any]


@dataclass(frozen=True)
class Withheld:
    """What a `Send` of `ATH` answers when a call began to ring in while the step
    waited its turn: the command was not sent (it would reject the call)."""


@dataclass(frozen=True)
class Port:
    """What the procedures need to know about the port."""

    has_dtr: bool
    dcd_trusted: bool


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingResult:
    setting: Setting
    accepted: bool
    answer: str
    """What the modem said (`'OK'`, `'3' (numeric NO CARRIER)`, `nothing within 2 s`),
    or why the setting was not sent."""
    sent: bool = True


@dataclass(frozen=True)
class SetupReport:
    profile: DriverProfile
    identity: dict[int, tuple[bytes, ...]]
    settings: tuple[SettingResult, ...]


@dataclass(frozen=True)
class DialResult:
    event: Connected | CallSetupFailed | None
    """The CONNECT or the failure; None when the modem gave no result at all."""
    swallowed: int = 0
    """How many times the modem answered the dial `OK` without dialling."""


# -- small helpers ----------------------------------------------------------------------


def answered(event: Event, timeout: float) -> str:
    """What the modem said in answer to a command, for a person."""
    if isinstance(event, CommandCompleted):
        return event.result.describe()
    if isinstance(event, CallSetupFailed):
        return event.result.describe()
    if isinstance(event, Connected):
        return f"'{event.record.connect_line.decode('latin-1')}' (it went online)"
    return f"nothing within {timeout:g} s"


def _final(event: Event) -> Final | None:
    if isinstance(event, CommandCompleted | CallSetupFailed):
        return event.result
    return None


def _is_ok(event: Event) -> bool:
    final = _final(event)
    return (
        isinstance(event, CommandCompleted) and final is not None and final.kind is (ResultKind.OK)
    )


def _verbose_ok(event: Event) -> bool:
    """OK in words: the modem is in V1, as the driver needs."""
    final = _final(event)
    return _is_ok(event) and final is not None and not final.numeric


# -- resynchronisation --------------------------------------------------------------------


def command(
    core: ModemCore, timings: Timings, line: bytes, timeout: float, *, expects_info: bool = True
) -> Procedure:
    """One command, after resynchronising first if the last exchange went wrong. (A
    numeric answer is the user's business here: `ATV0` may be what they asked for.)"""
    if core.needs_resync:
        yield from resync(core, timings)
    return (yield Send(line, CommandKind.COMMAND, timeout, expects_info))


def wake(core: ModemCore, timings: Timings, port: Port) -> Procedure:
    """`AT` until OK; if the modem stays silent it may still be online from an earlier
    life: escape with guard times, drop DTR, and ask once more (mgetty's force-init)."""
    for _ in range(timings.wake_attempts):
        event = yield Send(b"AT", CommandKind.COMMAND, timings.init_timeout)
        if _is_ok(event):
            core.resynchronised()
            if not _verbose_ok(event):
                yield from restore(core, timings, reason="the modem answers with numbers")
            return
    yield Sleep(timings.guard + timings.guard_margin)
    yield WriteRaw(b"+++")
    yield Sleep(timings.guard + timings.guard_margin)
    if port.has_dtr:
        yield from pulse_dtr(timings)
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    event = yield Send(b"AT", CommandKind.COMMAND, timings.init_timeout)
    if not _is_ok(event):
        raise ModemNotResponding(
            f"no OK to AT (it answered {answered(event, timings.init_timeout)})"
        )
    core.resynchronised()
    if not _verbose_ok(event):
        yield from restore(core, timings, reason="the modem answers with numbers")


def resync(core: ModemCore, timings: Timings) -> Procedure:
    """After a timeout or a stray result: drain, then `AT` -> `OK`, before any command.

    A late reply must never be credited to the next command: it arrives during the
    quiet period (and is logged as stray) or answers this `AT`.
    """
    last: Event | None = None
    for _ in range(timings.wake_attempts):
        yield Quiet(timings.drain_quiet)
        core.discard_input()
        last = yield Send(b"AT", CommandKind.COMMAND, timings.init_timeout)
        if _is_ok(last):
            core.resynchronised()
            yield Quiet(timings.drain_quiet)
            core.discard_input()
            if not _verbose_ok(last):
                yield from restore(core, timings, reason="the modem answers with numbers")
            return
    what = answered(last, timings.init_timeout) if last is not None else "nothing"
    raise ModemNotResponding(f"no OK to AT after resynchronising (it answered {what})")


def restore(core: ModemCore, timings: Timings, *, reason: str) -> Procedure:
    """Back to a known state after a command did something unintended (a modem that
    took `AT+VCID=1` for `V`, `C`, `I` and a dial): on hook, verbose, no echo; checked.

    Raises ModemNotResponding when the modem cannot be brought back."""
    yield Note("modem.restoring", (("reason", reason),))
    if core.state in (State.DIALING, State.ANSWERING):
        yield Abort()
        yield AwaitOutcome()
    # a CR ends whatever the command did that we did not ask for (a dial, an answer)
    yield WriteRaw(b"\r")
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    core.set_verbose(VerboseMode.UNKNOWN)
    history: list[str] = []
    for line, kind in (
        (b"ATH0", CommandKind.HANGUP),
        (b"ATV1", CommandKind.COMMAND),
        (b"ATE0", CommandKind.COMMAND),
    ):
        event = yield Send(line, kind, timings.init_timeout)
        if isinstance(event, Withheld):
            history.append(f"{line.decode()}: not sent (a call rings in)")
            continue
        history.append(f"{line.decode()}: {answered(event, timings.init_timeout)}")
        if line == b"ATV1" and _verbose_ok(event):
            core.set_verbose(VerboseMode.VERBOSE)
        yield Quiet(timings.drain_quiet)  # ATH0 is answered twice by some emulators
        core.discard_input()
    event = yield Send(b"AT", CommandKind.COMMAND, timings.init_timeout)
    history.append(f"AT: {answered(event, timings.init_timeout)}")
    if not _verbose_ok(event):
        raise ModemNotResponding(
            f"cannot bring the modem back to verbose command mode after {reason} "
            f"({'; '.join(history)})"
        )
    core.set_verbose(VerboseMode.VERBOSE)
    core.resynchronised()


# -- set-up -----------------------------------------------------------------------------------


def initialise(
    core: ModemCore,
    timings: Timings,
    port: Port,
    *,
    profile: DriverProfile | None,
    options: SetupOptions,
) -> Procedure:
    """Drain, wake, reset, identify, then apply the settings one line at a time.

    Required settings must be accepted; an optional one that is not (ERROR, a number, a
    dial, nothing) marks its feature absent, the modem is brought back to a known state
    and set-up goes on. Once an extended (`+`) setting showed that the modem mis-parses
    extended commands, the remaining ones are not sent: each attempt could dial."""
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    yield from wake(core, timings, port)
    event = yield Send(b"ATZ", CommandKind.HANGUP, timings.reset_timeout)
    if not _is_ok(event):
        raise InitialisationError(f"ATZ was answered {answered(event, timings.reset_timeout)}")
    # some modems keep their settings over ATZ (and emulators may keep V0): ask again
    core.set_verbose(VerboseMode.UNKNOWN)
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    identity: dict[int, tuple[bytes, ...]] = {}
    for index in (0, 3):
        event = yield Send(b"ATI%d" % index, CommandKind.COMMAND, timings.init_timeout, True)
        identity[index] = event.info if _is_ok(event) else ()
        if isinstance(event, CommandTimedOut):
            yield from resync(core, timings)
    chosen = profile or detect_profile(identity)
    core.use_profile(chosen.numeric_table(), chosen.reports)
    results: list[SettingResult] = []
    extended_misparsed: str | None = None
    for setting in plan_settings(chosen, options):
        if setting.extended and extended_misparsed is not None and not setting.required:
            results.append(SettingResult(setting, False, extended_misparsed, sent=False))
            continue
        event = yield Send(setting.command, CommandKind.COMMAND, timings.init_timeout)
        answer = answered(event, timings.init_timeout)
        if _verbose_ok(event) or (setting.command.upper() == b"ATV1" and _is_ok(event)):
            if setting.command.upper() == b"ATV1":
                core.set_verbose(VerboseMode.VERBOSE)
            results.append(SettingResult(setting, True, answer))
            continue
        if setting.required:
            raise InitialisationError(
                f"{setting.command.decode('latin-1')} ({setting.feature}) was answered {answer}"
            )
        results.append(SettingResult(setting, False, answer))
        final = _final(event)
        misparsed = final is None or final.numeric or final.kind is not ResultKind.ERROR
        if setting.extended and misparsed:
            extended_misparsed = (
                f"not sent: this modem mis-parses extended commands "
                f"(see {setting.command.decode('latin-1')})"
            )
        if misparsed or core.needs_resync:
            yield from restore(
                core, timings, reason=f"{setting.command.decode('latin-1')} was answered {answer}"
            )
    return SetupReport(chosen, identity, tuple(results))


def quick_wake(core: ModemCore, timings: Timings) -> Procedure:
    """The modem was set up moments ago by this process (see `HayesModem.initialize`):
    `AT` answered by a verbose OK without echo shows it is awake and still as we left it
    (a reset modem echoes: E1 is every factory default). False: set it up in full."""
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    event = yield Send(b"AT", CommandKind.COMMAND, timings.init_timeout)
    echoed = yield Echoed()
    if _verbose_ok(event) and not echoed:
        core.resynchronised()
        return True
    return False


# -- calls ------------------------------------------------------------------------------------


def dial(core: ModemCore, timings: Timings, line: bytes, timeout: float) -> Procedure:
    """ATD and what follows: a dial answered `OK` was swallowed by the modem (some do
    after a failed call): resynchronise and dial once more. After every failed dial the
    modem is hung up and resynchronised before anything else is sent."""
    if core.needs_resync:
        yield from resync(core, timings)
    swallowed = 0
    while True:
        event = yield from call_setup(core, timings, line, CommandKind.DIAL, timeout)
        if isinstance(event, Connected):
            return DialResult(event, swallowed)
        if (
            isinstance(event, CallSetupFailed)
            and event.result.kind is ResultKind.OK
            and not event.aborted
            and swallowed == 0
        ):
            swallowed += 1
            yield from resync(core, timings)
            continue
        yield from after_failed_call(core, timings)
        return DialResult(event if isinstance(event, CallSetupFailed) else None, swallowed)


def call_setup(
    core: ModemCore, timings: Timings, line: bytes, kind: CommandKind, timeout: float
) -> Procedure:
    """ATD or ATA: CONNECT, a failure, or (after an abort on timeout) None."""
    event = yield Send(line, kind, timeout)
    if isinstance(event, CommandTimedOut):
        # still dialling as far as we know: stop it (the core allows this byte)
        yield Abort()
        event = yield AwaitOutcome()
        if isinstance(event, CallSetupFailed | CommandTimedOut):
            return None
    return event


def after_failed_call(core: ModemCore, timings: Timings) -> Procedure:
    """On hook and in step again: `ATH0`, then `AT` -> `OK` (a modem may leave the line
    off hook after a failed dial, or answer the next command with a stale result)."""
    if core.state is State.RINGING:
        return  # a call is coming in: the modem is on hook, and ATH would reject it
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    event = yield Send(b"ATH0", CommandKind.HANGUP, timings.hangup_step)
    if isinstance(event, Withheld):
        return  # a call rang in meanwhile: the modem is on hook
    final = _final(event)
    if final is not None and final.numeric:
        core.needs_resync = True
    yield from resync(core, timings)


# -- carrier and hang-up ----------------------------------------------------------------------


def pulse_dtr(timings: Timings) -> Procedure:
    yield SetDtr(False)
    yield Sleep(timings.dtr_drop)
    yield SetDtr(True)


def on_hook(core: ModemCore, timings: Timings, port: Port) -> Procedure:
    """Verified: the modem answers AT in command mode, and DCD is low where known."""
    yield Quiet(timings.drain_quiet)
    core.discard_input()
    for _ in range(2):
        event = yield Send(b"AT", CommandKind.COMMAND, timings.init_timeout)
        if isinstance(event, CommandTimedOut):
            return False
        if _is_ok(event):
            break
        # the NO CARRIER of our own hang-up may answer this AT: ask again
    else:
        return False
    core.resynchronised()
    if not _verbose_ok(event):
        yield from restore(core, timings, reason="the modem answers with numbers")
    if port.dcd_trusted:
        return (yield WaitDcd(False, timings.dcd_poll))
    return True


def verify_carrier(core: ModemCore, timings: Timings, port: Port) -> Procedure:
    """`NO CARRIER` closed the data and nothing followed: is the call still up?

    With DCD that can be trusted, DCD says. Otherwise: once the call's data phase is
    over, probe with `AT` at once (if the line is still up the peer gets two harmless
    bytes). During the call, a guarded escape: OK means alive (ATO resumes); no OK
    within the guard time means the modem was in command mode already, which an `AT`
    probe confirms. Meanwhile the shell holds the caller's writes."""
    if port.dcd_trusted:
        alive = yield WaitDcd(True, 0.0)
        if not alive:
            now = yield Now()
            yield Emit(tuple(core.carrier_dropped(now)))
            return False
        yield Emit(tuple(core.release_held()))
        return True
    tried_escape = not core.call_ending
    if tried_escape:
        escaped = yield from guarded_escape(timings)
        if escaped:
            event = yield Send(b"ATO", CommandKind.ONLINE, timings.online_timeout)
            if isinstance(event, Connected):
                yield Emit(tuple(core.release_held()))
                return True
            if core.in_call:
                yield Emit(tuple(core.assume_command_mode()))
            else:
                # ATO answered NO CARRIER or ERROR: the core is idle already, but the
                # call's reader must hear that the call is over
                yield Emit((CarrierLost("NO CARRIER"),))
            yield from on_hook(core, timings, port)
            return False
        if not core.in_call:
            return False  # NO CARRIER answered the escape
    gone = yield Probe(timings.init_timeout)
    if gone:
        if tried_escape:
            # our escape found command mode: after NO CARRIER that is usually on hook,
            # but an escape whose OK came after its slack leaves online command mode
            # with the line still held (the hang-up ladder's case). The call is over
            # for the caller either way, so make sure of the hook: ATH0 is harmless
            # on hook and costs one round trip.
            yield Emit(tuple(core.assume_command_mode()))
            yield from _ath(core, timings, port)
        elif core.needs_resync:
            yield from resync(core, timings)
        return False
    yield Emit(tuple(core.release_held()))
    return True


def guarded_escape(timings: Timings) -> Procedure:
    """The escape, its guard time counted from when the modem took the last byte (a
    guard counted from the driver's last write ends while a pty or a modem holding CTS
    low is still passing data: the `+++` is then data, and `ATH0` after it too)."""
    drained = yield WaitDrained(timings.drain_timeout)
    return (yield Escape(timings.guard, timings.guard_margin, drained))


def hangup(core: ModemCore, timings: Timings, port: Port) -> Procedure:
    """Hang up by the first rung that works: DTR, `+++`/ATH, ATZ, close and reopen.
    Never ATH while a call rings in: on such modems it rejects the new call, and a
    ringing modem is on hook already."""
    if core.state is State.RINGING and (yield from on_hook(core, timings, port)):
        return "ringing"
    if core.in_call and port.has_dtr:
        yield from pulse_dtr(timings)
        if (yield from _dtr_took(core, timings, port)):
            return "dtr"
    if core.state is State.ONLINE_DATA:
        escaped = yield from guarded_escape(timings)
        if escaped:
            if (yield from _ath(core, timings, port)):
                return "escape"
        elif core.in_call:
            gone = yield Probe(timings.init_timeout)
            if gone:
                # command mode, but not necessarily on hook: an escape whose OK came
                # after its slack (a loaded machine, a slow link) leaves the modem in
                # online command mode with the call up. ATH0 is harmless on hook.
                yield Emit(tuple(core.assume_command_mode()))
                if (yield from _ath(core, timings, port)):
                    return "escape"
            else:
                yield Emit(tuple(core.assume_command_mode()))
    elif core.state in (State.ESCAPING, State.ONLINE_COMMAND):
        yield Emit(tuple(core.assume_command_mode()))
    if core.state is State.RINGING:
        if (yield from on_hook(core, timings, port)):
            return "ringing"
    elif (yield from _ath(core, timings, port)):
        return "ath"
    event = yield Send(b"ATZ", CommandKind.HANGUP, timings.reset_timeout)
    final = _final(event)
    if final is not None and final.kind in (ResultKind.OK, ResultKind.NO_CARRIER):
        core.set_verbose(VerboseMode.UNKNOWN)
        if (yield from on_hook(core, timings, port)):
            return "atz"
    yield Reopen()
    yield Quiet(timings.drain_quiet)
    try:
        yield from wake(core, timings, port)
    except ModemNotResponding:
        return None  # every rung failed: the owner gets HangupFailed
    event = yield Send(b"ATZ", CommandKind.HANGUP, timings.reset_timeout)
    if _is_ok(event) and (yield from on_hook(core, timings, port)):
        return "reopen"
    return None


def _dtr_took(core: ModemCore, timings: Timings, port: Port) -> Procedure:
    """After a DTR pulse: command mode (AT -> OK) and DCD low, or still online."""
    if port.dcd_trusted:
        dropped = yield WaitDcd(False, timings.hangup_step)
        if not dropped:
            return False  # the carrier is still up: the modem ignored DTR
    yield Emit(tuple(core.assume_command_mode()))
    if (yield from on_hook(core, timings, port)):
        return True
    if core.state is State.IDLE:
        core.assume_online()
    return False


def _ath(core: ModemCore, timings: Timings, port: Port) -> Procedure:
    event = yield Send(b"ATH0", CommandKind.HANGUP, timings.hangup_step)
    if isinstance(event, Withheld):
        return (yield from on_hook(core, timings, port))  # ringing: on hook already
    final = _final(event)
    if final is not None and final.kind in (ResultKind.OK, ResultKind.NO_CARRIER):
        return (yield from on_hook(core, timings, port))
    return False


def finish_call(core: ModemCore, timings: Timings, port: Port, patience: float) -> Procedure:
    """The protocol is over: give the far end `patience` to hang up (its NO CARRIER is
    believed at once now), then hang up ourselves."""
    core.expect_call_end()
    ended = yield WaitCallEnd(patience)
    if ended:
        if core.state is State.RINGING or not core.needs_resync:
            return "remote"
        yield from resync(core, timings)
        return "remote"
    return (yield from hangup(core, timings, port))


def settings_summary(results: Sequence[SettingResult]) -> dict[str, list[str]]:
    """For logs and `probe`: which features are present and which were refused."""
    summary: dict[str, list[str]] = {"present": [], "refused": []}
    for result in results:
        text = f"{result.setting.command.decode('latin-1')} ({result.setting.feature})"
        if result.accepted:
            summary["present"].append(text)
        else:
            summary["refused"].append(f"{text}: {result.answer}")
    return summary
