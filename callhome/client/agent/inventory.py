"""The inventory: what this system is (hardware and OS identity, serial numbers, firmware
and versions of interest), sent weekly and after an upgrade, and only what changed
since the last inventory the centre acknowledged.

`gather` reads files only (no program runs: an inventory must never hang the agent);
a file it cannot read is simply absent. `difference` is pure.

Package versions: the installed packages whose names match `inventory_packages`
(globs; by default those that matter to a support engineer: the kernel, firmware,
RAID, SMART and IPMI tools, systemd, libc, OpenSSL, OpenSSH), at most `MAX_PACKAGES`
of them, as `package/NAME` items. Debian's database is a file (`/var/lib/dpkg/status`,
what `dpkg-query` reads), so it is read like the rest; an RPM system's database is not,
so `rpm -qa` runs, with a deadline, in its own process group (killed at the deadline),
and an rpm that fails or hangs leaves the packages out of that inventory.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog

log = structlog.get_logger("callhome.agent")

DEFAULT_PACKAGES = (
    "linux-image-*",
    "kernel",
    "kernel-core",
    "linux-firmware",
    "firmware-*",
    "*-firmware",
    "mdadm",
    "smartmontools",
    "ipmitool",
    "freeipmi*",
    "systemd",
    "libc6",
    "glibc",
    "openssl",
    "openssh-server",
    "callhome",
)
"""Packages of interest when the config does not say (`inventory_packages`)."""
MAX_PACKAGES = 100
"""At most so many `package/` items: an inventory stays a few hundred bytes a week."""
RPM_QUERY = ("rpm", "-qa", "--qf", "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n")

DMI = ("sys_vendor", "product_name", "product_serial", "board_serial", "bios_version")
"""/sys/class/dmi/id files of interest (the serials are readable by root only)."""


def _read(path: Path, limit: int = 200) -> str | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return text[:limit] or None


def _os_release(root: Path) -> str | None:
    text = _read(root / "etc/os-release", 10000)
    for line in (text or "").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')[:200] or None
    return None


def _cpu(root: Path) -> str | None:
    text = _read(root / "proc/cpuinfo", 20000) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()[:200] or None
    return None


def _memory(root: Path) -> str | None:
    text = _read(root / "proc/meminfo", 5000) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
            return f"{round(kib / 1048576)} GiB"  # rounded: a little reclaimed is no change
    return None


def dpkg_packages(root: Path = Path("/")) -> dict[str, str] | None:
    """Installed packages and versions from dpkg's status file; None without one."""
    try:
        text = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return None
    packages: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, colon, value = line.partition(":")
            if colon and not line[:1].isspace():
                fields[key] = value.strip()
        name, version = fields.get("Package"), fields.get("Version")
        if name and version and fields.get("Status", "").endswith(" installed"):
            packages.setdefault(name, version)
    return packages


def rpm_packages(output: str) -> dict[str, str]:
    """`rpm -qa` in `RPM_QUERY`'s format: name TAB [epoch:]version-release per line
    (a last line cut short by the output bound is left out)."""
    packages: dict[str, str] = {}
    for line in output.splitlines(keepends=True):
        name, tab, version = line.rstrip("\n").partition("\t")
        if tab and name and version and line.endswith("\n"):
            packages.setdefault(name, version)
    return packages


async def installed_packages(root: Path = Path("/"), *, timeout: float = 10.0) -> dict[str, str]:
    """The installed packages and their versions: dpkg's file, else `rpm -qa` with a
    deadline; empty when neither answers."""
    found = dpkg_packages(root)
    if found is not None:
        return found
    from .collectors.runner import CommandNotFound, run_command

    try:
        result = await run_command(RPM_QUERY, timeout)
    except CommandNotFound:
        return {}
    if result.returncode != 0:
        log.warning(
            "agent.inventory_packages_failed",
            timed_out=result.timed_out,
            returncode=result.returncode,
        )
        return {}
    return rpm_packages(result.text)


def select_packages(
    installed: Mapping[str, str], patterns: Iterable[str], limit: int = MAX_PACKAGES
) -> dict[str, str]:
    """The `package/NAME: version` items of the packages matching `patterns`, the first
    `limit` by name; past that, `packages/omitted` says how many were left out."""
    wanted = list(patterns)
    names = sorted(n for n in installed if any(fnmatch.fnmatchcase(n, p) for p in wanted))
    items = {f"package/{name}": installed[name][:100] for name in names[:limit]}
    if len(names) > limit:
        items["packages/omitted"] = str(len(names) - limit)
    return items


def gather(
    root: Path = Path("/"), *, version: str = "", packages: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Everything known about this system, as flat `item: value` text pairs
    (`packages`: the `package/` items, from `select_packages`)."""
    items: dict[str, str | None] = {
        "os": _os_release(root),
        "kernel": platform.release() if root == Path("/") else None,
        "machine": platform.machine() if root == Path("/") else None,
        "cpu": _cpu(root),
        "memory": _memory(root),
        "agent": version or None,
        "python": ".".join(map(str, sys.version_info[:3])),
    }
    for name in DMI:
        items[f"dmi/{name}"] = _read(root / "sys/class/dmi/id" / name)
    block = root / "sys/block"
    try:
        disks = sorted(os.listdir(block))
    except OSError:
        disks = []
    for disk in disks:
        if disk.startswith(("loop", "ram", "zram", "dm-", "md", "sr")):
            continue
        device = block / disk / "device"
        items[f"disk/{disk}/model"] = _read(device / "model")
        items[f"disk/{disk}/serial"] = _read(device / "serial")
        items[f"disk/{disk}/firmware"] = _read(device / "firmware_rev") or _read(device / "rev")
    items.update(packages or {})
    return {key: value for key, value in items.items() if value}


def difference(
    acknowledged: Mapping[str, str], current: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """What changed since the inventory the centre acknowledged: (changed or new items,
    removed items)."""
    changed = {k: v for k, v in current.items() if acknowledged.get(k) != v}
    removed = sorted(k for k in acknowledged if k not in current)
    return changed, removed


def agent_version() -> str:
    """The installed version of callhome (an upgrade sends an inventory). Read from its
    `.dist-info/METADATA` on `sys.path` when there is one: importlib.metadata (email,
    zipfile, csv ...) costs the idle agent about 2 MB of RSS for this one line; it is
    the fallback for any other kind of installation."""
    for entry in sys.path:
        with contextlib.suppress(OSError):
            for meta in sorted(Path(entry or ".").glob("callhome-*.dist-info/METADATA")):
                with meta.open(encoding="utf-8", errors="replace") as lines:
                    for line in lines:
                        if line.startswith("Version:"):
                            return line.partition(":")[2].strip()
                        if not line.strip():
                            break  # the headers end at the first empty line
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callhome")
    except PackageNotFoundError:
        return "unknown"
