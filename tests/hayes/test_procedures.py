"""The driver's procedures in virtual time: no port, no event loop, no real sleep.

`Line` is a scripted modem and the executor of the steps in one: it answers command
lines from a table, keeps a virtual clock that each step advances as it would take on a
real port, and logs every write with its time. A whole hang-up ladder with its guard
times runs in microseconds and its timing is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from modem_drivers.hayes import Timings
from modem_drivers.hayes import procedures as proc
from modem_drivers.hayes.errors import ModemNotResponding
from modem_drivers.hayes.profiles import SetupOptions
from modem_drivers.hayes.state import (
    CallSetupFailed,
    CarrierLost,
    CommandKind,
    CommandTimedOut,
    Connected,
    DataReceived,
    EscapeEnded,
    Event,
    ModemCore,
    ProbeEnded,
    State,
)

TIMINGS = Timings()
Reply = bytes | Callable[[bytes], bytes | None] | None
_OPERATION_EVENTS = ("CommandCompleted", "CommandTimedOut", "CallSetupFailed", "Connected")


@dataclass
class Line:
    replies: dict[bytes, Reply] = field(default_factory=dict)
    default: Reply = b"\r\nOK\r\n"
    has_dtr: bool = True
    dcd: bool = False
    dcd_trusted: bool = True
    dtr_hangs_up: bool = True
    escape_answer: bytes | None = b"\r\nOK\r\n"
    """What the modem says to a guarded `+++` while online (None: nothing)."""
    probe_answer: bytes | None = None
    """What comes back to `AT` sent while online (None: nothing, the line is up)."""
    far_end_hangs_up_after: float | None = None
    """While waiting for the call to end: the far end's NO CARRIER after this long."""
    drained_at: float = 0.0
    """When the modem has taken the last byte written (the answer to `WaitDrained`)."""
    now: float = 0.0
    writes: list[tuple[float, bytes]] = field(default_factory=list)
    dtr: list[tuple[float, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    reopened: int = 0

    def __post_init__(self) -> None:
        self.core = ModemCore(timings=TIMINGS.core)
        self.core.opened()
        self.core.resynchronised()  # as after a set-up
        self.port = proc.Port(self.has_dtr, self.dcd_trusted)
        self._operations: list[Event] = []

    # -- driving ---------------------------------------------------------------------------

    def run(self, procedure: proc.Procedure) -> object:
        reply: object = None
        while True:
            try:
                step = procedure.send(reply)
            except StopIteration as done:
                return done.value
            reply = self.perform(step)

    def written(self) -> list[bytes]:
        return [data for _, data in self.writes]

    def connect(self, line: bytes = b"ATD5550100") -> None:
        """Put the core online, as after a dial answered CONNECT."""
        self.core.start_command(line, CommandKind.DIAL, self.now, 60.0)
        self._modem_says(b"\r\nCONNECT 2400\r\n")
        assert self.core.state is State.ONLINE_DATA
        self.dcd = True

    def ring(self) -> None:
        self._modem_says(b"\r\nRING\r\n")
        assert self.core.state is State.RINGING

    # -- the steps -------------------------------------------------------------------------

    def perform(self, step: proc.Step) -> object:
        core = self.core
        if isinstance(step, proc.Send):
            self._operations.clear()
            self.now = max(self.now, core.command_allowed_at())
            data = core.start_command(
                step.line, step.kind, self.now, step.timeout, expects_info=step.expects_info
            )
            self._write(data)
            reply = self.replies.get(step.line.upper(), self.default)
            if callable(reply):
                reply = reply(step.line)
            events = self._modem_says(reply) if reply else []
            return self._outcome(events)
        if isinstance(step, proc.AwaitOutcome):
            return self._outcome([])
        if isinstance(step, proc.Abort):
            self.now = max(self.now, core.abort_allowed_at())
            if core.may_abort():
                self._write(core.abort(self.now))
                self._modem_says(b"\r\nNO CARRIER\r\n")
            return None
        if isinstance(step, proc.WriteRaw):
            core.note_data_written(self.now)
            self._write(step.data)
            return None
        if isinstance(step, proc.Sleep | proc.Quiet):
            self.now += step.seconds
            return None
        if isinstance(step, proc.SetDtr):
            self.dtr.append((self.now, step.level))
            if not step.level and self.dtr_hangs_up and self.dcd:
                self.dcd = False
            return None
        if isinstance(step, proc.WaitDcd):
            if self.dcd is step.level:
                return True
            self.now += step.timeout
            return False
        if isinstance(step, proc.WaitDrained):
            self.now = max(self.now, self.drained_at)
            return self.now
        if isinstance(step, proc.Escape):
            silent_from = max(core.last_write_at, step.after)
            self.now = max(self.now, silent_from + step.guard + step.margin)
            self._write(core.start_escape(self.now, step.guard))
            self.now += step.guard
            if self.escape_answer is not None:
                events = self._modem_says(self.escape_answer)
            else:
                events = self._until(lambda e: isinstance(e, EscapeEnded | CarrierLost))
            for event in events:
                if isinstance(event, EscapeEnded):
                    return event.ok
            return False
        if isinstance(step, proc.Probe):
            self._write(core.start_probe(self.now, step.timeout))
            if self.probe_answer is not None:
                events = self._modem_says(self.probe_answer)
            else:
                events = self._until(lambda e: isinstance(e, ProbeEnded))
            return any(isinstance(e, ProbeEnded) and e.answered for e in events)
        if isinstance(step, proc.WaitCallEnd):
            after = self.far_end_hangs_up_after
            if after is not None and after <= step.timeout:
                self.now += after
                self._modem_says(b"\r\nNO CARRIER\r\n")
                self.dcd = False
                if self.dcd_trusted:  # the shell's DCD poll sees it
                    self.emitted += core.carrier_dropped(self.now)
                return not core.in_call
            self.now += step.timeout
            return False
        if isinstance(step, proc.Reopen):
            self.reopened += 1
            return None
        if isinstance(step, proc.Now):
            return self.now
        if isinstance(step, proc.Note):
            self.notes.append(step.event)
            return None
        if isinstance(step, proc.Emit):
            self.emitted += step.events
            return None
        raise AssertionError(f"unknown step {step!r}")

    # -- helpers ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if data:
            self.writes.append((self.now, data))

    def _modem_says(self, data: bytes | None) -> list[Event]:
        if not data:
            return []
        self.now += 0.01
        events = self.core.receive(data, self.now)
        self.emitted += [e for e in events if not isinstance(e, DataReceived)]
        self._operations += [e for e in events if type(e).__name__ in _OPERATION_EVENTS]
        return events

    def _outcome(self, events: list[Event]) -> Event:
        if not self._operations:
            self._until(lambda e: type(e).__name__ in _OPERATION_EVENTS)
        return self._operations.pop(0)

    def _until(self, wanted: Callable[[Event], bool]) -> list[Event]:
        """Advance the clock from deadline to deadline until an event is `wanted`."""
        for _ in range(100):
            deadline = self.core.next_deadline()
            assert deadline is not None, "waiting for nothing: the procedure would hang"
            self.now = max(self.now, deadline)
            events = self.core.tick(self.now)
            self.emitted += events
            self._operations += [e for e in events if type(e).__name__ in _OPERATION_EVENTS]
            if any(wanted(e) for e in events):
                return events
        raise AssertionError("no outcome after 100 deadlines")


# -- set-up --------------------------------------------------------------------------------


def emulator_replies(line: Line) -> Callable[[bytes], bytes]:
    """A modem that takes `AT+VCID=1` for V (numeric), C, I and D=1 (a dial)."""
    numeric = {"on": False}

    def reply(command: bytes) -> bytes:
        command = command.upper()
        if command.startswith(b"AT+"):
            numeric["on"] = True
            return b"\r\n3\r\n"
        if command == b"ATV1":
            numeric["on"] = False
        return b"0\r" if numeric["on"] else b"\r\nOK\r\n"

    return reply


def test_set_up_survives_a_misparsed_extended_command_in_bounded_virtual_time():
    line = Line()
    line.default = emulator_replies(line)
    report = line.run(
        proc.initialise(line.core, TIMINGS, line.port, profile=None, options=SetupOptions())
    )
    refused = {r.setting.command: r for r in report.settings if not r.accepted}
    assert "numeric NO CARRIER" in refused[b"AT+VCID=1"].answer
    assert not refused[b"AT+DR=1"].sent
    assert "modem.restoring" in line.notes
    written = line.written()
    vcid = written.index(b"AT+VCID=1\r")
    # the restore: a CR to end the dial the modem started, on hook, verbose, no echo
    assert written[vcid + 1 : vcid + 5] == [b"\r", b"ATH0\r", b"ATV1\r", b"ATE0\r"]
    assert line.core.state is State.IDLE
    assert line.now < 5.0  # no command waited out its time-out


def test_a_silent_modem_fails_set_up_with_what_it_answered():
    line = Line(default=None)
    with pytest.raises(ModemNotResponding, match="nothing"):
        line.run(
            proc.initialise(line.core, TIMINGS, line.port, profile=None, options=SetupOptions())
        )
    # it tried to wake a modem left online: guarded +++ and a DTR pulse
    assert b"+++" in line.written() and any(not level for _, level in line.dtr)


# -- dialling ------------------------------------------------------------------------------


def test_a_failed_dial_is_followed_by_hang_up_and_resync():
    line = Line(replies={b"ATD5550100": b"\r\nBUSY\r\n"})
    result = line.run(proc.dial(line.core, TIMINGS, b"ATD5550100", 60.0))
    assert isinstance(result.event, CallSetupFailed)
    assert line.written() == [b"ATD5550100\r", b"ATH0\r", b"AT\r"]


def test_a_swallowed_dial_is_dialled_once_more():
    answers = iter([b"\r\nOK\r\n", b"\r\nCONNECT 2400\r\n"])
    line = Line(replies={b"ATD5550100": lambda _: next(answers)})
    result = line.run(proc.dial(line.core, TIMINGS, b"ATD5550100", 60.0))
    assert isinstance(result.event, Connected) and result.swallowed == 1
    assert line.written() == [b"ATD5550100\r", b"AT\r", b"ATD5550100\r"]


def test_a_dial_that_outlives_its_time_out_is_aborted_after_the_grace():
    line = Line(replies={b"ATD5550100": None})
    result = line.run(proc.dial(line.core, TIMINGS, b"ATD5550100", 30.0))
    assert result.event is None  # timed out
    (dial_at,) = [t for t, d in line.writes if d == b"ATD5550100\r"]
    (abort_at,) = [t for t, d in line.writes if d == b"\r"]
    assert abort_at - dial_at >= 30.0
    assert line.written()[-2:] == [b"ATH0\r", b"AT\r"]


def test_no_clean_up_while_a_call_rings_in():
    line = Line()
    line.ring()
    line.run(proc.after_failed_call(line.core, TIMINGS))
    assert line.written() == []
    assert line.core.state is State.RINGING


# -- ending calls ----------------------------------------------------------------------------


def test_finish_lets_the_far_end_hang_up_and_writes_nothing():
    line = Line(far_end_hangs_up_after=0.3)
    line.connect()
    before = len(line.writes)
    method = line.run(proc.finish_call(line.core, TIMINGS, line.port, TIMINGS.hangup_patience))
    assert method == "remote"
    assert line.writes[before:] == []  # no +++, no ATH: the next RING is safe
    assert line.now < 1.0
    assert any(isinstance(e, CarrierLost) for e in line.emitted)


def test_finish_hangs_up_after_its_patience():
    line = Line()
    line.connect()
    method = line.run(proc.finish_call(line.core, TIMINGS, line.port, 2.0))
    assert method == "dtr"
    assert line.dtr[0][0] >= 2.0


def test_the_ladder_keeps_the_guard_times_when_dtr_is_ignored():
    line = Line(dtr_hangs_up=False)
    line.replies[b"ATH0"] = lambda _: (setattr(line, "dcd", False), b"\r\nOK\r\n")[1]
    line.connect()
    line.now = 10.0
    line.perform(proc.WriteRaw(b"the last data of the call"))
    method = line.run(proc.hangup(line.core, TIMINGS, line.port))
    assert method == "escape"
    plus = [t for t, d in line.writes if d == b"+++"]
    assert len(plus) == 1
    previous = max(t for t, d in line.writes if t < plus[0])
    assert plus[0] - previous >= TIMINGS.guard
    (ath,) = [t for t, d in line.writes if d == b"ATH0\r"]
    assert ath - plus[0] >= TIMINGS.guard  # silence after +++ too


def test_an_unanswered_escape_is_checked_with_a_probe_not_a_fixed_wait():
    """An emulator does not answer `+++` in command mode; the probe's `AT` shows that the
    call is over at once."""
    line = Line(has_dtr=False, dcd_trusted=False, escape_answer=None)
    line.connect()
    line.probe_answer = b"\r\nOK\r\n"
    method = line.run(proc.hangup(line.core, TIMINGS, line.port))
    assert method == "escape"
    assert b"\rAT\r" in line.written()


def test_a_ringing_modem_is_never_sent_ath():
    line = Line()
    line.ring()
    method = line.run(proc.hangup(line.core, TIMINGS, line.port))
    assert method == "ringing"
    assert not any(d.startswith(b"ATH") for d in line.written())


def test_a_modem_that_ignores_everything_is_reopened():
    line = Line(dtr_hangs_up=False, escape_answer=None, default=None)
    line.connect()
    method = line.run(proc.hangup(line.core, TIMINGS, line.port))
    assert method is None and line.reopened == 1
    assert b"ATZ\r" in line.written()


def test_every_timeout_in_a_failed_set_up_is_a_bounded_wait():
    """Set-up against a dead modem gives up within a bounded virtual time."""
    line = Line(default=None)
    with pytest.raises(ModemNotResponding):
        line.run(
            proc.initialise(line.core, TIMINGS, line.port, profile=None, options=SetupOptions())
        )
    assert line.now < 60.0
    assert not any(
        isinstance(e, CommandTimedOut) and e.kind is CommandKind.DIAL for e in line.emitted
    )


def test_an_escape_answered_error_is_not_taken_for_our_modem():
    """ERROR during the guard time comes from a far end in command mode that our data
    reached: the escape failed, the call is still up, nothing hangs."""
    line = Line()
    line.connect()
    line.core.start_escape(line.now, TIMINGS.guard)
    events = line.core.receive(b"\r\nERROR\r\n", line.now + 0.1)
    assert [type(e).__name__ for e in events] == ["EscapeEnded"] and not events[0].ok
    assert line.core.state is State.ONLINE_DATA


def test_the_far_ends_data_during_our_escape_is_neither_a_stray_nor_a_resync_sign():
    """A bank hanging up on a caller still sending logged its ciphertext as a page of
    `modem.stray` lines (at info) and a `line_too_long` warning; it is data in flight."""
    line = Line()
    line.connect()
    line.core.start_escape(line.now, TIMINGS.guard)
    ciphertext = b"\x13\xb2j0\r\nOK then\r\n" + b"\xe6" * 2000 + b"\r\nCONNECT\r\n"
    for cut in range(0, len(ciphertext), 97):  # in the chunks a port might give
        events = line.core.receive(ciphertext[cut : cut + 97], line.now + 0.05)
        assert events == [], events
    assert not line.core.needs_resync
    events = line.core.receive(b"\r\nOK\r\n", line.now + 0.1)
    assert [type(e).__name__ for e in events] == ["EscapeEnded"] and events[0].ok
    events = line.core.receive(b"\r\nRUBBISH\r\n", line.now + 0.2)
    assert [type(e).__name__ for e in events] == ["StrayLine"]  # in command mode, it is


def test_ato_answered_no_carrier_ends_the_call():
    line = Line(has_dtr=False, dcd_trusted=False)
    line.replies[b"ATO"] = b"\r\nNO CARRIER\r\n"
    line.connect()
    line.now = 5.0
    alive = line.run(proc.verify_carrier(line.core, TIMINGS, line.port))
    assert alive is False
    assert any(isinstance(e, CarrierLost) for e in line.emitted)


def test_a_carrier_check_whose_escape_was_answered_late_hangs_up():
    """NO CARRIER closed the data; the check's `+++` was taken but its OK came after
    the slack, so the probe finds command mode with the line possibly still held. The
    call is over for the caller, and ATH0 makes sure the modem is on hook."""
    line = Line(has_dtr=False, dcd_trusted=False, escape_answer=None)
    line.connect()
    line.now = 5.0
    line.probe_answer = b"\r\nOK\r\n\r\nOK\r\n"  # the late OK to +++, then the probe's
    alive = line.run(proc.verify_carrier(line.core, TIMINGS, line.port))
    assert alive is False
    written = line.written()
    assert written.index(b"\rAT\r") < written.index(b"ATH0\r")
    assert line.core.state is State.IDLE


def test_a_late_bare_number_that_is_not_a_command_result_stays_a_timeout():
    """A `1` (CONNECT) or `2` (RING) cannot end a command: the command times out."""
    line = Line()
    line.core.start_command(b"ATI9", CommandKind.COMMAND, 0.0, 3.0, expects_info=True)
    line.core.receive(b"1\r", 0.1)
    events = line.core.tick(3.0)
    assert [type(e).__name__ for e in events] == ["CommandTimedOut"]


def test_an_escape_answered_late_still_hangs_up():
    """The modem took the `+++` but its OK came after the slack (a loaded machine, a
    slow link): the probe's `AT` finds it in command mode, online command mode with the
    call still up. The ladder sends ATH0 rather than take command mode for on hook."""
    line = Line(has_dtr=False, dcd_trusted=False, escape_answer=None)
    line.connect()
    line.probe_answer = b"\r\nOK\r\n\r\nOK\r\n"  # the late OK to +++, then the probe's
    method = line.run(proc.hangup(line.core, TIMINGS, line.port))
    assert method == "escape"
    written = line.written()
    assert written.index(b"\rAT\r") < written.index(b"ATH0\r")
