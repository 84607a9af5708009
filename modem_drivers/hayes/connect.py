"""What a CONNECT says: rates, modulation, error correction, compression.

The details come from the CONNECT line itself (`CONNECT 33600/ARQ/V34/LAPM/V42BIS`,
ZyXEL's `CONNECT 38400/V.32bis 14400/V.42bis`, split `CONNECT 1200/75`) and from the
negotiation reports before it (`CARRIER 33600`, `PROTOCOL: LAPM`, `COMPRESSION:
V.42BIS`, `+MCR: V34`, `+MRR: 33600,31200`, `+ER: LAPM`, `+DR: V42B`). Whether the rate
in CONNECT is the line (DCE) or the port (DTE) rate depends on the modem (and on W /
&Q / S95), so both are kept apart and the raw lines are always kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

ConnectReports = Literal["dce", "dte"]

_MODULATIONS = {
    "V21",
    "V22",
    "V22B",
    "V23",
    "V23C",
    "V32",
    "V32B",
    "V34",
    "V90",
    "V92",
    "K56",
    "B103",
    "B212",
    "VFC",
    "X2",
    "V32TERBO",
}
_EC = {
    "LAPM": "LAPM",
    "V42": "LAPM",
    "MNP": "MNP",
    "MNP4": "MNP",
    "ALT": "MNP",
    "ARQ": "ARQ",
    "REL": "ARQ",
    "REL4": "MNP",
}
_COMPRESSION = {
    "V42BIS": "V42BIS",
    "V42B": "V42BIS",
    "MNP5": "MNP5",
    "V44": "V44",
    "CLASS5": "MNP5",
    "V42BISRD": "V42BIS",
    "V42BISTD": "V42BIS",
}
_RATE = re.compile(rb"(\d{3,6})(?:/(\d{2,6}))?")


def _digits(text: str) -> bool:
    """ASCII digits only (`str.isdigit` accepts `¹` and other Unicode digits)."""
    return text.isascii() and text.isdigit()


def _norm(token: str) -> str:
    """`V.32bis` -> `V32B`, `v34` -> `V34`, `V.42bis` -> `V42BIS`."""
    key = token.upper().replace(".", "").replace(" ", "")
    if key.startswith("V42"):
        return "V42BIS" if key in ("V42BIS", "V42B") else key
    return key.replace("BIS", "B")


@dataclass(frozen=True)
class ConnectRecord:
    connect_line: bytes
    connect_rate: int | None = None
    dce_rate: int | None = None
    dte_rate: int | None = None
    tx_rate: int | None = None
    rx_rate: int | None = None
    modulation: str | None = None
    error_correction: str | None = None
    """LAPM, MNP, ARQ (some error control, unnamed), NONE, or None when not reported."""
    compression: str | None = None
    """V42BIS, V44, MNP5, NONE, or None when not reported."""
    lines: tuple[bytes, ...] = field(default=())

    @property
    def rate(self) -> int | None:
        """The best known line rate."""
        return self.dce_rate or self.connect_rate

    @property
    def error_corrected(self) -> bool:
        """The modems said they run error control (LAPM, MNP, or unnamed ARQ): what
        crosses the line arrives intact or not at all, late rather than damaged. Not
        reported is taken for none."""
        return self.error_correction in ("LAPM", "MNP", "ARQ")

    def as_dict(self) -> dict[str, Any]:
        return {
            "connect": self.connect_line.decode("latin-1"),
            "dce_rate": self.dce_rate,
            "dte_rate": self.dte_rate,
            "tx_rate": self.tx_rate,
            "rx_rate": self.rx_rate,
            "modulation": self.modulation,
            "error_correction": self.error_correction,
            "compression": self.compression,
        }


def parse_connect(
    connect_line: bytes,
    progress: Iterable[bytes] = (),
    *,
    reports: ConnectReports = "dce",
    port_rate: int | None = None,
) -> ConnectRecord:
    details: dict[str, Any] = {}
    lines = [*progress, connect_line]
    for line in progress:
        _progress_line(line, details)
    connect_rate = _connect_fields(connect_line, details)
    carrier = details.get("carrier")
    if carrier is not None:
        dce = carrier
        dte = connect_rate if connect_rate not in (None, carrier) else port_rate
    elif reports == "dce":
        dce = details.get("suffix_rate") or connect_rate
        dte = details.get("suffix_dte") or port_rate
    else:
        dce = details.get("suffix_rate")
        dte = connect_rate or port_rate
    return ConnectRecord(
        connect_line=connect_line,
        connect_rate=connect_rate,
        dce_rate=dce,
        dte_rate=dte,
        tx_rate=details.get("tx") or (dce if dce else None),
        rx_rate=details.get("rx") or (dce if dce else None),
        modulation=details.get("modulation"),
        error_correction=details.get("ec"),
        compression=details.get("compression"),
        lines=tuple(lines),
    )


def _progress_line(line: bytes, details: dict[str, Any]) -> None:
    text = line.decode("latin-1").strip()
    upper = text.upper()
    if upper.startswith("CARRIER "):
        match = _RATE.match(text[8:].strip().encode())
        if match:
            details["carrier"] = int(match.group(1))
            if match.group(2):
                details["tx"], details["rx"] = int(match.group(1)), int(match.group(2))
    elif upper.startswith("PROTOCOL:"):
        details["ec"] = _ec_name(upper[9:].strip())
    elif upper.startswith("COMPRESSION:"):
        details["compression"] = _compression_name(upper[12:].strip())
    elif upper.startswith("+MCR:"):
        details["modulation"] = _norm(upper[5:].strip())
    elif upper.startswith("+MRR:"):
        rates = [r.strip() for r in upper[5:].split(",")]
        if rates and _digits(rates[0]):
            details["tx"] = int(rates[0])
            details["carrier"] = int(rates[0])
            if len(rates) > 1 and _digits(rates[1]):
                details["rx"] = int(rates[1])
    elif upper.startswith("+ER:"):
        details["ec"] = _ec_name(upper[4:].strip())
    elif upper.startswith("+DR:"):
        details["compression"] = _compression_name(upper[4:].strip())


def _ec_name(value: str) -> str:
    if value in ("NONE", "NORMAL", "DIRECT"):
        return "NONE"
    key = value.replace(" ", "").replace(".", "")
    for token, name in _EC.items():
        if key.startswith(token):
            return name
    return value


def _compression_name(value: str) -> str:
    if value in ("NONE", "NO"):
        return "NONE"
    key = value.replace(" ", "").replace(".", "")
    for token, name in _COMPRESSION.items():
        if key.startswith(token):
            return name
    return value


def _connect_fields(line: bytes, details: dict[str, Any]) -> int | None:
    """Read `CONNECT <rate>[/<rate>][/token...]`; returns the first rate."""
    rest = line[len(b"CONNECT") :].strip()
    if not rest:
        return None
    parts = [part.strip() for part in rest.decode("latin-1").split("/")]
    first = parts[0]
    connect_rate = int(first) if _digits(first) else None
    tokens = parts[1:]
    if tokens and _digits(tokens[0]):
        details["tx"], details["rx"] = connect_rate, int(tokens[0])
        tokens = tokens[1:]
    for token in tokens:
        words = token.split()
        if len(words) == 2 and _digits(words[1]):
            # ZyXEL: "V.32bis 14400": the modulation and the line rate after it
            details.setdefault("modulation", _norm(words[0]))
            details["suffix_rate"] = int(words[1])
            if connect_rate is not None:
                details["suffix_dte"] = connect_rate
            continue
        key = token.upper().replace(".", "").replace(" ", "")
        if not key:
            continue
        if key == "NONE":
            details.setdefault("ec", "NONE")
            details.setdefault("compression", "NONE")
        elif _norm(key) in _MODULATIONS:
            details.setdefault("modulation", _norm(key))
        elif key in _COMPRESSION:
            details["compression"] = _COMPRESSION[key]
            if key == "MNP5" and details.get("ec") in (None, "ARQ"):
                details["ec"] = "MNP"
        elif key in _EC and details.get("ec") in (None, "ARQ"):
            details["ec"] = _EC[key]
    if details.get("compression", "NONE") != "NONE" and "ec" not in details:
        details["ec"] = "ARQ"  # V.42bis, V.44 and MNP5 run only over error control
    return connect_rate
