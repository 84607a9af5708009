"""Personalities of the virtual modem.

A real modem fleet is never uniform: numeric result tables differ by vendor, so do
spellings, CONNECT suffixes, caller-ID layout and quirks such as echo that survives
`E0`. Each `ModemProfile` bundles one such personality so that a driver tested against
all of them has met the traps it will meet in the field (see
`shared/reference/hayes-field-notes.md` §1.2-1.8 for the sources of each difference).

The fourth, `emulator`, is not a modem at all but a software Hayes emulator of the
tcpser kind (modem-over-IP adapters, Wi-Fi "modems"): its flags below switch on each
of its deviations separately, so that every other profile keeps its behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ..vendors import CONEXANT as CONEXANT_CODES
from ..vendors import HAYES, USROBOTICS, VendorCodes

ConnectStyle = Literal["rate", "usr", "dte", "fixed"]
"""`rate`: CONNECT <line rate>; `usr`: CONNECT 33600/ARQ/...; `dte`: CONNECT <DTE rate>
unless W2; `fixed`: always CONNECT <DTE rate> (an emulator has no line rate)."""
ProgressStyle = Literal["hayes", "v250"]
CommandSyntax = Literal["v250", "tcpser"]
"""`v250`: extended `+` commands, unknown commands answered ERROR. `tcpser`: the
parser of go4retro/tcpser `getcmd.c` - no extended syntax (`+` is skipped like any
unknown letter and the letters after it run as basic commands), `%`, `\\`, `:`, `-`
prefixes swallow one letter, unknown letters are ignored, `D` takes the rest of the line
verbatim as the address to dial, `A`/`O` end the line."""

TCPSER_CODES = VendorCodes(
    # go4retro/tcpser src/modem_core.h (1.1.x): the numbers it prints in V0.
    connect_rates=MappingProxyType(
        {
            600: 9,
            1200: 5,
            2400: 10,
            4800: 11,
            7200: 24,
            9600: 12,
            12000: 25,
            14400: 13,
            19200: 14,
            38400: 28,
            57600: 18,
            115200: 19,
            230400: 20,
        }
    ),
    delayed=88,  # tcpser never sends DELAYED or BLACKLISTED
    blacklisted=89,
)

BASIC_CODES: dict[str, int] = {
    "OK": 0,
    "CONNECT": 1,
    "RING": 2,
    "NO CARRIER": 3,
    "ERROR": 4,
    "NO DIALTONE": 6,
    "BUSY": 7,
    "NO ANSWER": 8,
}

MODULATION_BY_RATE: tuple[tuple[int, str], ...] = (
    (300, "V21"),
    (1200, "V22"),
    (2400, "V22B"),
    (9600, "V32"),
    (14400, "V32B"),
    (33600, "V34"),
)

STANDARD_RATES: tuple[int, ...] = (
    300,
    1200,
    2400,
    4800,
    7200,
    9600,
    12000,
    14400,
    16800,
    19200,
    21600,
    24000,
    26400,
    28800,
    31200,
    33600,
)


def modulation_for(rate: int) -> str:
    for limit, name in MODULATION_BY_RATE:
        if rate <= limit:
            return name
    return "V34"


@dataclass(frozen=True)
class FactorySettings:
    echo: bool = True
    verbose: bool = True
    quiet: bool = False
    x_level: int = 4
    dcd_mode: int = 1  # &C
    dtr_mode: int = 2  # &D
    flow_control: int = 3  # &K
    progress_reports: int = 0  # W
    vcid: int = 0
    report_modulation: int = 0  # +MR
    report_error_control: int = 0  # +ER
    report_compression: int = 0  # +DR
    s_registers: MappingProxyType[int, int] = field(
        default_factory=lambda: MappingProxyType(
            {
                0: 0,
                1: 0,
                2: 43,
                3: 13,
                4: 10,
                5: 8,
                6: 2,
                7: 50,
                8: 2,
                10: 14,
                12: 50,
                25: 5,
            }
        )
    )


@dataclass(frozen=True)
class ModemProfile:
    name: str
    description: str
    identity: MappingProxyType[int, tuple[str, ...]]
    codes: VendorCodes
    no_dialtone_text: str = "NO DIALTONE"
    # What a low X level sends in place of DELAYED / BLACKLISTED (vendors disagree).
    blacklist_substitute: str = "NO CARRIER"
    connect_style: ConnectStyle = "rate"
    progress_styles: frozenset[ProgressStyle] = frozenset({"v250"})
    echo_ignores_e0: bool = False
    cid_spaces: bool = True
    cid_before_first_ring: bool = False
    etsi_blacklist: bool = False
    max_command_length: int = 40
    max_rate: int = 33600
    dte_rate: int = 115200
    gmi: str = "callhome"
    gmm: str = "virtual V.250 modem"
    gmr: str = "1.0"
    gcap: str = "+GCAP: +MS,+ES,+DS"
    factory: FactorySettings = field(default_factory=FactorySettings)
    # -- deviations of software emulators (see the `emulator` profile) -----------------
    command_syntax: CommandSyntax = "v250"
    identity_text: bool = True
    """False: `ATI<n>` prints nothing but the final OK."""
    z_resets: bool = True
    """False: `ATZ` answers OK and keeps every setting (numeric mode persists)."""
    numeric_crlf: bool = False
    """True: V0 codes are framed like texts, `\\r\\n3\\r\\n`, not `3\\r`."""
    connect_on_link: bool = False
    """True: the caller gets CONNECT as soon as the link to the callee is up (before it
    answers); a busy callee then sends `BUSY\\n` as data, an unanswered call sends
    `NO ANSWER\\n` after `no_answer_timeout`, each followed by NO CARRIER. Answering
    needs no training."""
    no_answer_timeout: float = 40.0
    """Seconds of ringing before an unanswered linked call ends (tcpser: 10 rings x 4 s)."""
    swallow_after_failed_dial: bool = False
    """True: after a dial that never reached an answering modem the modem stays off
    hook, swallows the next command line (no echo, not executed) and answers it OK."""
    hangup_rejects_ringing: bool = False
    """True: `ATH`/`ATH0` while an incoming call rings rejects that call."""
    tx_buffer_arq: int = 3328
    """Bytes from the DTE the modem holds for the line under error control before it
    drops CTS (USRobotics Courier V.34 manual, "Transmit Data Buffer Sizes": 3.25 K
    with ARQ, 1.5 K without)."""
    tx_buffer_plain: int = 1536
    """The same without error control."""
    double_hangup_reply: bool = False
    """True: `ATH0` prints NO CARRIER (a call was up) or OK (idle) before its final OK."""
    carrier_loss_wait: bool = True
    """False: NO CARRIER as soon as the far end is gone; S10 is stored but not used
    (tcpser reports a closed link at once)."""
    ring_interval: float | None = None
    """Seconds from one RING to the next when this modem is called; None: the
    network's cadence (`NetworkTiming.ring_on + ring_off`)."""
    dials_addresses: bool = False
    """True: a dial string that is not a phone number (`127.0.0.1:6400`, `host:23`) is
    dialled verbatim, as the number the network knows that modem by."""

    def numeric_code(self, text: str) -> int | None:
        """The V0 code of a result text, or None for texts that have no numeric form."""
        if text in BASIC_CODES and text != "NO DIALTONE":
            return BASIC_CODES[text]
        if text == self.no_dialtone_text:
            return BASIC_CODES["NO DIALTONE"]
        if text == "DELAYED":
            return self.codes.delayed
        if text == "BLACKLISTED":
            return self.codes.blacklisted
        if text.startswith("CONNECT "):
            rate_text = text[len("CONNECT ") :].split("/", 1)[0]
            if rate_text.isdigit():
                return self.codes.connect_rates.get(int(rate_text), BASIC_CODES["CONNECT"])
            return BASIC_CODES["CONNECT"]
        return None


def _frozen(mapping: dict[int, Any]) -> MappingProxyType[int, Any]:
    return MappingProxyType(dict(mapping))


GENERIC = ModemProfile(
    name="generic",
    description="a plain ITU-T V.250 modem: CONNECT <line rate>, +MR/+ER/+DR reports",
    identity=_frozen(
        {
            0: ("V250",),
            1: ("000",),
            2: ("OK",),
            3: ("callhome virtual V.250 modem 1.0",),
            4: ("generic",),
            5: ("000",),
            6: ("no link diagnostics",),
            7: ("V.34 33600, V.42, V.42bis",),
        }
    ),
    codes=HAYES,
    max_command_length=40,
)

USR = ModemProfile(
    name="usr",
    description="a USRobotics-like modem: CONNECT 33600/ARQ/V34/LAPM/V42BIS, "
    "'NO DIAL TONE', caller ID without spaces, Courier-style numeric table",
    identity=_frozen(
        {
            0: ("5601",),
            1: ("4D4C",),
            2: ("OK",),
            3: ("U.S. Robotics 56K FAX EXT V1.2.23",),
            4: ("U.S. Robotics 56K FAX EXT Settings...", "   B0  E1  F1  M1  Q0  V1  X4"),
            5: ("U.S. Robotics 56K FAX EXT NVRAM Settings...",),
            6: ("U.S. Robotics 56K FAX EXT Link Diagnostics...",),
            7: ("Product type           US/Canada External",),
        }
    ),
    codes=USROBOTICS,
    no_dialtone_text="NO DIAL TONE",
    connect_style="usr",
    progress_styles=frozenset({"hayes"}),
    cid_spaces=False,
    max_command_length=56,
    gmi="U.S. Robotics",
    gmm="56K FAX EXT",
    gmr="1.2.23",
    factory=FactorySettings(
        s_registers=MappingProxyType(
            {0: 0, 1: 0, 2: 43, 3: 13, 4: 10, 5: 8, 6: 2, 7: 60, 8: 2, 10: 7, 12: 50, 25: 5}
        )
    ),
)

CONEXANT = ModemProfile(
    name="conexant",
    description="a Conexant-like soft modem: CONNECT <DTE rate>, echo that survives E0, "
    "ETSI blacklisting, caller ID before the first RING",
    identity=_frozen(
        {
            0: ("56000",),
            1: ("OK",),
            2: ("OK",),
            3: ("CX93001-EIS_V0.2002-V92",),
            4: ("OK",),
            5: ("022",),
            6: ("OK",),
            7: ("OK",),
        }
    ),
    codes=CONEXANT_CODES,
    blacklist_substitute="ERROR",
    connect_style="dte",
    progress_styles=frozenset({"hayes", "v250"}),
    echo_ignores_e0=True,
    cid_before_first_ring=True,
    etsi_blacklist=True,
    max_command_length=60,
    gmi="Conexant",
    gmm="CX93001",
    gmr="V0.2002-V92",
)

EMULATOR = ModemProfile(
    name="emulator",
    description="a software Hayes emulator (tcpser, modem-over-IP adapters): no '+' "
    "commands (mis-parsed as basic letters), silent ATI, ATZ that keeps settings, CONNECT "
    "on link-up with BUSY / NO ANSWER as data, a swallowed command after a failed dial, "
    "ATH that rejects a ringing call, doubled ATH0 replies, RING every 4 s, host:port "
    "dialling",
    identity=_frozen({}),
    codes=TCPSER_CODES,
    connect_style="fixed",
    progress_styles=frozenset(),
    cid_spaces=True,
    max_command_length=255,
    max_rate=33600,
    dte_rate=38400,
    gmi="tcpser",
    gmm="Hayes emulator",
    gmr="1.1",
    gcap="",
    command_syntax="tcpser",
    identity_text=False,
    z_resets=False,
    numeric_crlf=True,
    connect_on_link=True,
    no_answer_timeout=40.0,
    swallow_after_failed_dial=True,
    hangup_rejects_ringing=True,
    double_hangup_reply=True,
    carrier_loss_wait=False,
    ring_interval=4.0,
    dials_addresses=True,
)

PROFILES: MappingProxyType[str, ModemProfile] = MappingProxyType(
    {p.name: p for p in (GENERIC, USR, CONEXANT, EMULATOR)}
)


def get_profile(name: str) -> ModemProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown modem profile {name!r} (known: {', '.join(sorted(PROFILES))})"
        ) from None
