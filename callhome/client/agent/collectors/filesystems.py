"""Filesystems: space, inodes and read-only remounts.

Per mount point, three checks: `fs/<mount>` (space used, %), `fs/<mount>/inodes` (inodes
used, %; left out where the filesystem has no inode limit, btrfs), and `fs/<mount>/rw`
(CRITICAL when mounted read-only but expected read-write: the kernel remounts a
filesystem read-only when it finds errors, `errors=remount-ro`). A mount is expected
read-only when `read_only` lists it or /etc/fstab mounts it `ro`.

Each statvfs runs with its own deadline in a thread of its own: a hung NFS or CIFS
server makes statvfs block in the kernel, and nothing can interrupt that (a child
process stuck in the same call is no more killable, and costs a fork per mount per
collection). The thread of a hung call is abandoned, never joined; while it hangs, that
mount is reported UNKNOWN without starting another call, so a dead server costs one
thread, not one per collection.

The mount table parsing and the verdicts are pure (`parse_mounts`, `assess_*`).
"""

from __future__ import annotations

import fnmatch
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from modem_drivers.configfile import Table

from .base import Reading, State
from .runner import register, run_blocking

PSEUDO_TYPES = (
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
    "udf",
)
"""Filesystems that are not storage or are full or read-only by design (a snap's
squashfs is always 100 % used)."""


class StatResult(Protocol):
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_favail: int


@dataclass(frozen=True)
class Mount:
    device: str
    point: str
    fstype: str
    options: frozenset[str]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(field_text: str) -> str:
    # the kernel writes space, tab, newline and backslash in octal (\040)
    out, i = [], 0
    while i < len(field_text):
        if field_text[i] == "\\" and field_text[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[Mount]:
    """/proc/self/mounts (or /etc/fstab: same first four fields). Malformed lines and
    comments are skipped; a mount point mounted twice keeps its last (the visible one)."""
    mounts: dict[str, Mount] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0].startswith("#"):
            continue
        point = _unescape(fields[1])
        mounts.pop(point, None)
        mounts[point] = Mount(
            _unescape(fields[0]), point, fields[2], frozenset(fields[3].split(","))
        )
    return list(mounts.values())


def percent_used(used: int, available: int) -> float | None:
    """Like df: used / (used + available to users), rounded up to a tenth."""
    total = used + available
    if total <= 0:
        return None
    return math.ceil(used * 1000 / total) / 10


@dataclass(frozen=True)
class Thresholds:
    warning: float = 85.0
    critical: float = 95.0

    def state(self, value: float) -> State:
        if value >= self.critical:
            return State.CRITICAL
        if value >= self.warning:
            return State.WARNING
        return State.OK


def assess_space(
    mount: Mount, stat: StatResult, space: Thresholds, inodes: Thresholds
) -> list[Reading]:
    check = f"fs/{mount.point}"
    out = []
    used_pct = percent_used(stat.f_blocks - stat.f_bfree, stat.f_bavail)
    if used_pct is None:
        out.append(Reading(check, State.UNKNOWN, "no blocks (not a storage filesystem?)"))
    else:
        out.append(Reading(check, space.state(used_pct), f"{used_pct:g}% used", used_pct, "%"))
    if stat.f_files > 0:
        inode_pct = percent_used(stat.f_files - stat.f_ffree, stat.f_favail)
        if inode_pct is not None:
            out.append(
                Reading(
                    f"{check}/inodes",
                    inodes.state(inode_pct),
                    f"{inode_pct:g}% of inodes used",
                    inode_pct,
                    "%",
                )
            )
    return out


NO_REMOUNT_TYPES = ("tmpfs",)
"""Never remounted read-only by the kernel: read-only is how they were mounted (systemd
mounts /sys/fs/cgroup as a read-only tmpfs)."""

DEFAULT_EXCLUDE = ("/proc/*", "/sys/*", "/run/user/*")


def assess_mode(mount: Mount, expect_read_only: bool) -> Reading:
    check = f"fs/{mount.point}/rw"
    expect_read_only = expect_read_only or mount.fstype in NO_REMOUNT_TYPES
    if mount.read_only and not expect_read_only:
        return Reading(check, State.CRITICAL, f"read-only ({mount.device}, {mount.fstype})")
    return Reading(check, State.OK, "read-only as expected" if mount.read_only else "read-write")


@dataclass
class FilesystemsCollector:
    """`kind = "filesystems"`: keys `mounts` (mount points to check; default every
    storage filesystem), `exclude` (globs of mount points, added to DEFAULT_EXCLUDE),
    `exclude_types` (added to PSEUDO_TYPES), `read_only` (mount points expected
    read-only), `space_warning`, `space_critical`, `inodes_warning`, `inodes_critical`
    (percent), `statfs_timeout` (per mount), `mounts_file`, `fstab`."""

    kind: ClassVar[str] = "filesystems"
    mounts: list[str] = field(default_factory=list)
    exclude: Sequence[str] = DEFAULT_EXCLUDE
    exclude_types: Sequence[str] = PSEUDO_TYPES
    read_only: list[str] = field(default_factory=list)
    space: Thresholds = field(default_factory=Thresholds)
    inodes: Thresholds = field(default_factory=Thresholds)
    statfs_timeout: float = 2.0
    mounts_file: Path = Path("/proc/self/mounts")
    fstab: Path = Path("/etc/fstab")
    statfs: Callable[[str], Any] = os.statvfs
    _hung: dict[str, threading.Event] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Table) -> Self:
        def thresholds(prefix: str) -> Thresholds:
            warning = table.number(f"{prefix}_warning", float, 85.0, minimum=0, maximum=100)
            critical = table.number(f"{prefix}_critical", float, 95.0, minimum=0, maximum=100)
            if critical < warning:
                raise table.error(f"{prefix}_critical", f"must not be below {prefix}_warning")
            return Thresholds(warning, critical)

        return cls(
            mounts=table.strings("mounts", []),
            exclude=(*DEFAULT_EXCLUDE, *table.strings("exclude", [])),
            exclude_types=(*PSEUDO_TYPES, *table.strings("exclude_types", [])),
            read_only=table.strings("read_only", []),
            space=thresholds("space"),
            inodes=thresholds("inodes"),
            statfs_timeout=table.duration("statfs_timeout", 2.0, minimum=0.05, maximum=60.0),
            mounts_file=table.path_value("mounts_file", "/proc/self/mounts"),
            fstab=table.path_value("fstab", "/etc/fstab"),
        )

    def _selected(self, mounts: list[Mount]) -> list[Mount]:
        if self.mounts:
            wanted = set(self.mounts)
            return [m for m in mounts if m.point in wanted]
        return [
            m
            for m in mounts
            if m.fstype not in self.exclude_types
            and not any(fnmatch.fnmatchcase(m.point, p) for p in self.exclude)
        ]

    async def collect(self) -> list[Reading]:
        mounts = parse_mounts(self.mounts_file.read_text(encoding="utf-8", errors="replace"))
        try:
            fstab = parse_mounts(self.fstab.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            fstab = []
        expected_ro = set(self.read_only) | {m.point for m in fstab if m.read_only}
        selected = self._selected(mounts)
        out: list[Reading] = []
        present = {m.point for m in selected}
        out.extend(
            Reading(f"fs/{point}", State.CRITICAL, "not mounted")
            for point in self.mounts
            if point not in present
        )
        for mount in selected:
            out.append(assess_mode(mount, mount.point in expected_ro))
            out.extend(await self._space(mount))
        return out

    async def _space(self, mount: Mount) -> list[Reading]:
        check = f"fs/{mount.point}"
        still = self._hung.get(mount.point)
        if still is not None and not still.is_set():
            return [Reading(check, State.UNKNOWN, "statfs still hung (server not answering?)")]
        done = threading.Event()

        def call() -> Any:
            try:
                return self.statfs(mount.point)
            finally:
                done.set()

        try:
            stat = await run_blocking(call, self.statfs_timeout)
        except TimeoutError:
            self._hung[mount.point] = done
            return [
                Reading(check, State.UNKNOWN, f"statfs did not answer in {self.statfs_timeout:g} s")
            ]
        except OSError as exc:
            return [Reading(check, State.UNKNOWN, f"statfs: {exc.strerror or exc}")]
        self._hung.pop(mount.point, None)
        return assess_space(mount, stat, self.space, self.inodes)


register("filesystems")(FilesystemsCollector.from_table)
