"""A virtual V.250 modem: the DCE side of a serial port, as a sans-IO state machine.

`VirtualModem` takes the bytes a DTE writes (`receive`) and control-line changes
(`set_dtr`), and produces the bytes a real modem would send back (`take_output`) and
its control lines (`dcd`, `ri`, `cts`, `dsr`). Everything that takes time is a timer
on the network's `Scheduler`; the modem never reads a clock.

It models command mode, online data mode and online command mode, the command-line
editor (echo, backspace, length limit, `A/`), result codes in verbose and numeric form
per profile and X level, dialling and answering through the `Switch` (the phone
network), guard-time escape, DTR handling per `&D`, caller ID, ETSI blacklisting and
scriptable faults. `docs/virtual-network.md` lists what it does not model.

Two tables carry the shape: `COMMANDS` / `TCPSER_COMMANDS` map each command letter to
its handler (the profile's `command_syntax` picks one), and every state change goes
through `states.TRANSITIONS`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any, Protocol

from .commandline import (
    CommandLine,
    address_or_number,
    dial_duration,
    is_address,
    parse_dial_string,
)
from .profiles import ModemProfile, modulation_for
from .sim import Scheduler, Timer
from .states import Event, State, next_state

ABORT_GRACE = 0.125
"""Characters within 125 ms of a D/A command's CR do not abort it (V.250 6.3.1)."""

RING_TIMEOUT = 8.0
"""S1 (ring count) resets when no ring has come for this long."""

XON, XOFF = 0x11, 0x13

KNOWN_S_REGISTERS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 25})


class _Reader(enum.Enum):
    WAIT_A = 0
    WAIT_T = 1
    IN_LINE = 2


@dataclass(frozen=True)
class CallerId:
    number: str | None = None
    name: str | None = None
    date: str = "0101"  # MMDD
    time: str = "0000"  # HHMM
    presentation: str = "allowed"  # allowed | private | unavailable


@dataclass(frozen=True)
class BlacklistRule:
    """ETSI-style redial restriction (after ES 203 021 / TBR 21)."""

    delays: tuple[float, ...] = (5.0, 60.0)
    """After the n-th consecutive failure to a number, wait delays[n-1] (the last one
    repeats) before that number may be dialled again; earlier attempts get DELAYED."""
    max_attempts: int = 4
    """After this many failures within `window`, the number is BLACKLISTED."""
    window: float = 3600.0


@dataclass
class Settings:
    echo: bool
    verbose: bool
    quiet: bool
    x_level: int
    dcd_mode: int
    dtr_mode: int
    flow_control: int
    progress_reports: int
    vcid: int
    report_modulation: int
    report_error_control: int
    report_compression: int
    s: dict[int, int] = field(default_factory=dict)

    @classmethod
    def factory(cls, profile: ModemProfile) -> Settings:
        f = profile.factory
        return cls(
            echo=f.echo,
            verbose=f.verbose,
            quiet=f.quiet,
            x_level=f.x_level,
            dcd_mode=f.dcd_mode,
            dtr_mode=f.dtr_mode,
            flow_control=f.flow_control,
            progress_reports=f.progress_reports,
            vcid=f.vcid,
            report_modulation=f.report_modulation,
            report_error_control=f.report_error_control,
            report_compression=f.report_compression,
            s=dict(f.s_registers),
        )

    def copy(self) -> Settings:
        clone = Settings(**{k: v for k, v in vars(self).items() if k != "s"})
        clone.s = dict(self.s)
        return clone


class Switch(Protocol):
    """What a modem needs from the phone network it is plugged into."""

    def place_call(self, modem: VirtualModem, number: str, *, wait_quiet: bool) -> None: ...

    def answer_call(self, modem: VirtualModem) -> bool: ...

    def hang_up(self, modem: VirtualModem) -> None: ...

    def set_off_hook(self, modem: VirtualModem, off_hook: bool) -> None: ...

    def transmit(self, modem: VirtualModem, data: bytes) -> int: ...

    def tx_space(self, modem: VirtualModem) -> int: ...

    def ringing(self, modem: VirtualModem) -> bool:
        """An incoming call is ringing this modem (it could be answered now)."""
        ...

    def reject_call(self, modem: VirtualModem) -> bool:
        """Refuse the call ringing this modem; False when none rings."""
        ...


Handler = Callable[["VirtualModem", "CommandLine"], None]
"""A command handler: runs one command, reading its arguments from the cursor."""


class _CommandError(Exception):
    pass


class _Deferred(Exception):
    """The command's result comes later (dial, answer)."""


class _Silent(Exception):
    """The command line ends here with no final result at all (tcpser's idle `ATA`)."""


DTE_CHUNK = 4096
"""What a port reads from its DTE at once when the modem applies no flow control."""


class VirtualModem:
    def __init__(
        self,
        name: str,
        profile: ModemProfile,
        scheduler: Scheduler,
        switch: Switch,
        *,
        blacklist: BlacklistRule | None = None,
        trace: Callable[..., None] | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        self._scheduler = scheduler
        self._switch = switch
        self.blacklist = (
            blacklist
            if blacklist is not None
            else (BlacklistRule() if profile.etsi_blacklist else None)
        )
        self._trace = trace or (lambda event, **kw: None)
        self.on_change: Callable[[VirtualModem], None] = lambda modem: None

        self.stored = Settings.factory(profile)
        self.settings = self.stored.copy()
        self.state = State.COMMAND
        self.dtr = False
        self.dcd_carrier = False
        self.ri = False
        self.cts = True
        self.dsr = True
        self.rate = 0
        self.v42 = False
        self.far_end_answered = False
        """In this call the far end answered (false while an emulator's link is up
        before the callee picks up)."""

        self._output = bytearray()
        self._reader = _Reader.WAIT_A
        self._line = bytearray()
        self._line_overflow = False
        self._last_line = b""
        self._command_end = 0.0
        self._pending_timers: list[Timer] = []
        self._late_replies: list[Timer] = []
        self._dtr_timer: Timer | None = None
        self._ring_reset: Timer | None = None
        self._dial_buffer = ""
        self._dial_number = ""
        self._last_dialled = ""
        self._failures: dict[str, list[float]] = {}
        self._pending_cid: CallerId | None = None
        self._rx_held = bytearray()
        self._swallowed = bytearray()  # STRANDED: the command line being swallowed
        self._xoff_sent = False
        self._dte_paused = False  # DTE sent XOFF (&K4)

        # guard-time escape tracking (online data mode)
        self._last_data_at = 0.0
        self._plus_count = 0
        self._last_plus_at = 0.0
        self._escape_timer: Timer | None = None

        # faults
        self.unresponsive = False
        self.reply_delay = 0.0

    # -- public surface for the network and the exposures ------------------------------

    @property
    def dcd(self) -> bool:
        return True if self.settings.dcd_mode == 0 else self.dcd_carrier

    @property
    def in_call(self) -> bool:
        return self.state in (State.ONLINE, State.ONLINE_COMMAND)

    @property
    def off_hook(self) -> bool:
        return self.state not in (State.COMMAND,)

    def take_output(self) -> bytes:
        out = bytes(self._output)
        self._output.clear()
        return out

    def has_output(self) -> bool:
        return bool(self._output)

    def accepting(self) -> bool:
        """False while the DTE should hold off (CTS low with &K3)."""
        return self.cts

    def dte_room(self) -> int:
        """How many bytes the modem would take from its DTE now: what fits its transmit
        buffer in data mode with RTS/CTS, a UART's worth otherwise. A port reads no
        more than this, so what the modem cannot take stays in the port (and the kernel
        back-pressures the writer) rather than in a buffer of the port's own."""
        if self.state is State.ONLINE and self.settings.flow_control == 3:
            return self._switch.tx_space(self) if self.cts else 0
        return DTE_CHUNK

    def set_dtr(self, level: bool) -> None:
        if level == self.dtr:
            return
        self.dtr = level
        self._trace("modem.dtr", modem=self.name, level=level)
        if self._dtr_timer is not None:
            self._dtr_timer.cancel()
            self._dtr_timer = None
        if not level:
            detect = self.settings.s.get(25, 5) / 100
            self._dtr_timer = self._scheduler.call_later(detect, self._dtr_dropped)

    def receive(self, data: bytes) -> int:
        """Bytes from the DTE, all arriving at the scheduler's current time.

        Returns how many were taken. With RTS/CTS flow control (&K3) in data mode the
        modem takes only what fits its transmit buffer; the caller holds the rest (and
        stops reading its port) until `accepting()` turns true again, as a UART does
        when CTS drops.
        """
        consumed = 0
        for byte in data:
            if self.state is State.ONLINE:
                break
            self._receive_command_byte(byte)
            consumed += 1
        if self.state is State.ONLINE and consumed < len(data):
            consumed += self._receive_data(data[consumed:])
        self._changed()
        return consumed

    # -- callbacks from the switch -----------------------------------------------------

    def incoming_ring(self) -> None:
        if self.state not in (State.COMMAND,):
            return
        s = self.settings.s
        s[1] = min(255, s.get(1, 0) + 1)
        if self._ring_reset is not None:
            self._ring_reset.cancel()
        self._ring_reset = self._scheduler.call_later(RING_TIMEOUT, self._rings_over)
        self.ri = True
        self._result("RING")
        rings_to_answer = s.get(0, 0)
        dtr_blocks = self.settings.dtr_mode >= 2 and not self.dtr
        if rings_to_answer and s[1] >= rings_to_answer and not dtr_blocks:
            self._start_answer()
        self._changed()

    def ring_ended(self) -> None:
        self.ri = False
        self._changed()

    def caller_id(self, cid: CallerId) -> None:
        if self.state is not State.COMMAND:
            return
        self._pending_cid = cid
        mode = self.settings.vcid
        if mode == 1:
            self._emit_lines(self._format_cid(cid))
        elif mode == 2:
            self._emit_lines([_mdmf(cid).hex().upper()])
        self._changed()

    def calling_party_gone(self) -> None:
        """The caller gave up before we answered."""
        if self._ring_reset is not None:
            self._ring_reset.cancel()
        self._rings_over()
        if self.state is State.ANSWERING:
            self._end_call_setup("NO CARRIER")
        self._changed()

    def call_failed(self, reason: str) -> None:
        """The switch could not connect our dial: busy / no-answer / no-dialtone / no-carrier."""
        if self.state is not State.DIALING:
            return
        x = self.settings.x_level
        if self.profile.connect_on_link:
            text = "NO CARRIER"  # no link: an emulator knows no other failure
        elif reason == "busy":
            text = "BUSY" if x >= 3 else "NO CARRIER"
        elif reason == "no-dialtone":
            text = self.profile.no_dialtone_text if x in (2, 4) else "NO CARRIER"
        elif reason == "no-answer":
            text = "NO ANSWER" if x >= 4 else "NO CARRIER"
        else:
            text = "NO CARRIER"
        self._record_failure()
        self._end_call_setup(text)
        self._strand()
        self._changed()

    def link_up(self) -> None:
        """`connect_on_link` profiles: the link to the callee is up, nobody answered yet.

        The emulator reports CONNECT at once and passes data; whether anybody is there
        shows only later (`connected`, or text and carrier loss).
        """
        if self.state is not State.DIALING:
            return
        self._cancel_pending()
        self.rate = self.profile.dte_rate
        self.v42 = False
        self._enter(Event.LINK_UP)
        self.dcd_carrier = True
        self.ri = False
        self._last_data_at = self._scheduler.now
        self._plus_count = 0
        self._result(self._connect_text())
        self._trace("modem.link_up", modem=self.name)
        self._changed()

    def connected(self, rate: int, v42: bool) -> None:
        """Training finished: carrier up at `rate`."""
        if self.in_call and not self.far_end_answered:
            # The callee answered a call whose link was already up: nothing to say.
            self.far_end_answered = True
            self.rate, self.v42 = rate, v42
            self._trace("modem.far_end_answered", modem=self.name, rate=rate)
            self._changed()
            return
        if self.state not in (State.DIALING, State.ANSWERING):
            return
        if self.state is State.DIALING:
            self._failures.pop(self._dial_number, None)
        self._cancel_pending()
        self.rate = rate
        self.v42 = v42
        self.far_end_answered = True
        self._enter(Event.CONNECTED)
        self.dcd_carrier = True
        self.ri = False
        self._last_data_at = self._scheduler.now
        self._plus_count = 0
        for line in self._progress_reports():
            self._intermediate(line)
        self._result(self._connect_text())
        self._trace("modem.connect", modem=self.name, rate=rate, v42=v42)
        self._changed()

    def carrier_lost(self) -> None:
        """The far end hung up or the line dropped."""
        if self.state in (State.DIALING, State.ANSWERING):
            dialing = self.state is State.DIALING
            self._end_call_setup("NO CARRIER")
            if dialing:
                self._strand()
            return
        if not self.in_call:
            return
        delay = self.settings.s.get(10, 14) / 10 if self.profile.carrier_loss_wait else 0.0
        self.dcd_carrier = False
        self._changed()
        timer = self._scheduler.call_later(delay, self._report_carrier_loss)
        self._pending_timers.append(timer)

    def line_data(self, data: bytes) -> None:
        if self.state is State.ONLINE:
            self._output += data
        elif self.state is State.ONLINE_COMMAND:
            self._rx_held += data[: 4096 - len(self._rx_held)]
        self._changed()

    def tx_space_available(self) -> None:
        self._update_flow()
        self._changed()

    # -- faults ------------------------------------------------------------------------

    def power_cycle(self) -> None:
        """A spontaneous reset: the call drops, settings return to the stored profile."""
        self._trace("modem.reset", modem=self.name)
        self._abandon_call()
        self.settings = self.stored.copy()
        self._reader = _Reader.WAIT_A
        self._line.clear()
        self._changed()

    def emit_raw(self, data: bytes) -> None:
        """Garbage, NULs or anything else a broken modem might send."""
        self._output += data
        self._changed()

    # -- command-mode input ------------------------------------------------------------

    def _receive_command_byte(self, byte: int) -> None:
        now = self._scheduler.now
        if self.state is State.STRANDED:
            self._swallow(byte)
            return
        if self.state in (State.DIALING, State.ANSWERING):
            if now - self._command_end > ABORT_GRACE:
                self._trace("modem.abort", modem=self.name, state=self.state.value)
                self._switch.hang_up(self)
                self._end_call_setup("NO CARRIER")
            return
        if self.unresponsive:
            return
        if self.settings.echo or self.profile.echo_ignores_e0:
            self._output.append(byte)
        char = byte & 0x7F
        s = self.settings.s
        if self._reader is _Reader.WAIT_A:
            if char in (0x41, 0x61):  # A / a
                self._reader = _Reader.WAIT_T
        elif self._reader is _Reader.WAIT_T:
            if char in (0x54, 0x74):  # T / t
                self._reader = _Reader.IN_LINE
                self._line.clear()
                self._line_overflow = False
            elif char == 0x2F:  # '/': repeat the last command line
                self._reader = _Reader.WAIT_A
                self._command_end = now
                self._execute_line(self._last_line)
            elif char in (0x41, 0x61):
                pass
            else:
                self._reader = _Reader.WAIT_A
        else:
            if char == s.get(3, 13):
                self._reader = _Reader.WAIT_A
                self._command_end = now
                if self._line_overflow:
                    self._result("ERROR")
                    return
                self._last_line = bytes(self._line)
                self._execute_line(self._last_line)
            elif char == s.get(5, 8):
                if self._line:
                    self._line.pop()
            elif char < 0x20 or char == 0x7F:
                pass
            elif len(self._line) >= self.profile.max_command_length:
                self._line_overflow = True
            else:
                self._line.append(char)

    def _swallow(self, byte: int) -> None:
        """Off hook after a failed dial: the next line is eaten, not echoed, answered OK.

        tcpser reads the DTE in data mode while it is off hook with no connection, and
        on the next input hangs up and says OK instead of running the command.
        """
        if byte & 0x7F != self.settings.s.get(3, 13):
            self._swallowed.append(byte)
            return
        self._trace("modem.swallowed", modem=self.name, line=self._swallowed.decode("latin-1"))
        self._swallowed.clear()
        self._abandon_call()
        self._result("OK")

    def _execute_line(self, line: bytes) -> None:
        text = line.decode("ascii", "replace")
        self._trace("modem.command", modem=self.name, line="AT" + text)
        if self.profile.command_syntax == "tcpser":
            table, commands = TCPSER_COMMANDS, CommandLine(text, max_digits=None)
        else:
            table, commands = COMMANDS, CommandLine(text.replace(" ", ""))  # spaces ignored
        try:
            while not commands.done():
                letter = commands.next_char().upper()
                handler = table.get(letter)
                if handler is None:
                    if table is COMMANDS:
                        raise _CommandError
                    commands.number(default=0)  # tcpser ignores what it does not know
                    continue
                handler(self, commands)
        except _CommandError:
            self._result("ERROR")
            return
        except (_Deferred, _Silent):
            return
        self._result("OK")

    # -- the command table (V.250) ---------------------------------------------------------

    @staticmethod
    def _value(c: CommandLine, allowed: Container[int]) -> int:
        value = c.number(default=0)
        if value is None or value not in allowed:
            raise _CommandError
        return value

    def _cmd_nothing(self, c: CommandLine) -> None:
        """A separator (` `, `;`)."""

    def _cmd_dial(self, c: CommandLine) -> None:
        self._dial(c.rest())
        raise _Deferred

    def _cmd_answer(self, c: CommandLine) -> None:
        c.rest()
        self._answer_command()
        raise _Deferred

    def _cmd_ampersand(self, c: CommandLine) -> None:
        s = self.settings
        sub = c.next_char().upper()
        value = c.number(default=0)
        if sub == "C" and value in (0, 1):
            s.dcd_mode = value
        elif sub == "D" and value in (0, 1, 2, 3):
            s.dtr_mode = value
        elif sub == "K" and value in (0, 3, 4):
            s.flow_control = value
            self._update_flow()
        elif sub == "F" and value == 0:
            self.settings = Settings.factory(self.profile)
        elif sub == "W" and value == 0:
            self.stored = self.settings.copy()
        elif sub == "V" and value == 0:
            self._info(self._settings_dump())
        else:
            raise _CommandError

    def _cmd_register(self, c: CommandLine) -> None:
        s = self.settings
        register = c.number(default=None)
        if register is None or register not in KNOWN_S_REGISTERS:
            raise _CommandError
        op = c.next_char()
        if op == "?":
            self._info([f"{s.s.get(register, 0):03d}"])
        elif op == "=":
            value = c.number(default=0)
            if value is None or not 0 <= value <= 255:
                raise _CommandError
            s.s[register] = value
        else:
            raise _CommandError

    def _cmd_echo(self, c: CommandLine) -> None:
        self.settings.echo = bool(self._value(c, (0, 1)))

    def _cmd_verbose(self, c: CommandLine) -> None:
        self.settings.verbose = bool(self._value(c, (0, 1)))

    def _cmd_quiet(self, c: CommandLine) -> None:
        self.settings.quiet = bool(self._value(c, (0, 1)))

    def _cmd_x_level(self, c: CommandLine) -> None:
        self.settings.x_level = self._value(c, range(5))

    def _cmd_progress(self, c: CommandLine) -> None:
        self.settings.progress_reports = self._value(c, range(3))

    def _cmd_speaker(self, c: CommandLine) -> None:
        self._value(c, range(4))  # speaker volume / monitor: nothing to model

    def _cmd_bell(self, c: CommandLine) -> None:
        self._value(c, (0, 1))  # Bell vs ITU modulation at 300/1200: nothing to model

    def _cmd_dial_method(self, c: CommandLine) -> None:
        self._value(c, (0,))  # default tone/pulse dialling

    def _cmd_identity(self, c: CommandLine) -> None:
        value = self._value(c, range(1000))
        if not self.profile.identity_text:
            return  # an emulator: OK and nothing else, whatever was asked
        if value not in self.profile.identity:
            raise _CommandError
        self._info(list(self.profile.identity[value]))

    def _cmd_reset(self, c: CommandLine) -> None:
        self._value(c, (0, 1))
        self._reset()

    def _reset(self) -> None:
        if not self.profile.z_resets:
            return  # an emulator: ATZ says OK and keeps V0, E0 ...
        self._abandon_call()
        self.settings = self.stored.copy()

    def _cmd_hook(self, c: CommandLine) -> None:
        self._hook(self._value(c, (0, 1)))

    def _cmd_online(self, c: CommandLine) -> None:
        self._value(c, (0, 1))
        self._go_online()
        raise _Deferred

    def _cmd_extended(self, c: CommandLine) -> None:
        name, op, arg = c.extended()
        s = self.settings
        settable = {
            "VCID": ("vcid", 2),
            "MR": ("report_modulation", 2),
            "ER": ("report_error_control", 1),
            "DR": ("report_compression", 1),
        }
        if name in settable:
            attr, highest = settable[name]
            if op == "?":
                self._info([f"+{name}: {getattr(s, attr)}"])
            elif op == "=?":
                self._info([f"+{name}: (0-{highest})"])
            elif op == "=" and arg.isdigit() and int(arg) <= highest:
                setattr(s, attr, int(arg))
            else:
                raise _CommandError
            return
        fixed = {
            "GCAP": self.profile.gcap,
            "GMI": self.profile.gmi,
            "GMM": self.profile.gmm,
            "GMR": self.profile.gmr,
        }
        if name in fixed and op == "":
            self._info([fixed[name]])
        elif name == "FCLASS" and ((op == "=" and arg == "0") or op == "?"):
            if op == "?":
                self._info(["0"])
        else:
            raise _CommandError

    # -- the command table of a tcpser-like emulator (go4retro/tcpser getcmd.c) -----------

    def _tcpser_prefix(self, c: CommandLine) -> None:
        """`%X`, `\\X`, `:X`, `-X`: vendor prefixes; the command after one is ignored."""
        c.skip_spaces()
        if c.next_char():
            c.number(default=0)

    def _tcpser_ampersand(self, c: CommandLine) -> None:
        c.skip_spaces()
        sub = c.next_char().upper()
        if sub == "Z":  # a stored number: &Z<n>=<text>, kept nowhere here
            self._tcpser_register_syntax(c)
            return
        value = c.number(default=0)
        if sub == "C":
            self.settings.dcd_mode = self._checked(value, (0, 1))
        elif sub == "K":
            flow = {0: 0, 3: 3, 4: 4, 5: 4, 6: 3}
            self.settings.flow_control = flow[self._checked(value, flow)]
            self._update_flow()
        # every other &-command (&D, &F, &W, &V ...) is accepted and ignored

    @staticmethod
    def _checked(value: int | None, allowed: Container[int]) -> int:
        if value is None or value not in allowed:
            raise _CommandError
        return value

    def _tcpser_register_syntax(self, c: CommandLine) -> tuple[int, str | None]:
        """`<n>=<data>` or `<n>?` after S or &Z: (register, data or None for a query)."""
        register = c.number(default=None)
        if register is None:
            raise _CommandError
        c.skip_spaces()
        op = c.next_char()
        if op == "?":
            return register, None
        if op != "=":
            raise _CommandError
        c.skip_spaces()
        return register, c.word()

    def _tcpser_register(self, c: CommandLine) -> None:
        register, data = self._tcpser_register_syntax(c)
        if not 0 <= register < 100:
            raise _CommandError
        s = self.settings.s
        if data is None:
            # tcpser writes CR LF and three digits; the final result supplies the next CR LF
            self._write(self._crlf() + f"{s.get(register, 0):03d}".encode())
            return
        digits = ""
        for char in data:
            if not char.isdigit():
                break
            digits += char
        s[register] = int(digits or "0") & 0xFF  # atoi, stored in a char

    def _tcpser_dial(self, c: CommandLine) -> None:
        rest = c.rest().lstrip(" ")
        if rest[:1].upper() in ("T", "P"):
            rest = rest[1:]
        elif rest[:1].upper() == "L" and not rest[1:].strip():
            rest = self._last_dialled  # ATDL: the last number again
        target = rest.strip(" ")
        if not target:
            if not self.profile.swallow_after_failed_dial:
                raise _CommandError
            # off hook with nothing to dial: no result, the next line is swallowed
            self._trace("modem.off_hook_no_number", modem=self.name)
            self._strand()
            raise _Silent
        if self.state is not State.COMMAND:
            raise _CommandError
        self._last_dialled = target
        number = address_or_number(target)
        refusal = self._blacklist_check(number)
        if refusal is not None:
            self._result(refusal)
            raise _Deferred
        self._place(number)
        raise _Deferred

    def _tcpser_answer(self, c: CommandLine) -> None:
        """`A` and `O` (and so the A of `+GCAP`): answer if ringing, else go back online
        if a call is held, else hang up - and no final result in any case."""
        c.rest()
        if self.state is State.COMMAND and self._switch.ringing(self):
            self._start_answer()
        elif self.state is State.ONLINE_COMMAND:
            self._enter(Event.RESUMED)  # tcpser says nothing when it goes back online
            self._last_data_at = self._scheduler.now
            if self._rx_held:
                self._output += self._rx_held
                self._rx_held.clear()
            self._update_flow()
        else:
            self._abandon_call()
        raise _Silent

    def _tcpser_quiet(self, c: CommandLine) -> None:
        self.settings.quiet = self._value(c, (0, 1, 2)) == 1

    # -- dialling ----------------------------------------------------------------------

    def _dial(self, dial_string: str) -> None:
        if self.state not in (State.COMMAND, State.OFF_HOOK):
            raise _CommandError
        if self.settings.dtr_mode >= 2 and not self.dtr:
            raise _CommandError
        if self.profile.dials_addresses:
            address = dial_string.strip(" ")
            if address[:1].upper() in ("T", "P"):
                address = address[1:]
            if is_address(address):
                self._dial_buffer = ""
                self._place(address)
                return
        digits, stay_in_command, wait_quiet = parse_dial_string(dial_string)
        if digits is None:
            raise _CommandError
        number = self._dial_buffer + digits
        if stay_in_command:
            # `ATD123;`: dial these digits, stay off hook in command mode, OK when done
            self._dial_buffer = number
            self._enter(Event.STAY_OFF_HOOK)
            self._switch.set_off_hook(self, True)
            self._finish_later("OK", dial_duration(digits))
            raise _Deferred
        self._dial_buffer = ""
        if not number:
            raise _CommandError
        refusal = self._blacklist_check(number)
        if refusal is not None:
            if self.settings.x_level < 4:
                refusal = self.profile.blacklist_substitute
            self._trace("modem.dial_refused", modem=self.name, number=number, result=refusal)
            self._result(refusal)
            return
        self._place(number, wait_quiet=wait_quiet)

    def _place(self, number: str, *, wait_quiet: bool = False) -> None:
        self._dial_number = number
        self.far_end_answered = False
        self._enter(Event.DIAL)
        self._trace("modem.dial", modem=self.name, number=number)
        self._switch.place_call(self, number, wait_quiet=wait_quiet)

    def _finish_later(self, text: str, delay: float) -> None:
        timer = self._scheduler.call_later(delay, lambda: self._deferred_result(text))
        self._pending_timers.append(timer)

    def _deferred_result(self, text: str) -> None:
        self._result(text)
        self._changed()

    def _blacklist_check(self, number: str) -> str | None:
        rule = self.blacklist
        if rule is None:
            return None
        now = self._scheduler.now
        failures = [t for t in self._failures.get(number, []) if now - t < rule.window]
        self._failures[number] = failures
        if not failures:
            return None
        if len(failures) >= rule.max_attempts:
            return "BLACKLISTED"
        delay = rule.delays[min(len(failures), len(rule.delays)) - 1]
        if now - failures[-1] < delay:
            return "DELAYED"
        return None

    def _record_failure(self) -> None:
        if self.blacklist is not None and self._dial_number:
            self._failures.setdefault(self._dial_number, []).append(self._scheduler.now)

    # -- answering ---------------------------------------------------------------------

    def _answer_command(self) -> None:
        if self.state not in (State.COMMAND, State.OFF_HOOK):
            raise _CommandError
        self._start_answer()

    def _start_answer(self) -> None:
        self.far_end_answered = True
        self._enter(Event.ANSWER)
        self._trace("modem.answer", modem=self.name)
        if not self._switch.answer_call(self):
            # off hook with nobody calling: wait for a carrier that never comes
            wait = self.settings.s.get(7, 50)
            timer = self._scheduler.call_later(wait, self._answer_timed_out)
            self._pending_timers.append(timer)

    def _answer_timed_out(self) -> None:
        if self.state is State.ANSWERING:
            self._switch.hang_up(self)
            self._end_call_setup("NO CARRIER")
            self._changed()

    def _rings_over(self) -> None:
        self._ring_reset = None
        self.settings.s[1] = 0
        self.ri = False
        self._pending_cid = None
        self._changed()

    # -- in-call -----------------------------------------------------------------------

    def _receive_data(self, data: bytes) -> int:
        taken = len(data)
        if self.settings.flow_control == 3:
            taken = min(taken, self._switch.tx_space(self))
            data = data[:taken]
        elif self.settings.flow_control == 4:
            data = self._strip_software_flow(data)
        if data:
            self._watch_for_escape(data)
            sent = self._switch.transmit(self, data)
            if sent < len(data):
                self._trace("modem.overrun", modem=self.name, lost=len(data) - sent)
        self._update_flow()
        return taken

    def _strip_software_flow(self, data: bytes) -> bytes:
        if XON in data or XOFF in data:
            for byte in data:
                if byte == XOFF:
                    self._dte_paused = True
                elif byte == XON:
                    self._dte_paused = False
            data = data.replace(bytes([XON]), b"").replace(bytes([XOFF]), b"")
        return data

    def _update_flow(self) -> None:
        if self.state is not State.ONLINE:
            self.cts = True
            return
        space = self._switch.tx_space(self)
        room = space > 0
        if self.settings.flow_control == 3:
            self.cts = room
        elif self.settings.flow_control == 4:
            if not room and not self._xoff_sent:
                self._output.append(XOFF)
                self._xoff_sent = True
            elif room and self._xoff_sent:
                self._output.append(XON)
                self._xoff_sent = False
            self.cts = True
        else:
            self.cts = True

    def _watch_for_escape(self, data: bytes) -> None:
        """Track `+++` framed by guard times (S2, S12).

        All bytes of one chunk arrive at the same instant, so only the trailing run of
        escape characters can start or continue an escape; anything before it in the
        chunk is data that arrived with no guard time before the run.
        """
        now = self._scheduler.now
        s = self.settings.s
        escape_char = s.get(2, 43)
        guard = s.get(12, 50) / 50
        if self._escape_timer is not None:
            self._escape_timer.cancel()
            self._escape_timer = None
        run = len(data) - len(data.rstrip(bytes([escape_char]))) if escape_char < 128 else 0
        count = -1
        if run == 0:
            pass
        elif run < len(data):
            count = 0 if guard <= 0 else -1
        elif 0 < self._plus_count < 3 and now - self._last_plus_at <= guard:
            count = self._plus_count
        elif now - self._last_data_at >= guard:
            count = 0
        self._last_data_at = now
        if count < 0 or count + run > 3:
            self._plus_count = 0
            return
        self._plus_count = count + run
        self._last_plus_at = now
        if self._plus_count == 3:
            self._escape_timer = self._scheduler.call_later(guard, self._escape)

    def _escape(self) -> None:
        self._escape_timer = None
        if self.state is State.ONLINE and self._plus_count == 3:
            self._plus_count = 0
            self._enter(Event.ESCAPED)
            self.cts = True
            self._trace("modem.escape", modem=self.name)
            self._result("OK")
            self._changed()

    def _go_online(self) -> None:
        if self.state is not State.ONLINE_COMMAND:
            self._result("NO CARRIER")
            return
        self._enter(Event.RESUMED)
        self._last_data_at = self._scheduler.now
        self._plus_count = 0
        self._result(self._connect_text())
        if self._rx_held:
            self._output += self._rx_held
            self._rx_held.clear()
        self._update_flow()

    def _hook(self, value: int) -> None:
        if value == 1:
            if self.state is State.COMMAND:
                self._enter(Event.STAY_OFF_HOOK)
                self._switch.set_off_hook(self, True)
            return
        was_in_call = self.in_call
        rejecting = self.profile.hangup_rejects_ringing and self.state is State.COMMAND
        if rejecting and self._switch.reject_call(self):
            self._trace("modem.reject", modem=self.name)
            self._rings_over()
        self._abandon_call()
        if self.profile.double_hangup_reply:
            self._result("NO CARRIER" if was_in_call else "OK")

    def _abandon_call(self) -> None:
        """Go on hook from any state, silently (the caller reports the result)."""
        was_active = self.state is not State.COMMAND
        self._cancel_pending()
        if self._escape_timer is not None:
            self._escape_timer.cancel()
            self._escape_timer = None
        self._enter(Event.ON_HOOK)
        self.dcd_carrier = False
        self.cts = True
        self.ri = False
        self._dial_buffer = ""
        self._rx_held.clear()
        if was_active:
            self._switch.hang_up(self)
            self._switch.set_off_hook(self, False)

    def _report_carrier_loss(self) -> None:
        if not self.in_call:
            return
        self._trace("modem.carrier_lost", modem=self.name)
        answered = self.far_end_answered
        self._abandon_call()
        self._result("NO CARRIER")
        if not answered:
            self._strand()  # the link came up but nobody ever answered: a failed dial
        self._changed()

    def _strand(self) -> None:
        """After a failed dial: stay off hook until the next command line (emulators)."""
        if not self.profile.swallow_after_failed_dial:
            return
        self._enter(Event.STRANDED)
        self._swallowed.clear()
        self._switch.set_off_hook(self, True)
        self._trace("modem.stranded", modem=self.name)

    def _enter(self, event: Event) -> None:
        self.state = next_state(self.state, event)

    def _end_call_setup(self, text: str) -> None:
        self._abandon_call()
        self._result(text)

    def _dtr_dropped(self) -> None:
        self._dtr_timer = None
        if self.dtr:
            return
        mode = self.settings.dtr_mode
        if mode == 0:
            return
        if mode == 1:
            if self.state is State.ONLINE:
                self._enter(Event.ESCAPED)
                self._result("OK")
        elif mode == 2:
            if self.state is not State.COMMAND:
                self._trace("modem.dtr_hangup", modem=self.name)
                in_call = self.in_call
                self._abandon_call()
                self._result("NO CARRIER" if in_call else "OK")
        else:
            self._trace("modem.dtr_reset", modem=self.name)
            self._abandon_call()
            self.settings = self.stored.copy()
        self._changed()

    def _cancel_pending(self) -> None:
        for timer in self._pending_timers:
            timer.cancel()
        self._pending_timers.clear()

    # -- output ------------------------------------------------------------------------

    def _changed(self) -> None:
        self.on_change(self)

    def _write(self, data: bytes) -> None:
        if self.reply_delay > 0:
            timer = self._scheduler.call_later(self.reply_delay, lambda: self._late(data, timer))
            self._late_replies.append(timer)
        else:
            self._output += data

    def _late(self, data: bytes, timer: Timer) -> None:
        self._late_replies.remove(timer)
        self._output += data
        self._changed()

    def _crlf(self) -> bytes:
        s = self.settings.s
        return bytes([s.get(3, 13), s.get(4, 10)])

    def _result(self, text: str) -> None:
        """A final or unsolicited result code, framed per V and suppressed by Q."""
        if self.settings.quiet:
            return
        self._trace("modem.result", modem=self.name, result=text)
        if self.settings.verbose:
            crlf = self._crlf()
            self._write(crlf + text.encode() + crlf)
            return
        code = self.profile.numeric_code(text)
        if code is None:
            self._write(text.encode() + self._crlf())
        elif self.profile.numeric_crlf:
            crlf = self._crlf()
            self._write(crlf + str(code).encode() + crlf)
        else:
            self._write(str(code).encode() + bytes([self.settings.s.get(3, 13)]))

    def _intermediate(self, text: str) -> None:
        """Negotiation reports: always text, V framing, suppressed by Q1."""
        if self.settings.quiet:
            return
        crlf = self._crlf()
        if self.settings.verbose:
            self._write(crlf + text.encode() + crlf)
        else:
            self._write(text.encode() + crlf)

    def _info(self, lines: list[str]) -> None:
        crlf = self._crlf()
        body = crlf.join(line.encode() for line in lines) + crlf
        self._write(crlf + body if self.settings.verbose else body)

    def _emit_lines(self, lines: list[str]) -> None:
        self._info(lines)

    def _format_cid(self, cid: CallerId) -> list[str]:
        sep = " = " if self.profile.cid_spaces else "="
        if cid.presentation == "private":
            number: str | None = "P"
        elif cid.presentation == "unavailable":
            number = "O"
        else:
            number = cid.number or "O"
        lines = [f"DATE{sep}{cid.date}", f"TIME{sep}{cid.time}", f"NMBR{sep}{number}"]
        if cid.name and cid.presentation == "allowed":
            lines.append(f"NAME{sep}{cid.name}")
        return lines

    def _connect_text(self) -> str:
        if self.settings.x_level == 0:
            return "CONNECT"
        style = self.profile.connect_style
        if style == "fixed":
            return f"CONNECT {self.profile.dte_rate}"
        if style == "usr":
            if self.v42:
                return f"CONNECT {self.rate}/ARQ/{modulation_for(self.rate)}/LAPM/V42BIS"
            return f"CONNECT {self.rate}/NONE"
        if style == "dte" and self.settings.progress_reports != 2:
            return f"CONNECT {self.profile.dte_rate}"
        return f"CONNECT {self.rate}"

    def _progress_reports(self) -> list[str]:
        s = self.settings
        lines: list[str] = []
        styles = self.profile.progress_styles
        if "hayes" in styles and s.progress_reports >= 1:
            lines.append(f"CARRIER {self.rate}")
            lines.append("PROTOCOL: LAPM" if self.v42 else "PROTOCOL: NONE")
            lines.append("COMPRESSION: V.42BIS" if self.v42 else "COMPRESSION: NONE")
        if "v250" in styles:
            if s.report_modulation:
                lines.append(f"+MCR: {modulation_for(self.rate)}")
                lines.append(f"+MRR: {self.rate},{self.rate}")
            if s.report_error_control:
                lines.append("+ER: LAPM" if self.v42 else "+ER: NONE")
            if s.report_compression:
                lines.append("+DR: V42B" if self.v42 else "+DR: NONE")
        return lines

    def _settings_dump(self) -> list[str]:
        s = self.settings
        return [
            f"E{int(s.echo)} Q{int(s.quiet)} V{int(s.verbose)} X{s.x_level} "
            f"&C{s.dcd_mode} &D{s.dtr_mode} &K{s.flow_control} W{s.progress_reports}",
            " ".join(f"S{r:02d}:{v:03d}" for r, v in sorted(s.s.items())),
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile.name,
            "state": self.state.value,
            "dtr": self.dtr,
            "dcd": self.dcd,
            "rate": self.rate,
        }


def _accepts(allowed: Container[int]) -> Handler:
    """A tcpser command that only checks its number (speaker, Bell/ITU, ...)."""

    def handler(modem: VirtualModem, c: CommandLine) -> None:
        modem._value(c, allowed)

    return handler


def _ignores_number(modem: VirtualModem, c: CommandLine) -> None:
    c.number(default=0)


V = VirtualModem

COMMANDS: dict[str, Handler] = {
    " ": V._cmd_nothing,
    ";": V._cmd_nothing,
    "D": V._cmd_dial,
    "A": V._cmd_answer,
    "&": V._cmd_ampersand,
    "+": V._cmd_extended,
    "S": V._cmd_register,
    "E": V._cmd_echo,
    "V": V._cmd_verbose,
    "Q": V._cmd_quiet,
    "X": V._cmd_x_level,
    "W": V._cmd_progress,
    "L": V._cmd_speaker,
    "M": V._cmd_speaker,
    "B": V._cmd_bell,
    "T": V._cmd_dial_method,
    "P": V._cmd_dial_method,
    "I": V._cmd_identity,
    "Z": V._cmd_reset,
    "H": V._cmd_hook,
    "O": V._cmd_online,
}
"""V.250 command letters; a letter that is not here is answered ERROR."""

TCPSER_COMMANDS: dict[str, Handler] = {
    " ": V._cmd_nothing,
    "%": V._tcpser_prefix,
    "\\": V._tcpser_prefix,
    ":": V._tcpser_prefix,
    "-": V._tcpser_prefix,
    "&": V._tcpser_ampersand,
    "D": V._tcpser_dial,
    "A": V._tcpser_answer,
    "O": V._tcpser_answer,
    "S": V._tcpser_register,
    "E": V._cmd_echo,
    "V": V._cmd_verbose,
    "Q": V._tcpser_quiet,
    "X": V._cmd_x_level,
    "W": V._cmd_progress,
    "B": _accepts(range(2)),
    "L": _accepts(range(1, 4)),
    "M": _accepts(range(4)),
    "N": _accepts(range(2)),
    "Y": _accepts(range(2)),
    "T": _ignores_number,
    "P": _ignores_number,
    "I": V._cmd_identity,
    "Z": V._cmd_reset,
    "H": V._cmd_hook,
}
"""go4retro/tcpser `mdm_parse_cmd`: any other letter (`+`, `C`, `G`, `=`, ...) is skipped
with the digits after it, which is how `AT+VCID=1` becomes V0, C, I and a dial of `=1`."""


def _mdmf(cid: CallerId) -> bytes:
    """The MDMF caller-ID packet (Bellcore GR-30) that +VCID=2 shows as hex."""
    params = bytearray()

    def param(kind: int, value: bytes) -> None:
        params.extend((kind, len(value)))
        params.extend(value)

    param(0x01, (cid.date + cid.time).encode())
    if cid.presentation == "allowed" and cid.number:
        param(0x02, cid.number.encode())
    else:
        param(0x04, b"P" if cid.presentation == "private" else b"O")
    if cid.presentation == "allowed" and cid.name:
        param(0x07, cid.name.encode())
    packet = bytes([0x80, len(params)]) + params
    checksum = (-sum(packet)) & 0xFF
    return packet + bytes([checksum])
