"""The `callhome-sim` network file (TOML): modems, numbers, hunt groups, lines, faults.

Every problem is reported as a `ConfigError` that names the file and the key, so the
CLI can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configfile import TIME_SCALE, ConfigError, Table, check_range, load_toml
from .interpreter import BlacklistRule, CallerId
from .line import LineModel
from .network import NetworkTiming, PhoneNetwork
from .profiles import PROFILES
from .runner import EXPOSURE_KINDS

FAULT_KINDS = (
    "unresponsive",
    "responsive",
    "reply-delay",
    "reset",
    "garbage",
    "nuls",
    "vanish",
    "cut",
    "unplug",
    "plug",
)
PRESENTATIONS = ("allowed", "private", "unavailable")


@dataclass
class ModemSpec:
    name: str
    profile: str = "generic"
    port: str = "pty"
    path: str | None = None
    tcp_port: int = 0
    number: str | None = None
    caller_id_name: str | None = None
    presentation: str = "allowed"
    cid_before_first_ring: bool | None = None
    plugged: bool = True
    line: dict[str, Any] = field(default_factory=dict)
    blacklist: BlacklistRule | None = None


@dataclass
class FaultSpec:
    at: float
    kind: str
    modem: str
    seconds: float = 0.0
    count: int = 16
    data: bytes = b""


@dataclass
class SimConfig:
    source: str = "<defaults>"
    time_scale: float = 1.0
    seed: int = 0
    log_level: str = "info"
    timing: NetworkTiming = field(default_factory=NetworkTiming)
    line: LineModel = field(default_factory=LineModel)
    modems: list[ModemSpec] = field(default_factory=list)
    hunt_groups: dict[str, list[str]] = field(default_factory=dict)
    faults: list[FaultSpec] = field(default_factory=list)

    def build_network(self, **kwargs: Any) -> PhoneNetwork:
        network = PhoneNetwork(default_line=self.line, timing=self.timing, seed=self.seed, **kwargs)
        for spec in self.modems:
            network.add_modem(
                spec.name,
                spec.profile,
                number=spec.number,
                line=spec.line,
                caller_id=CallerId(
                    number=spec.number,
                    name=spec.caller_id_name,
                    presentation=spec.presentation,
                ),
                cid_before_first_ring=spec.cid_before_first_ring,
                blacklist=spec.blacklist,
            )
            if not spec.plugged:
                network.unplug(spec.name)
        for number, members in self.hunt_groups.items():
            network.add_hunt_group(number, members)
        return network


_MAX_NUMBER = 1e6
"""The ceiling of a number in [timing] and [line] (seconds, rates) unless listed below."""
_LIMITS: dict[str, float] = {
    "ring_limit": 1000,
    "burst_bits": 1_000_000,
    "drop_after_bytes": 2**40,
}


def _dataclass_from(table: Table, cls: type, base: Any) -> Any:
    values: dict[str, Any] = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for key in list(table.data):
        if key not in hints:
            continue
        default = getattr(base, key)
        kind: tuple[type, ...]
        if isinstance(default, bool):
            kind = (bool,)
        elif isinstance(default, int) and key not in ("burst_rate",):
            kind = (int,)
        elif isinstance(default, float):
            kind = (float,)
        elif default is None:
            kind = (float, int)
        else:
            kind = (type(default),)
        value = table.get(key, kind)
        if isinstance(value, int | float) and not isinstance(value, bool):
            problem = check_range(value, 0, _LIMITS.get(key, _MAX_NUMBER))
            if problem:
                raise table.error(key, problem)
        values[key] = value
    table.finish()
    try:
        return dataclasses.replace(base, **values)
    except ValueError as exc:
        raise ConfigError(f"{table.source}: {table.where}: {exc}") from None


def _line_overrides(table: Table, base: LineModel) -> dict[str, Any]:
    model = _dataclass_from(table, LineModel, base)
    return {key: getattr(model, key) for key in table.data}


def load_config(path: str | Path) -> SimConfig:
    return parse_config(load_toml(path), str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> SimConfig:
    root = Table(raw, "", source)
    config = SimConfig(source=source)
    config.time_scale = root.number(
        "time_scale", float, 1.0, minimum=TIME_SCALE[0], maximum=TIME_SCALE[1]
    )
    config.seed = root.number("seed", int, 0, minimum=-(2**63), maximum=2**63 - 1)
    config.log_level = root.get("log_level", str, "info")
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise root.error("log_level", "must be debug, info, warning or error")
    config.timing = _dataclass_from(root.table("timing"), NetworkTiming, NetworkTiming())
    config.line = _dataclass_from(root.table("line"), LineModel, LineModel())

    names: set[str] = set()
    for table in root.tables("modem"):
        spec = ModemSpec(name=table.get("name", str, ""))
        if not spec.name:
            raise table.error("name", "every modem needs a name")
        if spec.name in names:
            raise table.error("name", f"duplicate modem name {spec.name!r}")
        names.add(spec.name)
        spec.profile = table.get("profile", str, "generic")
        if spec.profile not in PROFILES:
            raise table.error("profile", f"unknown profile (known: {', '.join(PROFILES)})")
        spec.port = table.get("port", str, "pty")
        if spec.port not in EXPOSURE_KINDS:
            raise table.error("port", f"must be one of {', '.join(EXPOSURE_KINDS)}")
        spec.path = table.get("path", str)
        spec.tcp_port = table.get("tcp_port", int, 0)
        if not 0 <= spec.tcp_port <= 65535:
            raise table.error("tcp_port", "must be between 0 and 65535")
        spec.number = table.get("number", str)
        spec.caller_id_name = table.get("caller_id_name", str)
        spec.presentation = table.get("presentation", str, "allowed")
        if spec.presentation not in PRESENTATIONS:
            raise table.error("presentation", f"must be one of {', '.join(PRESENTATIONS)}")
        spec.cid_before_first_ring = table.get("cid_before_first_ring", bool)
        spec.plugged = table.get("plugged", bool, True)
        spec.line = _line_overrides(table.table("line"), config.line)
        if "blacklist" in table.data:
            spec.blacklist = _blacklist(table.table("blacklist"))
        table.finish()
        config.modems.append(spec)

    for table in root.tables("hunt_group"):
        number = table.get("number", str, "")
        members = table.get("members", list, [])
        if not number:
            raise table.error("number", "a hunt group needs a number")
        if not members or not all(isinstance(m, str) for m in members):
            raise table.error("members", "a list of modem names is needed")
        for member in members:
            if member not in names:
                raise table.error("members", f"no modem named {member!r}")
        config.hunt_groups[number] = members
        table.finish()

    for table in root.tables("fault"):
        fault = FaultSpec(
            at=table.number("at", float, 0.0, minimum=0, maximum=_MAX_NUMBER),
            kind=table.get("kind", str, ""),
            modem=table.get("modem", str, ""),
        )
        if fault.kind not in FAULT_KINDS:
            raise table.error("kind", f"must be one of {', '.join(FAULT_KINDS)}")
        if fault.modem not in names:
            raise table.error("modem", f"no modem named {fault.modem!r}")
        fault.seconds = table.number("seconds", float, 0.0, minimum=0, maximum=_MAX_NUMBER)
        fault.count = table.number("count", int, 16, minimum=0, maximum=1_000_000)
        text = table.get("data", str)
        if text is not None:
            fault.data = text.encode("latin-1", "replace")
        table.finish()
        config.faults.append(fault)

    root.finish()
    try:
        config.build_network()  # numbers and hunt groups are checked by the network itself
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{source}: {exc.args[0] if exc.args else exc}") from None
    return config


def _blacklist(table: Table) -> BlacklistRule:
    base = BlacklistRule()
    delays = table.get("delays", list, list(base.delays))
    if not delays or not all(
        isinstance(d, int | float)
        and not isinstance(d, bool)
        and check_range(d, 0, _MAX_NUMBER) is None
        for d in delays
    ):
        raise table.error("delays", f"a list of numbers from 0 to {_MAX_NUMBER:g} is needed")
    rule = BlacklistRule(
        delays=tuple(float(d) for d in delays),
        max_attempts=table.number("max_attempts", int, base.max_attempts, minimum=0, maximum=1000),
        window=table.number("window", float, base.window, minimum=0, maximum=_MAX_NUMBER),
    )
    table.finish()
    return rule


EXAMPLE = """\
# callhome-sim network file. Times are network seconds; time_scale maps them to real
# seconds (0.1 runs everything ten times faster).
time_scale = 1.0
seed = 1

[timing]
ring_on = 2.0
ring_off = 4.0
ring_limit = 15

[line]                 # the default line for every call
rate = 33600           # bit/s, 300..33600
latency = 0.05         # one way, seconds
ber = 0.0              # bit error rate (without V.42)
training_time = 3.0
v42 = true

[[modem]]
name = "bank0"
profile = "usr"        # generic | usr | conexant
port = "pty"           # pty | tcp | rfc2217
path = "/tmp/callhome-sim/bank0"

[[modem]]
name = "bank1"
profile = "conexant"
port = "rfc2217"
tcp_port = 0           # 0: any free port (printed at start)

[[modem]]
name = "client1"
profile = "generic"
port = "pty"
path = "/tmp/callhome-sim/client1"
number = "5550001"
caller_id_name = "PLANT 7"
[modem.line]           # this line is noisy and slow
rate = 2400
v42 = false
ber = 1e-5

[[hunt_group]]
number = "5550100"     # the centre: one number, the first idle line rings
members = ["bank0", "bank1"]

[[fault]]
at = 600.0
modem = "client1"
kind = "cut"  # or: unresponsive responsive reply-delay reset garbage nuls vanish unplug plug
"""
