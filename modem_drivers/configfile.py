"""Config files (TOML), read and written the same way by every command.

`callhome-sim`'s network file, the client's and the centre's configs all go through
`load_toml` and `Table`, so every mistake is one `ConfigError` that names the file and
the key, and every command can print one line and exit 2. Reading is `tomllib`'s job,
writing `tomli_w`'s: a hand-written writer got the escapes wrong (JSON's surrogate
pairs are not TOML), and wrote files the program could not read back.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "a table",
    list: "a list",
}
REQUIRED: Any = ...
"""The default that makes a key mandatory."""
TIME_SCALE = (0.001, 1000.0)
"""The range of every `time_scale` (and `--time-scale`): the factor applied to every wait."""


class ConfigError(Exception):
    """A config file is missing, unreadable or wrong; the message names file and key."""


def parse_duration(value: str | int | float) -> float:
    """`"24h"`, `"15m"`, `"90s"`, `"500ms"`, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 24h)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {value!r} (not a finite number)")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def check_range(value: float, minimum: float | None, maximum: float | None) -> str | None:
    """Why `value` is not a finite number within [minimum, maximum], or None if it is."""
    if not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        return f"must be between {_number_text(minimum)} and {_number_text(maximum)}"
    if minimum is not None and value < minimum:
        return f"must be at least {_number_text(minimum)}"
    if maximum is not None and value > maximum:
        return f"must be at most {_number_text(maximum)}"
    return None


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_duration(seconds: float) -> str:
    """The shortest form `parse_duration` reads back (to the millisecond)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"  # never an exponent


def dump_toml(tables: dict[str, dict[str, Any]], header: str = "") -> str:
    """Tables of plain values as TOML (keys whose value is None are left out), after
    `header` as comment lines."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    body = tomli_w.dumps(
        {
            name: {key: value for key, value in table.items() if value is not None}
            for name, table in tables.items()
        }
    )
    return "\n".join(lines) + ("\n\n" if lines else "") + body


def check_encodable(text: str, source: str | Path) -> None:
    """A config about to be written must be UTF-8 text: an argument that was not valid
    UTF-8 (the shell passes bytes) arrives as lone surrogates, which no file can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{source}: {text[exc.start : exc.end]!r} is not valid text (an argument that "
            "is not UTF-8?)"
        ) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a config file; any reason it cannot be read is a ConfigError."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8"
        ) from None
    return loads_toml(text, path)


def loads_toml(text: str, source: str | Path) -> dict[str, Any]:
    """The tables of config text read from `source` (named in errors)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+(\[\d+\])?$")


def _key_text(key: str) -> str:
    """A key as an error message shows it: as written in TOML, quoted when it is not a
    bare key (a key may hold any character, a line break too)."""
    return key if _BARE_KEY.match(key) else json.dumps(key)


class Table:
    """One table of a config file being read: typed access, errors that name the file
    and the key, and `finish()` to reject the keys nobody asked for (typos)."""

    def __init__(self, data: Any, where: str, source: str | Path) -> None:
        self.source = str(source)
        self.where = where
        if not isinstance(data, dict):
            raise ConfigError(f"{self.source}: [{where}] must be a table")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        key = _key_text(key)
        path = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.source}: {path}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        """The value of `key` if it has one of the types `kind`, else `default`
        (`REQUIRED`: missing is an error). An integer is accepted as a float."""
        self.used.add(key)
        if key not in self.data:
            if default is REQUIRED:
                raise self.error(key, "missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            got = "a boolean" if isinstance(value, bool) else type(value).__name__
            names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            raise self.error(key, f"expected {names}, got {got}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(key, f"must be a finite number, not {value}")
        return value

    def number(
        self,
        key: str,
        kind: type[int] | type[float],
        default: Any = REQUIRED,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> Any:
        """An integer or a (finite) number within [minimum, maximum]."""
        value = self.get(key, kind, default)
        if value is None:
            return None
        problem = check_range(value, minimum, maximum)
        if problem:
            raise self.error(key, problem)
        return value

    def table(self, key: str) -> Table:
        where = f"{self.where}.{_key_text(key)}" if self.where else _key_text(key)
        return Table(self.get(key, dict, {}), where, self.source)

    def tables(self, key: str) -> list[Table]:
        out = []
        for index, item in enumerate(self.get(key, list, [])):
            if not isinstance(item, dict):
                raise self.error(f"{key}[{index}]", "expected a table")
            out.append(Table(item, f"{key}[{index}]", self.source))
        return out

    def strings(self, key: str, default: Any = REQUIRED) -> list[str]:
        value = self.get(key, list, default)
        if not all(isinstance(item, str) and item for item in value):
            raise self.error(key, "expected a list of strings")
        return list(value)

    def duration(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        minimum: float = 0.0,
        maximum: float = 366 * 86400.0,
    ) -> float:
        """A duration ("90s", "15m", "24h", or seconds) within [minimum, maximum]."""
        value = self.get(key, (str, int, float), default)
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        if not minimum <= seconds <= maximum:
            raise self.error(
                key,
                f"must be between {format_duration(minimum)} and {format_duration(maximum)}",
            )
        return seconds

    def path_value(self, key: str, default: Any = REQUIRED) -> Path:
        """A path, relative to the config file's folder; `~` and `~user` are expanded."""
        text = self.get(key, str, default)
        if not text or "\0" in text:
            raise self.error(key, "expected a file name")
        try:
            candidate = Path(text).expanduser()
        except RuntimeError:
            raise self.error(key, f"cannot expand {text!r}: no such user or home folder") from None
        return candidate if candidate.is_absolute() else Path(self.source).parent / candidate

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")
