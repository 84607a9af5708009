"""How to set up each modem family, and how to tell which family a modem belongs to.

Initialisation is one setting per command line, each verified: a chained init string
stops at the first command a modem does not know and leaves the rest unapplied
(USR Command Reference; hharte/mm_manager#20, #23). The settings are re-applied after
every reset, because some modems forget `+VCID=1` on ATZ despite `&W` (HA#57765).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..vendors import CONEXANT, HAYES, USROBOTICS, VendorCodes
from .classify import NumericTable
from .connect import ConnectReports

BASE_SETTINGS: tuple[bytes, ...] = (
    b"ATE0",  # no echo (tolerated when it stays on)
    b"ATV1",  # verbose results
    b"ATQ0",  # results on
    b"ATX4",  # every result code: BUSY, NO DIALTONE, NO ANSWER, DELAYED
    b"AT&C1",  # DCD follows the carrier: carrier supervision needs it
    b"AT&D2",  # DTR drop hangs up: the first rung of the hang-up ladder
    b"AT&K3",  # RTS/CTS flow control, never XON/XOFF (binary data)
    b"ATS0=0",  # never answer on its own: the host decides after caller ID
    b"AT+VCID=1",  # formatted caller ID
)


@dataclass(frozen=True)
class DriverProfile:
    name: str
    description: str
    codes: VendorCodes
    reports: ConnectReports
    """Whether the rate in CONNECT is the line (dce) or port (dte) rate."""
    extra_settings: tuple[bytes, ...]
    identify: tuple[tuple[int, bytes], ...]
    """(ATI n, text) pairs: an answer line equal to, or starting with, the text."""

    @property
    def settings(self) -> tuple[bytes, ...]:
        return BASE_SETTINGS + self.extra_settings

    def numeric_table(self) -> NumericTable:
        return NumericTable.with_extra(self.codes.numeric_results())


GENERIC = DriverProfile(
    name="generic",
    description="ITU-T V.250: +MR/+ER/+DR negotiation reports",
    codes=HAYES,
    reports="dce",
    extra_settings=(b"AT+MR=1", b"AT+ER=1", b"AT+DR=1"),
    identify=(),
)

USR = DriverProfile(
    name="usr",
    description="USRobotics: CONNECT <line rate>/ARQ/..., W1 progress reports",
    codes=USROBOTICS,
    reports="dce",
    extra_settings=(b"ATW1",),
    identify=((0, b"5601"), (0, b"5686"), (0, b"5637"), (3, b"U.S. Robotics")),
)

CONEXANT_PROFILE = DriverProfile(
    name="conexant",
    description="Conexant soft modems: CONNECT <port rate>, +MR/+ER/+DR reports",
    codes=CONEXANT,
    reports="dte",
    extra_settings=(b"AT+MR=1", b"AT+ER=1", b"AT+DR=1"),
    identify=((0, b"56000"), (3, b"CX93"), (3, b"Conexant")),
)

DRIVER_PROFILES = MappingProxyType({p.name: p for p in (GENERIC, USR, CONEXANT_PROFILE)})


def get_driver_profile(name: str) -> DriverProfile:
    try:
        return DRIVER_PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(DRIVER_PROFILES))
        raise KeyError(f"unknown modem profile {name!r} (known: {known}, auto)") from None


def detect_profile(answers: Mapping[int, Sequence[bytes]]) -> DriverProfile:
    """Pick a profile from the information lines of ATI0, ATI3, ... (generic if none fits)."""
    for profile in DRIVER_PROFILES.values():
        for index, text in profile.identify:
            for line in answers.get(index, ()):
                if line.strip().startswith(text):
                    return profile
    return GENERIC
