"""The inventory: what this system is (hardware and OS identity, serial numbers, firmware
and versions of interest), sent weekly and after an upgrade, and only what changed
since the last inventory the centre acknowledged.

`gather` reads files only (no program runs: an inventory must never hang the agent);
a file it cannot read is simply absent. `difference` is pure.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

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


def gather(root: Path = Path("/"), *, version: str = "") -> dict[str, str]:
    """Everything known about this system, as flat `item: value` text pairs."""
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
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callhome")
    except PackageNotFoundError:
        return "unknown"
