"""Performance data of the monitoring-plugins convention, parsed and written.

    'label'=value[UOM];[warn];[crit];[min];[max]

separated by spaces; a label with spaces is quoted with single quotes and a quote in
it is doubled; the value is a number or `U` (undetermined); UOM is one of s ms us % B
KB MB GB TB c (others are kept as given); warn and crit are range expressions kept as
text ("10", "10:", "~:10", "@10:20"); trailing empty fields may be left out.
Pure: text in, items out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_VALUE = re.compile(
    r"^(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|U)(?P<uom>[^;\d\s.][^;\s]*)?$"
)
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
_RANGE = re.compile(
    r"^@?(?:~|[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)?(?::(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)?)?$"
)


class PerfdataError(ValueError):
    """Text that is not performance data."""


@dataclass(frozen=True)
class PerfItem:
    label: str
    value: float | None
    """None for `U` (undetermined)."""
    uom: str = ""
    warn: str = ""
    crit: str = ""
    minimum: float | None = None
    maximum: float | None = None


def _number(text: str, what: str) -> float | None:
    if text == "":
        return None
    if not _NUMBER.match(text):
        raise PerfdataError(f"{what} is not a number: {text[:20]!r}")
    return _finite(float(text), what)


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise PerfdataError(f"{what} is out of range")
    return value


def _range(text: str, what: str) -> str:
    if text and not _RANGE.match(text):
        raise PerfdataError(f"{what} is not a range: {text[:20]!r}")
    return text


def parse(text: str) -> list[PerfItem]:
    """Every item of `text` (the part after `|`, or a later perfdata line)."""
    items: list[PerfItem] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return items
        if text[i] == "'":
            label_chars = []
            i += 1
            while True:
                if i >= n:
                    raise PerfdataError("unterminated quoted label")
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        label_chars.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                label_chars.append(text[i])
                i += 1
            label = "".join(label_chars)
            if i >= n or text[i] != "=":
                raise PerfdataError(f"no '=' after label {label[:20]!r}")
        else:
            start = i
            while i < n and text[i] != "=" and not text[i].isspace():
                i += 1
            label = text[start:i]
            if i >= n or text[i] != "=":
                raise PerfdataError(f"no '=' after label {label[:20]!r}")
        if not label:
            raise PerfdataError("empty label")
        i += 1  # the '='
        start = i
        while i < n and not text[i].isspace():
            i += 1
        fields = text[start:i].split(";")
        if len(fields) > 5:
            raise PerfdataError(f"{label[:20]!r}: more than 5 fields")
        fields += [""] * (5 - len(fields))
        match = _VALUE.match(fields[0])
        if not match:
            raise PerfdataError(f"{label[:20]!r}: not a value: {fields[0][:20]!r}")
        number = match.group("number")
        items.append(
            PerfItem(
                label=label,
                value=None if number == "U" else _finite(float(number), "value"),
                uom=match.group("uom") or "",
                warn=_range(fields[1], "warn"),
                crit=_range(fields[2], "crit"),
                minimum=_number(fields[3], "min"),
                maximum=_number(fields[4], "max"),
            )
        )


def _format_number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def format_item(item: PerfItem) -> str:
    needs_quotes = any(c.isspace() or c in "'=" for c in item.label)
    label = "'" + item.label.replace("'", "''") + "'" if needs_quotes else item.label
    value = "U" if item.value is None else _format_number(item.value)
    fields = [
        value + item.uom,
        item.warn,
        item.crit,
        _format_number(item.minimum),
        _format_number(item.maximum),
    ]
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return f"{label}={';'.join(fields)}"


def format_items(items: list[PerfItem]) -> str:
    return " ".join(format_item(item) for item in items)
