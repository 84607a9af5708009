"""md RAID: the state of every array in /proc/mdstat (and `mdadm --detail` if asked).

The parser is pure (`parse_mdstat`: text in, arrays out; `readings`: arrays in,
readings out) so that the tests run on a corpus of real /proc/mdstat files.

The verdicts (docs/agent-collectors.md says why):

- active, every member in sync: OK (raid0/linear: OK, "no redundancy");
- a member marked failed `(F)`: CRITICAL;
- degraded (fewer working members than slots, or a `_` in `[UU_]`): CRITICAL, also
  while a recovery onto a spare runs (redundancy is not back until it ends; the
  `recovering` key can lower that to WARNING);
- resync / check / repair / reshape / replacement on a complete array: OK, with the
  operation, percent, speed and time left in the text;
- `resync=DELAYED` / `resync=PENDING`: OK, said in the text;
- inactive: CRITICAL, but for IMSM/DDF containers (`super external:imsm`), which are
  inactive by design;
- an array named in `expect` that is not there: CRITICAL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from modem_drivers.configfile import Table

from .base import Reading, State
from .runner import CommandNotFound, register, run_command

NO_REDUNDANCY = frozenset({"raid0", "linear", "faulty"})

_HEADER = re.compile(r"^(?P<name>[^\s:]+)\s*:\s*(?P<rest>.*)$")
_MEMBER = re.compile(r"^(?P<dev>[^\s\[\]()]+)\[(?P<slot>\d+)\](?P<flags>(?:\([A-Z]\))*)$")
_STATUS = re.compile(r"\[(?P<slots>\d+)/(?P<working>\d+)\]\s*\[(?P<map>[U_]+)\]")
_BLOCKS = re.compile(r"^(?P<blocks>\d+)\s+blocks\b(?P<rest>.*)$")
_SUPER = re.compile(r"\bsuper\s+(?P<super>\S+)")
_PROGRESS = re.compile(
    r"\b(?P<op>resync|recovery|reshape|check|repair)\s*=\s*(?P<pct>\d+(?:\.\d+)?)%"
    r"(?:\s*\((?P<done>\d+)/(?P<total>\d+)\))?"
    r"(?:\s*finish\s*=\s*(?P<finish>\d+(?:\.\d+)?)min)?"
    r"(?:\s*speed\s*=\s*(?P<speed>\d+)K/sec)?"
)
_WAITING = re.compile(r"\b(?P<op>resync|recovery|reshape|check)\s*=\s*(?P<why>DELAYED|PENDING)\b")
_IGNORED = ("Personalities", "read_ahead", "unused devices", "Event:")


class MdstatError(ValueError):
    """The text is not /proc/mdstat."""


@dataclass(frozen=True)
class Member:
    device: str
    slot: int
    flags: frozenset[str] = frozenset()
    """F failed, S spare, W write-mostly, R replacement, J journal."""


@dataclass(frozen=True)
class Progress:
    operation: str
    percent: float
    finish_minutes: float | None = None
    speed_kib: int | None = None


@dataclass(frozen=True)
class Array:
    name: str
    active: bool
    level: str | None
    read_only: str | None
    members: tuple[Member, ...]
    blocks: int | None = None
    superblock: str | None = None
    slots: int | None = None
    working: int | None = None
    status_map: str | None = None
    progress: Progress | None = None
    waiting: str | None = None
    """"resync=DELAYED" and the like."""
    extra: tuple[str, ...] = field(default=())


def parse_mdstat(text: str) -> list[Array]:
    """The arrays described by /proc/mdstat text. Raises `MdstatError` when the text is
    not mdstat (arrays whose lines are odd are returned as far as they could be read)."""
    lines = text.splitlines()
    if not any(line.startswith("Personalities") for line in lines):
        raise MdstatError("no 'Personalities' line: not /proc/mdstat")
    arrays: list[Array] = []
    current: list[str] | None = None
    blocks: list[list[str]] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if raw.startswith(_IGNORED):
            current = None
            continue
        if not raw[0].isspace():
            match = _HEADER.match(line)
            if match and re.match(r"^(in)?active\b", match.group("rest")):
                current = [line]
                blocks.append(current)
                continue
            if current is None or not _continuation(line):
                raise MdstatError(f"unexpected line: {line[:60]!r}")
        if current is None:
            raise MdstatError(f"line outside any array: {line[:60]!r}")
        current.append(line)
    for block in blocks:
        arrays.append(_parse_array(block))
    names = [a.name for a in arrays]
    if len(set(names)) != len(names):
        raise MdstatError("an array is listed twice")
    return arrays


def _continuation(line: str) -> bool:
    # mdstat quoted in a mail or a forum loses its indentation; what follows a header
    # is recognisably one of these
    return bool(
        _BLOCKS.match(line)
        or _PROGRESS.search(line)
        or _WAITING.search(line)
        or line.startswith(("bitmap:", "["))
    )


def _parse_array(block: list[str]) -> Array:
    header = _HEADER.match(block[0])
    assert header is not None
    name = header.group("name")
    words = header.group("rest").split()
    active = words[0] == "active"
    read_only = None
    level = None
    members: list[Member] = []
    for word in words[1:]:
        if word.startswith("(") and word.endswith(")"):
            read_only = word[1:-1]
            continue
        member = _MEMBER.match(word)
        if member:
            flags = frozenset(member.group("flags").replace("(", "").replace(")", ""))
            members.append(Member(member.group("dev"), int(member.group("slot")), flags))
        elif level is None and not members:
            level = word
        else:
            raise MdstatError(f"{name}: unexpected word {word[:40]!r}")
    blocks = superblock = slots = working = status_map = None
    progress: Progress | None = None
    waiting = None
    extra: list[str] = []
    for line in block[1:]:
        if found := _BLOCKS.match(line):
            blocks = int(found.group("blocks"))
            if sup := _SUPER.search(found.group("rest")):
                superblock = sup.group("super")
        if status := _STATUS.search(line):
            slots, working = int(status.group("slots")), int(status.group("working"))
            status_map = status.group("map")
        if prog := _PROGRESS.search(line):
            progress = Progress(
                prog.group("op"),
                float(prog.group("pct")),
                float(prog.group("finish")) if prog.group("finish") else None,
                int(prog.group("speed")) if prog.group("speed") else None,
            )
        elif wait := _WAITING.search(line):
            waiting = f"{wait.group('op')}={wait.group('why')}"
        elif not found and not status and not line.startswith("bitmap:"):
            extra.append(line)
    return Array(
        name=name,
        active=active,
        level=level,
        read_only=read_only,
        members=tuple(members),
        blocks=blocks,
        superblock=superblock,
        slots=slots,
        working=working,
        status_map=status_map,
        progress=progress,
        waiting=waiting,
        extra=tuple(extra),
    )


def check_name(array: str) -> str:
    return f"md/{array}"


def array_reading(array: Array, *, recovering: State = State.CRITICAL) -> Reading:
    """The verdict on one array (see the module docstring)."""
    failed = [m.device for m in array.members if "F" in m.flags]
    spares = [m.device for m in array.members if "S" in m.flags]
    attributes: dict[str, str] = {"level": array.level or "none"}
    if array.slots is not None:
        attributes["members"] = f"{array.working}/{array.slots}"
    if array.status_map:
        attributes["map"] = array.status_map
    if failed:
        attributes["failed"] = ",".join(failed)
    if spares:
        attributes["spares"] = ",".join(spares)
    if array.read_only:
        attributes["mode"] = array.read_only
    value = unit = None
    op_text = ""
    if array.progress:
        p = array.progress
        attributes["operation"] = p.operation
        value, unit = p.percent, "%"
        op_text = f"{p.operation} {p.percent:g}%"
        if p.speed_kib is not None:
            op_text += f" at {p.speed_kib / 1024:.1f} MiB/s"
        if p.finish_minutes is not None:
            op_text += f", {p.finish_minutes:g} min left"
    elif array.waiting:
        attributes["operation"] = array.waiting
        op_text = array.waiting.replace("=", " ").lower()

    def reading(state: State, text: str) -> Reading:
        text = f"{text}; {op_text}" if op_text else text
        return Reading(check_name(array.name), state, text, value, unit, attributes)

    level = array.level or ""
    if not array.active:
        if (
            array.superblock
            and array.superblock.startswith("external:")
            and "/" not in (array.superblock)
        ):
            return reading(State.OK, f"{array.superblock[9:]} container")
        return reading(State.CRITICAL, f"inactive {level or 'array'}".rstrip())
    if failed:
        return reading(State.CRITICAL, f"{level}: failed member {', '.join(failed)}")
    if level in NO_REDUNDANCY:
        return reading(State.OK, f"{level}: active, no redundancy")
    if array.slots is None or array.working is None or array.status_map is None:
        return reading(State.UNKNOWN, f"{level}: no member status in /proc/mdstat")
    missing = max(array.slots - array.working, array.status_map.count("_"))
    if missing:
        text = f"{level}: degraded, {array.slots - missing} of {array.slots} members"
        if array.progress and array.progress.operation == "recovery":
            return reading(recovering, text)
        return reading(State.CRITICAL, text)
    text = f"{level}: clean, {array.working} of {array.slots} members"
    if spares:
        text += f", {len(spares)} spare{'s' if len(spares) > 1 else ''}"
    return reading(State.OK, text)


def readings(
    arrays: list[Array],
    *,
    expect: Sequence[str] = (),
    recovering: State = State.CRITICAL,
) -> list[Reading]:
    out = [array_reading(array, recovering=recovering) for array in arrays]
    present = {array.name for array in arrays}
    out.extend(
        Reading(check_name(name), State.CRITICAL, "array not assembled (not in /proc/mdstat)")
        for name in expect
        if name not in present
    )
    return out


# --- mdadm --detail --------------------------------------------------------------------

_DETAIL_STATE = re.compile(r"^\s*State\s*:\s*(?P<state>.+?)\s*$", re.MULTILINE)


def parse_detail_state(text: str) -> str | None:
    """The `State :` line of `mdadm --detail` ("clean, degraded", "active, FAILED")."""
    match = _DETAIL_STATE.search(text)
    return match.group("state") if match else None


def merge_detail(reading: Reading, state_line: str) -> Reading:
    """`mdadm --detail`'s word on an array: it can only make the verdict worse."""
    attributes = {**reading.attributes, "mdadm_state": state_line}
    words = {w.strip().lower() for w in state_line.split(",")}
    bad = words & {"degraded", "failed", "not started", "inactive"}
    state = reading.state
    text = reading.text
    if bad and state in (State.OK, State.WARNING):
        state = State.CRITICAL
        text = f"{text}; mdadm says {state_line}"
    return Reading(reading.check, state, text, reading.value, reading.unit, attributes)


# --- the collector -----------------------------------------------------------------


@dataclass
class MdraidCollector:
    """`kind = "mdraid"`: keys `path` (default /proc/mdstat), `expect` (arrays that
    must be there), `recovering` ("critical" or "warning": a degraded array while a
    spare is rebuilt), `mdadm` (also ask `mdadm --detail`, default false),
    `mdadm_timeout`."""

    kind: ClassVar[str] = "mdraid"
    path: Path = Path("/proc/mdstat")
    expect: list[str] = field(default_factory=list)
    recovering: State = State.CRITICAL
    mdadm: bool = False
    mdadm_timeout: float = 5.0

    @classmethod
    def from_table(cls, table: Table) -> Self:
        recovering = table.get("recovering", str, "critical")
        if recovering not in ("critical", "warning"):
            raise table.error("recovering", 'expected "critical" or "warning"')
        return cls(
            path=table.path_value("path", "/proc/mdstat"),
            expect=table.strings("expect", []),
            recovering=State.CRITICAL if recovering == "critical" else State.WARNING,
            mdadm=table.get("mdadm", bool, False),
            mdadm_timeout=table.duration("mdadm_timeout", 5.0, minimum=0.1, maximum=300.0),
        )

    async def collect(self) -> list[Reading]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            # no md driver loaded: no arrays, unless some were expected
            return readings([], expect=self.expect)
        out = readings(parse_mdstat(text), expect=self.expect, recovering=self.recovering)
        if self.mdadm:
            out = [await self._detail(r) for r in out]
        return out

    async def _detail(self, reading: Reading) -> Reading:
        if reading.state is State.UNKNOWN or "level" not in reading.attributes:
            return reading
        device = "/dev/" + reading.check.removeprefix("md/")
        try:
            result = await run_command(["mdadm", "--detail", device], self.mdadm_timeout)
        except CommandNotFound:
            return reading
        state_line = parse_detail_state(result.text) if result.returncode == 0 else None
        return merge_detail(reading, state_line) if state_line else reading


register("mdraid")(MdraidCollector.from_table)
