"""Caller ID as modems report it: tag lines between (or before) RINGs.

Formats met in the field (hayes-field-notes §1.8, mgetty `cnd.c`): `NMBR = 5551234` and
`NMBR=5551234` (spaces optional), `DDN_NMBR=`, `NBR=`, `CALLER NUMBER: `,
`CALLER NAME: `, `REASON FOR NO CALLER NUMBER: `, `CallerID: `, `FM:<from> TO:<to>`
(ZyXEL), `RING;<from>;<to>` (ELSA), `+CLIP: "<number>",<type>`, `MESG = <hex>` (extra
parameters in Bellcore MDMF layout), and the raw MDMF/SDMF packet in hex (`+VCID=2`).
`P` means private, `O` out of area / unavailable. Any layout may lack DATE, TIME or NAME.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TAGGED = re.compile(
    rb"(DATE|TIME|NMBR|NAME|MESG|DDN_NMBR|NBR|DDN)\s*=\s*(.*)$"
    rb"|(CALLER NUMBER|CALLER NAME|REASON FOR NO CALLER NUMBER|REASON FOR NO CALLER NAME"
    rb"|CALLERID|CALLER ID|DIVERTING NUMBER)\s*:\s*(.*)$",
    re.IGNORECASE,
)
_ZYXEL = re.compile(rb"FM:\s*(\S*)\s+TO:\s*(\S*)\s*$")
_ELSA = re.compile(rb"RING;([^;]*);?(.*)$")
_CLIP = re.compile(rb'\+CLIP:\s*"([^"]*)"(?:,\s*(\d+))?(?:,[^,]*,[^,]*,\s*"([^"]*)")?')
_RAW_PACKET = re.compile(rb"(80|04)[0-9A-Fa-f]{6,}$")

_NUMBER_TAGS = {b"NMBR", b"NBR", b"CALLER NUMBER", b"CALLERID", b"CALLER ID", b"DDN_NMBR", b"DDN"}
_PRIVATE = {b"P", b"PRIVATE", b"ANONYMOUS", b"WITHHELD"}
_UNAVAILABLE = {b"O", b"OUT OF AREA", b"UNAVAILABLE", b"UNKNOWN"}


@dataclass(frozen=True)
class CallerId:
    number: str | None = None
    name: str | None = None
    date: str | None = None  # MMDD
    time: str | None = None  # HHMM
    private: bool = False
    unavailable: bool = False
    dialled: str | None = None
    lines: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def present(self) -> bool:
        return bool(self.number or self.name or self.private or self.unavailable)


def is_caller_id_line(line: bytes) -> bool:
    return bool(
        _TAGGED.match(line)
        or _ZYXEL.match(line)
        or _ELSA.match(line)
        or _CLIP.match(line)
        or _is_raw_packet(line)
    )


def _is_raw_packet(line: bytes) -> bool:
    """A whole SDMF/MDMF packet in hex: right type, length byte and checksum."""
    if not _RAW_PACKET.match(line) or len(line) % 2:
        return False
    packet = bytes.fromhex(line.decode())
    return packet[1] == len(packet) - 3 and sum(packet) & 0xFF == 0


def _text(value: bytes) -> str:
    return value.decode("latin-1").strip()


class CallerIdAssembler:
    """Collects the caller-ID lines of one call into one `CallerId`."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._fields: dict[str, str | bool] = {}

    def __bool__(self) -> bool:
        return bool(self._lines)

    def add(self, line: bytes) -> None:
        self._lines.append(line)
        tagged = _TAGGED.match(line)
        if tagged:
            tag = (tagged.group(1) or tagged.group(3) or b"").upper()
            value = tagged.group(2) if tagged.group(1) else tagged.group(4)
            self._tagged(tag, value or b"")
            return
        zyxel = _ZYXEL.match(line)
        if zyxel:
            self._number(zyxel.group(1))
            if zyxel.group(2):
                self._fields["dialled"] = _text(zyxel.group(2))
            return
        elsa = _ELSA.match(line)
        if elsa:
            self._number(elsa.group(1))
            if elsa.group(2):
                self._fields["dialled"] = _text(elsa.group(2))
            return
        clip = _CLIP.match(line)
        if clip:
            self._number(clip.group(1))
            if clip.group(3):
                self._fields["name"] = _text(clip.group(3))
            return
        if _is_raw_packet(line):
            self._packet(bytes.fromhex(line.decode()))

    def _tagged(self, tag: bytes, value: bytes) -> None:
        if tag == b"DATE":
            self._fields["date"] = _text(value)
        elif tag == b"TIME":
            self._fields["time"] = _text(value)
        elif tag in _NUMBER_TAGS:
            self._number(value)
        elif tag in (b"NAME", b"CALLER NAME"):
            name = _text(value)
            if name.upper().encode() in _PRIVATE:
                self._fields["private"] = True
            elif name.upper().encode() not in _UNAVAILABLE and name:
                self._fields["name"] = name
        elif tag == b"REASON FOR NO CALLER NUMBER":
            self._number(value)
        elif tag == b"DIVERTING NUMBER":
            self._fields["dialled"] = _text(value)
        elif tag == b"MESG":
            try:
                self._parameters(bytes.fromhex(_text(value)))
            except ValueError:
                pass  # not hex: keep the raw line only

    def _number(self, value: bytes) -> None:
        text = _text(value).strip('"')
        upper = text.upper().encode()
        if upper in _PRIVATE:
            self._fields["private"] = True
        elif upper in _UNAVAILABLE or not text:
            self._fields["unavailable"] = True
        else:
            self._fields["number"] = text

    def _packet(self, packet: bytes) -> None:
        """A raw SDMF (0x04) or MDMF (0x80) packet with its checksum."""
        if len(packet) < 3 or sum(packet) & 0xFF:
            return  # bad checksum: as a modem would, report nothing from it
        body = packet[2 : 2 + packet[1]]
        if packet[0] == 0x80:
            self._parameters(body)
        elif packet[0] == 0x04 and len(body) >= 8:
            stamp = body[:8].decode("latin-1")
            self._fields["date"], self._fields["time"] = stamp[:4], stamp[4:]
            self._number(body[8:])

    def _parameters(self, body: bytes) -> None:
        """MDMF parameters: type, length, value."""
        index = 0
        while index + 2 <= len(body):
            kind, length = body[index], body[index + 1]
            value = body[index + 2 : index + 2 + length]
            index += 2 + length
            if kind == 0x01 and len(value) >= 8:
                stamp = value[:8].decode("latin-1")
                self._fields["date"], self._fields["time"] = stamp[:4], stamp[4:]
            elif kind in (0x02, 0x03, 0x04):
                self._number(value)
            elif kind == 0x07:
                self._tagged(b"NAME", value)
            elif kind == 0x08 and value.upper() == b"P":
                self._fields["private"] = True

    def take(self) -> CallerId:
        fields = self._fields
        result = CallerId(
            number=_str(fields.get("number")),
            name=_str(fields.get("name")),
            date=_str(fields.get("date")),
            time=_str(fields.get("time")),
            private=bool(fields.get("private")),
            unavailable=bool(fields.get("unavailable")) and not fields.get("number"),
            dialled=_str(fields.get("dialled")),
            lines=tuple(self._lines),
        )
        self._lines = []
        self._fields = {}
        return result


def _str(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None
