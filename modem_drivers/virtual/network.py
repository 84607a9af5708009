"""The virtual PSTN: numbers, lines, hunt groups, ringing and calls between modems.

`PhoneNetwork` is a discrete-event simulation on one `Scheduler` and does no I/O: the
asyncio runner (`runner.py`) feeds it DTE bytes and real time and carries its output
to ptys, sockets and in-process ports; tests drive it directly with a virtual clock.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .commandline import is_address
from .interpreter import BlacklistRule, CallerId, VirtualModem
from .line import LineDirection, LineModel
from .profiles import STANDARD_RATES, ModemProfile, get_profile
from .sim import Scheduler, Timer

BUSY_DETECT_TIME = 1.5
"""Busy tone cadence needs a couple of cycles before a modem calls it BUSY."""

LINK_FAILURE_TEXT: dict[str, bytes] = {"busy": b"BUSY\n", "no-answer": b"NO ANSWER\n"}
"""What a tcpser-like callee side writes down a link it is about to close (tcpser.c,
bridge.c): the caller's emulator already said CONNECT, so this arrives as data."""

EARLY_DATA_LIMIT = 2048
"""Bytes a linked caller may send before the callee answers (held, then delivered)."""

CALL_HISTORY = 10_000
DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class CallState(enum.Enum):
    DIALING = "dialing"
    RINGING = "ringing"
    TRAINING = "training"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(frozen=True)
class NetworkTiming:
    ring_on: float = 2.0
    ring_off: float = 4.0
    ring_limit: int = 15
    """The exchange stops ringing (and the caller hears no answer) after this many."""
    dialtone_wait: float = 0.7
    """From off-hook to the first digit (dial tone detection)."""
    digit_time: float = 0.1
    """Per DTMF digit, including the inter-digit pause."""
    cid_delay: float = 0.5
    """After the end of the first ring (or before the first ring on lines that do so)."""
    line_tick: float = 0.02
    """Granularity of byte delivery on the line (network seconds)."""
    link_setup: float = 0.1
    """For `connect_on_link` callers (emulators): from ATD to the link being up or
    refused (a TCP connect, not a dial)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must not be negative")
        if self.ring_on <= 0 or self.line_tick <= 0 or self.ring_limit < 1:
            raise ValueError("ring_on, line_tick and ring_limit must be positive")


@dataclass
class Line:
    modem: VirtualModem
    number: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    caller_id: CallerId = field(default_factory=CallerId)
    cid_before_first_ring: bool = False
    plugged: bool = True
    off_hook: bool = False
    call: Call | None = None
    next_call_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.modem.name

    def idle(self) -> bool:
        return self.plugged and not self.off_hook and self.call is None


@dataclass
class CallRecord:
    caller: str
    number: str
    callee: str | None = None
    started: float = 0.0
    answered: float | None = None
    connected: float | None = None
    ended: float | None = None
    outcome: str = "in progress"
    rate: int = 0
    v42: bool = False
    bytes_caller_to_callee: int = 0
    bytes_callee_to_caller: int = 0
    bits_flipped: int = 0
    stall_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Call:
    def __init__(self, network: PhoneNetwork, caller: Line, number: str) -> None:
        self.network = network
        self.caller = caller
        self.callee: Line | None = None
        self.number = number
        self.state = CallState.DIALING
        self.model = network.default_line
        self.timers: list[Timer] = []
        self.rings = 0
        self.linked = False
        """The caller's emulator reported CONNECT when the link came up (`connect_on_link`)."""
        self.early = bytearray()
        self.directions: dict[str, LineDirection] = {}
        self.record = CallRecord(caller=caller.name, number=number, started=network.now)
        self.rng = random.Random(network.rng.random())

    def later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        timer = self.network.scheduler.call_later(delay, callback)
        self.timers.append(timer)
        return timer

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    def other(self, line: Line) -> Line | None:
        return self.callee if line is self.caller else self.caller


class PhoneNetwork:
    """The exchange. Add modems (each on its own line), numbers and hunt groups."""

    def __init__(
        self,
        *,
        scheduler: Scheduler | None = None,
        default_line: LineModel | None = None,
        timing: NetworkTiming | None = None,
        seed: int = 0,
        epoch: datetime | None = None,
        trace: Callable[..., None] | None = None,
    ) -> None:
        self.scheduler = scheduler or Scheduler()
        self.epoch = epoch
        """The wall-clock moment of network time 0 (caller-ID dates and times); the
        runner sets it to the real time at start when it is not given."""
        self.default_line = default_line or LineModel()
        self.timing = timing or NetworkTiming()
        self.rng = random.Random(seed)
        self.trace: Callable[..., None] = trace or (lambda event, **kw: None)
        self.lines: dict[str, Line] = {}
        self.numbers: dict[str, list[Line]] = {}
        self.history: deque[CallRecord] = deque(maxlen=CALL_HISTORY)
        self.active_calls: set[Call] = set()
        self.dirty: set[VirtualModem] = set()
        self.on_dirty: Callable[[], None] = lambda: None

    # -- building the network ------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.scheduler.now

    def add_modem(
        self,
        name: str,
        profile: str | ModemProfile = "generic",
        *,
        number: str | None = None,
        line: Mapping[str, Any] | None = None,
        caller_id: CallerId | None = None,
        cid_before_first_ring: bool | None = None,
        blacklist: BlacklistRule | None = None,
    ) -> VirtualModem:
        if name in self.lines:
            raise ValueError(f"a modem named {name!r} already exists")
        if isinstance(profile, str):
            profile = get_profile(profile)
        overrides = dict(line or {})
        self.default_line.replace(**overrides)  # validates the overrides early
        modem = VirtualModem(
            name,
            profile,
            self.scheduler,
            _SwitchPort(self),
            blacklist=blacklist,
            trace=self.trace,
        )
        modem.on_change = self._mark_dirty
        self.lines[name] = Line(
            modem=modem,
            number=number,
            overrides=overrides,
            caller_id=caller_id or CallerId(number=number),
            cid_before_first_ring=(
                profile.cid_before_first_ring
                if cid_before_first_ring is None
                else cid_before_first_ring
            ),
        )
        if number is not None:
            self._assign(number, [self.lines[name]])
        return modem

    def add_hunt_group(self, number: str, members: Iterable[str]) -> None:
        lines = [self.line(name) for name in members]
        if not lines:
            raise ValueError(f"hunt group {number} has no members")
        self._assign(number, lines)

    def _assign(self, number: str, lines: list[Line]) -> None:
        phone = bool(number) and all(c in "0123456789*#ABCD" for c in number)
        if not phone and not is_address(number):
            raise ValueError(
                f"invalid number {number!r} (digits 0-9 * # A-D, or host:port as IP modems dial)"
            )
        if number in self.numbers:
            raise ValueError(f"number {number} is already assigned")
        self.numbers[number] = lines

    def line(self, name: str) -> Line:
        try:
            return self.lines[name]
        except KeyError:
            raise KeyError(f"no modem named {name!r}") from None

    def modem(self, name: str) -> VirtualModem:
        return self.line(name).modem

    def modems(self) -> list[VirtualModem]:
        return [line.modem for line in self.lines.values()]

    # -- scripted conditions and faults --------------------------------------------------

    def unplug(self, name: str) -> None:
        line = self.line(name)
        line.plugged = False
        if line.call is not None:
            self._drop(line.call, "unplugged")

    def plug(self, name: str) -> None:
        self.line(name).plugged = True

    def set_line(self, name: str, **overrides: Any) -> None:
        """Change the line model of a modem's line for its future calls."""
        line = self.line(name)
        self.default_line.replace(**{**line.overrides, **overrides})
        line.overrides.update(overrides)

    def set_next_call(self, name: str, **overrides: Any) -> None:
        """Line conditions for the next call this modem places or receives only."""
        self.default_line.replace(**overrides)
        self.line(name).next_call_overrides = dict(overrides)

    def cut(self, name: str) -> bool:
        """Cut the line mid-call (both modems lose carrier); False if no call."""
        call = self.line(name).call
        if call is None:
            return False
        self._drop(call, "cut")
        return True

    # -- driving the simulation ----------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.scheduler.next_deadline()

    def advance(self, now: float) -> None:
        self.scheduler.run_due(now)

    def run_for(self, seconds: float) -> None:
        self.scheduler.run_until_idle(self.now + seconds)

    def _mark_dirty(self, modem: VirtualModem) -> None:
        if not self.dirty:
            self.dirty.add(modem)
            self.on_dirty()
        else:
            self.dirty.add(modem)

    # -- the switch, as seen by the modems -----------------------------------------------

    def _place_call(self, modem: VirtualModem, number: str) -> None:
        line = self.line(modem.name)
        if line.call is not None:
            self._end(line.call, "abandoned")
        call = Call(self, line, number)
        line.call = call
        line.off_hook = True
        self.active_calls.add(call)
        self.trace("call.dialing", caller=line.name, number=number)
        settings = modem.settings
        if modem.profile.connect_on_link:
            # an emulator opens a link rather than dialling: no dial tone, no digits
            if line.plugged:
                call.later(self.timing.link_setup, lambda: self._route(call))
            else:
                call.later(self.timing.link_setup, lambda: self._fail(call, "no-carrier"))
            return
        if not line.plugged:
            if settings.x_level in (2, 4):
                call.later(settings.s.get(6, 2), lambda: self._fail(call, "no-dialtone"))
            else:
                call.later(settings.s.get(7, 50), lambda: self._fail(call, "no-carrier"))
            return
        dial_time = self.timing.dialtone_wait + self.timing.digit_time * len(number)
        call.later(dial_time, lambda: self._route(call))

    def _route(self, call: Call) -> None:
        caller_modem = call.caller.modem
        caller_settings = caller_modem.settings
        carrier_wait = caller_settings.s.get(7, 50)
        candidates = self.numbers.get(call.number, [])
        callee = next((line for line in candidates if line.idle()), None)
        linking = caller_modem.profile.connect_on_link
        if callee is None:
            reason = "busy" if candidates else "unallocated"
            self.trace("call.busy", caller=call.caller.name, number=call.number, reason=reason)
            if linking and candidates:
                # the far emulator accepts the link, says BUSY and closes it
                self._link_up(call)
                self._fail(call, "busy")
            elif linking:
                self._fail(call, "no-carrier")  # nobody listens at that address
            elif caller_settings.x_level >= 3:
                call.later(BUSY_DETECT_TIME, lambda: self._fail(call, "busy"))
            else:
                call.later(carrier_wait, lambda: self._fail(call, "no-carrier"))
            return
        call.callee = callee
        callee.call = call
        call.record.callee = callee.name
        call.state = CallState.RINGING
        call.model = self._model_for(call)
        self.trace("call.ringing", caller=call.caller.name, callee=callee.name, number=call.number)
        if linking:
            self._link_up(call)
            timeout = caller_modem.profile.no_answer_timeout
            call.later(timeout, lambda: self._carrier_wait_over(call))
        else:
            call.later(carrier_wait, lambda: self._carrier_wait_over(call))
        timing = self.timing
        if callee.cid_before_first_ring:
            call.later(0.0, lambda: self._deliver_cid(call))
            call.later(timing.cid_delay + 0.3, lambda: self._ring(call))
        else:
            call.later(0.0, lambda: self._ring(call))
            call.later(timing.ring_on + timing.cid_delay, lambda: self._deliver_cid(call))

    def _link_up(self, call: Call) -> None:
        call.linked = True
        self.trace("call.link_up", caller=call.caller.name, number=call.number)
        call.caller.modem.link_up()

    def _model_for(self, call: Call) -> LineModel:
        overrides: dict[str, Any] = {}
        for line in (call.caller, call.callee):
            if line is not None:
                overrides.update(line.overrides)
        for line in (call.caller, call.callee):
            if line is not None and line.next_call_overrides:
                overrides.update(line.next_call_overrides)
                line.next_call_overrides = {}
        return self.default_line.replace(**overrides)

    def _ring(self, call: Call) -> None:
        if call.state is not CallState.RINGING or call.callee is None:
            return
        if call.rings >= self.timing.ring_limit:
            self._fail(call, "no-answer")
            return
        call.rings += 1
        callee = call.callee.modem
        callee.incoming_ring()
        if call.state is not CallState.RINGING:
            return  # the ring made it auto-answer
        period = callee.profile.ring_interval or self.timing.ring_on + self.timing.ring_off
        call.later(min(self.timing.ring_on, period / 2), callee.ring_ended)
        call.later(period, lambda: self._ring(call))

    def _deliver_cid(self, call: Call) -> None:
        if call.state is not CallState.RINGING or call.callee is None:
            return
        when = (self.epoch or DEFAULT_EPOCH) + timedelta(seconds=self.now)
        cid = dataclasses.replace(
            call.caller.caller_id, date=when.strftime("%m%d"), time=when.strftime("%H%M")
        )
        call.callee.modem.caller_id(cid)

    def _carrier_wait_over(self, call: Call) -> None:
        if call.state is CallState.RINGING:
            self._fail(call, "no-answer")
        elif call.state is CallState.TRAINING:
            self._fail(call, "no-carrier")

    def _answer(self, modem: VirtualModem) -> bool:
        line = self.line(modem.name)
        call = line.call
        if call is None or call.callee is not line or call.state is not CallState.RINGING:
            return False
        call.state = CallState.TRAINING
        call.record.answered = self.now
        line.off_hook = True
        modem.ring_ended()
        self.trace("call.answered", caller=call.caller.name, callee=line.name)
        # an emulator's link is up already: answering needs no training
        training = 0.0 if modem.profile.connect_on_link else call.model.training_time
        call.later(training, lambda: self._connect(call))
        return True

    def _ringing(self, modem: VirtualModem) -> bool:
        call = self.line(modem.name).call
        return (
            call is not None
            and call.callee is not None
            and call.callee.modem is modem
            and call.state is CallState.RINGING
        )

    def _reject(self, modem: VirtualModem) -> bool:
        """The called modem refuses the ringing call (an emulator's ATH)."""
        if not self._ringing(modem):
            return False
        call = self.line(modem.name).call
        assert call is not None
        self.trace("call.rejected", caller=call.caller.name, callee=modem.name)
        self._fail(call, "rejected")
        return True

    def _connect(self, call: Call) -> None:
        if call.state is not CallState.TRAINING or call.callee is None:
            return
        model = call.model
        top = min(
            model.rate, call.caller.modem.profile.max_rate, call.callee.modem.profile.max_rate
        )
        rate = max(r for r in STANDARD_RATES if r <= top)
        call.state = CallState.CONNECTED
        call.cancel_timers()
        record = call.record
        record.connected = self.now
        record.rate = rate
        record.v42 = model.v42
        record.outcome = "connected"
        caller, callee = call.caller, call.callee
        call.directions = {
            caller.name: self._direction(call, rate, caller, callee),
            callee.name: self._direction(call, rate, callee, caller),
        }
        self.trace(
            "call.connected",
            caller=caller.name,
            callee=callee.name,
            rate=rate,
            v42=model.v42,
            ber=model.ber,
            latency=model.latency,
        )
        if model.drop_at is not None:
            call.later(model.drop_at, lambda: self._drop(call, "line drop"))
        if model.drop_rate > 0:
            call.later(
                call.rng.expovariate(model.drop_rate / 3600),
                lambda: self._drop(call, "random drop"),
            )
        if model.stall_rate > 0:
            self._schedule_retrain(call)
        if call.early:
            # what a linked caller sent before the answer, held until now
            early, call.early = bytes(call.early), bytearray()
            call.directions[caller.name].send(early)
        caller.modem.connected(rate, model.v42)
        callee.modem.connected(rate, model.v42)

    def _direction(self, call: Call, rate: int, source: Line, sink: Line) -> LineDirection:
        def departed(count: int) -> None:
            self._count(call, source, count)
            source.modem.tx_space_available()

        profile = source.modem.profile
        return LineDirection(
            self.scheduler,
            call.model,
            rate,
            call.rng,
            deliver=sink.modem.line_data,
            on_departed=departed,
            buffer_size=profile.tx_buffer_arq if call.model.v42 else profile.tx_buffer_plain,
            tick=self.timing.line_tick,
        )

    def _schedule_retrain(self, call: Call) -> None:
        model = call.model

        def retrain() -> None:
            if call.state is not CallState.CONNECTED:
                return
            self.trace("call.retrain", caller=call.caller.name, seconds=model.stall_time)
            for direction in call.directions.values():
                direction.stall(model.stall_time)
            self._schedule_retrain(call)

        call.later(call.rng.expovariate(model.stall_rate / 3600), retrain)

    def _count(self, call: Call, source: Line, count: int) -> None:
        record = call.record
        if source is call.caller:
            record.bytes_caller_to_callee += count
        else:
            record.bytes_callee_to_caller += count
        limit = call.model.drop_after_bytes
        total = record.bytes_caller_to_callee + record.bytes_callee_to_caller
        if limit is not None and total >= limit and call.state is CallState.CONNECTED:
            self._drop(call, "line drop")

    def _transmit(self, modem: VirtualModem, data: bytes) -> int:
        call = self.line(modem.name).call
        if call is not None and call.linked and call.state is not CallState.CONNECTED:
            room = EARLY_DATA_LIMIT - len(call.early)
            call.early += data[:room]
            return min(len(data), room)
        if call is None or call.state is not CallState.CONNECTED:
            return len(data)  # nobody on the line: the bytes vanish
        return call.directions[modem.name].send(data)

    def _tx_space(self, modem: VirtualModem) -> int:
        call = self.line(modem.name).call
        if call is not None and call.linked and call.state is not CallState.CONNECTED:
            return EARLY_DATA_LIMIT - len(call.early)
        if call is None or call.state is not CallState.CONNECTED:
            return 1 << 16
        return call.directions[modem.name].space()

    def _hang_up(self, modem: VirtualModem) -> None:
        line = self.line(modem.name)
        call = line.call
        if call is None:
            return
        if call.state in (CallState.DIALING, CallState.RINGING) and line is call.caller:
            self._end(call, "abandoned")
            if call.callee is not None:
                call.callee.modem.calling_party_gone()
        elif call.state is CallState.RINGING:
            return  # the called side did not pick up: nothing to hang up
        else:
            self._end(call, f"hung up by {line.name}")
            other = call.other(line)
            if other is not None:
                other.modem.carrier_lost()

    def _set_off_hook(self, modem: VirtualModem, off_hook: bool) -> None:
        line = self.line(modem.name)
        line.off_hook = off_hook or line.call is not None

    def _fail(self, call: Call, reason: str) -> None:
        if call.state is CallState.ENDED:
            return
        callee = call.callee
        self._end(call, reason)
        caller = call.caller.modem
        if call.linked:
            # the caller's emulator is online already: the failure is text, then no link
            text = LINK_FAILURE_TEXT.get(reason)
            if text:
                caller.line_data(text)
            caller.carrier_lost()
        else:
            caller.call_failed(reason)
        if callee is not None:
            callee.modem.calling_party_gone()

    def _drop(self, call: Call, reason: str) -> None:
        if call.state is CallState.ENDED:
            return
        self.trace("call.drop", caller=call.caller.name, reason=reason)
        ringing = call.state is CallState.RINGING
        self._end(call, reason)
        for line in (call.caller, call.callee):
            if line is None:
                continue
            if ringing and line is call.callee:
                line.modem.calling_party_gone()
            else:
                line.modem.carrier_lost()

    def _end(self, call: Call, outcome: str) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.cancel_timers()
        record = call.record
        record.ended = self.now
        record.outcome = outcome
        for direction in call.directions.values():
            record.bits_flipped += direction.bits_flipped
            record.stall_seconds += direction.stall_seconds
            direction.close()
        for line in (call.caller, call.callee):
            if line is not None and line.call is call:
                line.call = None
                line.off_hook = False
        self.active_calls.discard(call)
        self.history.append(record)
        self.trace("call.ended", **{k: v for k, v in record.as_dict().items() if v is not None})


class _SwitchPort:
    """The `Switch` a modem sees: its own view of the network."""

    def __init__(self, network: PhoneNetwork) -> None:
        self._network = network

    def place_call(self, modem: VirtualModem, number: str, *, wait_quiet: bool) -> None:
        self._network._place_call(modem, number)

    def answer_call(self, modem: VirtualModem) -> bool:
        return self._network._answer(modem)

    def hang_up(self, modem: VirtualModem) -> None:
        self._network._hang_up(modem)

    def set_off_hook(self, modem: VirtualModem, off_hook: bool) -> None:
        self._network._set_off_hook(modem, off_hook)

    def transmit(self, modem: VirtualModem, data: bytes) -> int:
        return self._network._transmit(modem, data)

    def tx_space(self, modem: VirtualModem) -> int:
        return self._network._tx_space(modem)

    def ringing(self, modem: VirtualModem) -> bool:
        return self._network._ringing(modem)

    def reject_call(self, modem: VirtualModem) -> bool:
        return self._network._reject(modem)
