"""Vendor facts shared by the driver and the virtual modems: V0 result-code tables.

Numeric result codes above 8 differ by vendor (go4retro/tcpser#31: CONNECT 14400 is 13
in the Hayes table and 15 in Conexant's; DELAYED/BLACKLISTED are 88/89, 24/32 or
13/14 depending on the manual). The virtual modems emit these tables and the driver
reads them, so both sides take them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class VendorCodes:
    connect_rates: Mapping[int, int]
    """Line (or DTE) rate -> the numeric code of `CONNECT <rate>`."""
    delayed: int
    blacklisted: int

    def numeric_results(self) -> dict[int, bytes]:
        """Code -> verbose text, for the codes beyond the basic V.250 set."""
        table = {code: b"CONNECT %d" % rate for rate, code in self.connect_rates.items()}
        table[self.delayed] = b"DELAYED"
        table[self.blacklisted] = b"BLACKLISTED"
        return table


HAYES = VendorCodes(
    connect_rates=MappingProxyType(
        {
            1200: 5,
            2400: 10,
            4800: 11,
            9600: 12,
            14400: 13,
            19200: 14,
            7200: 24,
            12000: 25,
            16800: 86,
            21600: 55,
            24000: 56,
            26400: 57,
            28800: 58,
            31200: 59,
            33600: 60,
        }
    ),
    delayed=88,
    blacklisted=89,
)

USROBOTICS = VendorCodes(
    connect_rates=MappingProxyType(
        {
            1200: 5,
            2400: 10,
            4800: 18,
            7200: 20,
            9600: 13,
            12000: 21,
            14400: 25,
            16800: 43,
            19200: 85,
            21600: 91,
            24000: 99,
            26400: 103,
            28800: 107,
            31200: 151,
            33600: 155,
        }
    ),
    delayed=24,
    blacklisted=32,
)

CONEXANT = VendorCodes(
    connect_rates=MappingProxyType(
        {
            1200: 5,
            2400: 10,
            4800: 11,
            7200: 24,
            9600: 12,
            12000: 25,
            14400: 15,
            16800: 86,
            19200: 16,
            21600: 55,
            24000: 56,
            26400: 57,
            28800: 58,
            31200: 59,
            33600: 155,
            115200: 150,
        }
    ),
    delayed=13,
    blacklisted=14,
)
