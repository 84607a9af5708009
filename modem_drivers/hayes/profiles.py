"""How to set up each modem family, and how to tell which family a modem belongs to.

Set-up is one setting per command line, each verified: a chained init string stops at
the first command a modem does not know and leaves the rest unapplied (USR Command
Reference; hharte/mm_manager#20, #23). The settings are re-applied after every reset,
because some modems forget `+VCID=1` on ATZ despite `&W` (HA#57765).

Settings come in two tiers. The *required* ones are those the driver cannot work without
(no echo, verbose results, results on); a modem that refuses one of them cannot be
used. Everything else is an *optional feature* (result levels, DCD and DTR behaviour,
flow control, auto-answer off, caller ID, negotiation reports): a modem that refuses one
simply lacks the feature, and the driver works around it (no caller ID, NO CARRIER text
instead of DCD, the escape rung of the hang-up ladder instead of DTR). Modems in the
field do refuse them, in ways V.250 does not foresee: a Hayes emulator without extended
commands reads `AT+VCID=1` as `V`, `C`, `I` and a dial of `=1`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..vendors import CONEXANT, HAYES, USROBOTICS, VendorCodes
from .classify import NumericTable
from .connect import ConnectReports


@dataclass(frozen=True)
class Setting:
    command: bytes
    """The whole command line, `ATX4`, `AT+VCID=1`."""
    feature: str
    """What it gives, for a person: "caller ID", "DCD follows the carrier"."""
    required: bool = False

    @property
    def name(self) -> str:
        return setting_name(self.command)

    @property
    def extended(self) -> bool:
        return self.name.startswith("+")


_NAME = re.compile(r"^(\+[A-Z]+|&[A-Z]|S\d+|[A-Z])")


def setting_name(command: bytes | str) -> str:
    """The name a setting is known by for `skip` and replacement: `+VCID` for
    `AT+VCID=1`, `X` for `ATX4`, `&K` for `AT&K3`, `S0` for `ATS0=0`."""
    text = command.decode("latin-1") if isinstance(command, bytes) else command
    text = text.strip().upper()
    if text.startswith("AT"):
        text = text[2:]
    match = _NAME.match(text)
    if not match:
        raise ValueError(f"not a modem setting: {text!r}")
    return match.group(1)


REQUIRED: tuple[Setting, ...] = (
    Setting(b"ATE0", "no command echo (echo is tolerated where it stays on)", True),
    Setting(b"ATV1", "verbose result codes", True),
    Setting(b"ATQ0", "result codes on", True),
)

OPTIONAL: tuple[Setting, ...] = (
    Setting(b"ATX4", "every result code: BUSY, NO DIALTONE, NO ANSWER"),
    Setting(b"AT&C1", "DCD follows the carrier (else: NO CARRIER text)"),
    Setting(b"AT&D2", "DTR drop hangs up (else: the escape rung)"),
    Setting(b"AT&K3", "RTS/CTS flow control"),
    Setting(b"ATS0=0", "no auto-answer: the host answers after caller ID"),
    Setting(b"AT+VCID=1", "formatted caller ID"),
)

_V250_REPORTS = (
    Setting(b"AT+MR=1", "modulation reports (+MCR, +MRR)"),
    Setting(b"AT+ER=1", "error-control reports (+ER)"),
    Setting(b"AT+DR=1", "compression reports (+DR)"),
)


@dataclass(frozen=True)
class DriverProfile:
    name: str
    description: str
    codes: VendorCodes
    reports: ConnectReports
    """Whether the rate in CONNECT is the line (dce) or port (dte) rate."""
    features: tuple[Setting, ...]
    """The optional settings, in the order they are sent."""
    identify: tuple[tuple[int, bytes], ...]
    """(ATI n, text) pairs: an answer line equal to, or starting with, the text."""

    @property
    def settings(self) -> tuple[Setting, ...]:
        return REQUIRED + self.features

    def numeric_table(self) -> NumericTable:
        return NumericTable.with_extra(self.codes.numeric_results())


GENERIC = DriverProfile(
    name="generic",
    description="ITU-T V.250: +MR/+ER/+DR negotiation reports",
    codes=HAYES,
    reports="dce",
    features=OPTIONAL + _V250_REPORTS,
    identify=(),
)

USR = DriverProfile(
    name="usr",
    description="USRobotics: CONNECT <line rate>/ARQ/..., W1 progress reports",
    codes=USROBOTICS,
    reports="dce",
    features=(*OPTIONAL, Setting(b"ATW1", "negotiation progress reports")),
    identify=((0, b"5601"), (0, b"5686"), (0, b"5637"), (3, b"U.S. Robotics")),
)

CONEXANT_PROFILE = DriverProfile(
    name="conexant",
    description="Conexant soft modems: CONNECT <port rate>, +MR/+ER/+DR reports",
    codes=CONEXANT,
    reports="dte",
    features=OPTIONAL + _V250_REPORTS,
    identify=((0, b"56000"), (3, b"CX93"), (3, b"Conexant")),
)

MINIMAL = DriverProfile(
    name="minimal",
    description="only what the driver cannot work without (E0 V1 Q0): for modems that "
    "misbehave on anything else; add settings with [modem] init",
    codes=HAYES,
    reports="dce",
    features=(),
    identify=(),
)

DRIVER_PROFILES = MappingProxyType({p.name: p for p in (GENERIC, USR, CONEXANT_PROFILE, MINIMAL)})
DETECTABLE = (USR, CONEXANT_PROFILE)


def get_driver_profile(name: str) -> DriverProfile:
    try:
        return DRIVER_PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(DRIVER_PROFILES))
        raise KeyError(f"unknown modem profile {name!r} (known: {known}, auto)") from None


def detect_profile(answers: Mapping[int, Sequence[bytes]]) -> DriverProfile:
    """Pick a profile from the information lines of ATI0, ATI3, ... (generic if none fits)."""
    for profile in DETECTABLE:
        for index, text in profile.identify:
            for line in answers.get(index, ()):
                if line.strip().startswith(text):
                    return profile
    return GENERIC


@dataclass(frozen=True)
class SetupOptions:
    """What a user's config changes in a profile's settings (`[modem] init`, `skip`)."""

    init: tuple[bytes, ...] = ()
    """Settings to send too; one that has the name of a profile setting replaces it.
    They are the user's explicit wish, so a refusal stops set-up."""
    skip: frozenset[str] = frozenset()
    """Names of profile settings not to send (`+VCID`, `&K`, `X`)."""

    @classmethod
    def from_config(cls, init: Iterable[str] = (), skip: Iterable[str] = ()) -> SetupOptions:
        """Checked: ValueError names the entry that is wrong."""
        commands = []
        for entry in init:
            text = entry.strip()
            if not text.upper().startswith("AT"):
                text = "AT" + text
            if not text.isascii() or not text.isprintable() or len(text) > 60:
                raise ValueError(f"not a modem command: {entry!r}")
            if setting_name(text) in ("V", "Q"):
                raise ValueError(f"{entry!r}: the driver needs verbose result codes (V1 Q0)")
            commands.append(text.encode("ascii"))
        names = set()
        required = {setting.name for setting in REQUIRED}
        for entry in skip:
            name = setting_name(entry)
            if name in required:
                raise ValueError(f"{entry!r} cannot be skipped: the driver needs it")
            names.add(name)
        return cls(tuple(commands), frozenset(names))


def plan_settings(profile: DriverProfile, options: SetupOptions) -> list[Setting]:
    """The settings to send, in order: required, then the profile's features (less the
    skipped, with the user's replacements), then the user's additions."""
    replacements = {setting_name(command): command for command in options.init}
    planned: list[Setting] = []
    for setting in profile.settings:
        if setting.name in options.skip:
            continue
        replacement = replacements.pop(setting.name, None)
        if replacement is None:
            planned.append(setting)
        else:
            planned.append(Setting(replacement, f"{setting.feature} (as configured)", True))
    planned += [
        Setting(command, "configured", True)
        for command in options.init
        if setting_name(command) in replacements
    ]
    return planned
