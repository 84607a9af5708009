"""Filesystems: space, inodes, read-only remounts, and a statfs that hangs."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from callhome.client.agent.collectors import filesystems as fs
from callhome.client.agent.collectors.base import State
from callhome.client.agent.collectors.filesystems import FilesystemsCollector, Thresholds
from callhome.client.agent.collectors.runner import build_collector, run_collector
from modem_drivers.configfile import ConfigError, Table

FIXTURES = Path(__file__).parent / "fixtures" / "fs"


def stat(
    blocks: int = 1000, free: int = 500, avail: int = 450, files: int = 100, ffree: int = 90
) -> Any:
    return SimpleNamespace(
        f_blocks=blocks, f_bfree=free, f_bavail=avail, f_files=files, f_ffree=ffree, f_favail=ffree
    )


def test_parse_mounts_unescapes_and_keeps_the_visible_mount() -> None:
    text = (
        "/dev/sdb1 /mnt/my\\040disk ext4 rw 0 0\n"
        "# a comment\n"
        "garbage\n"
        "/dev/sdc1 /data ext4 rw 0 0\n"
        "/dev/sdd1 /data xfs ro 0 0\n"
    )
    mounts = fs.parse_mounts(text)
    assert [(m.point, m.fstype, m.read_only) for m in mounts] == [
        ("/mnt/my disk", "ext4", False),
        ("/data", "xfs", True),
    ]


def test_percent_used_like_df() -> None:
    # df: 500 used, 450 available to users -> 52.7 %, rounded up
    assert fs.percent_used(500, 450) == 52.7
    assert fs.percent_used(0, 0) is None
    assert fs.percent_used(10, 0) == 100.0


def test_space_and_inodes_thresholds() -> None:
    mount = fs.Mount("/dev/sda1", "/", "ext4", frozenset({"rw"}))
    space, inodes = Thresholds(80, 90), Thresholds(50, 95)
    readings = fs.assess_space(mount, stat(free=100, avail=50, ffree=40), space, inodes)
    got = {r.check: (r.state, r.value) for r in readings}
    assert got == {"fs//": (State.CRITICAL, 94.8), "fs///inodes": (State.WARNING, 60.0)}
    # btrfs: no inode limit, no inode check
    readings = fs.assess_space(mount, stat(files=0, ffree=0), space, inodes)
    assert [r.check for r in readings] == ["fs//"]


def test_read_only_remount_is_critical_unless_expected() -> None:
    ro = fs.Mount("/dev/sda1", "/var", "ext4", frozenset({"ro", "relatime"}))
    assert fs.assess_mode(ro, expect_read_only=False).state is State.CRITICAL
    assert fs.assess_mode(ro, expect_read_only=True).state is State.OK
    cgroup = fs.Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", frozenset({"ro"}))
    assert fs.assess_mode(cgroup, expect_read_only=False).state is State.OK


def _collector(tmp_path: Path, table: str, fstab: str = "", **kwargs: Any) -> FilesystemsCollector:
    (tmp_path / "mounts").write_text(table)
    (tmp_path / "fstab").write_text(fstab)
    kwargs.setdefault("statfs", lambda point: stat())
    return FilesystemsCollector(mounts_file=tmp_path / "mounts", fstab=tmp_path / "fstab", **kwargs)


async def test_default_selection_on_a_real_mount_table(tmp_path: Path) -> None:
    collector = _collector(tmp_path, (FIXTURES / "node_exporter.mounts").read_text())
    out = await collector.collect()
    points = sorted(
        {r.check.split("/", 1)[1].rsplit("/", 1)[0] for r in out if r.check.endswith("/rw")}
    )
    assert points == ["/", "/boot", "/dev/shm", "/run", "/run/lock"]
    assert all(r.state is State.OK for r in out)


async def test_fstab_says_which_are_read_only(tmp_path: Path) -> None:
    mounts = "/dev/sda1 / ext4 ro,relatime 0 0\n/dev/sda2 /srv ext4 ro 0 0\n"
    fstab = "UUID=abc / ext4 errors=remount-ro 0 1\n/dev/sda2 /srv ext4 ro,nofail 0 2\n"
    out = {r.check: r.state for r in await _collector(tmp_path, mounts, fstab).collect()}
    assert out["fs///rw"] is State.CRITICAL
    assert out["fs//srv/rw"] is State.OK


async def test_configured_mounts_that_are_missing(tmp_path: Path) -> None:
    collector = _collector(tmp_path, "/dev/sda1 / ext4 rw 0 0\n", mounts=["/", "/data"])
    out = {r.check: r.state for r in await collector.collect()}
    assert out == {
        "fs//data": State.CRITICAL,
        "fs///rw": State.OK,
        "fs//": State.OK,
        "fs///inodes": State.OK,
    }


async def test_a_hung_statfs_is_unknown_for_that_mount_only(tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[str] = []

    def fake_statfs(point: str) -> Any:
        calls.append(point)
        if point == "/mnt/nfs":
            release.wait()  # a dead NFS server
        return stat()

    mounts = "/dev/sda1 / ext4 rw 0 0\nserver:/x /mnt/nfs nfs4 rw 0 0\n/dev/sdb1 /srv xfs rw 0 0\n"
    collector = _collector(tmp_path, mounts, statfs=fake_statfs, statfs_timeout=0.1)
    try:
        out = await run_collector(collector, 5.0, name="fs")
        got = {r.check: r.state for r in out}
        assert got["fs//mnt/nfs"] is State.UNKNOWN
        assert got["fs//"] is State.OK and got["fs//srv"] is State.OK
        assert got["collector/fs"] is State.OK
        # while it hangs, no second call piles up another thread
        out = await collector.collect()
        assert calls.count("/mnt/nfs") == 1
        assert "still hung" in next(r.text for r in out if r.check == "fs//mnt/nfs")
    finally:
        release.set()
    # once the server answers, the mount is checked again
    for _ in range(100):
        if collector._hung["/mnt/nfs"].is_set():
            break
        threading.Event().wait(0.01)
    out = await collector.collect()
    assert next(r.state for r in out if r.check == "fs//mnt/nfs") is State.OK
    assert calls.count("/mnt/nfs") == 2


async def test_statfs_error_is_unknown(tmp_path: Path) -> None:
    def failing(point: str) -> Any:
        raise PermissionError(13, "Permission denied")

    out = await _collector(tmp_path, "/dev/sda1 / ext4 rw 0 0\n", statfs=failing).collect()
    assert next(r for r in out if r.check == "fs//").text == "statfs: Permission denied"


async def test_real_statvfs_on_tmp(tmp_path: Path) -> None:
    point = str(tmp_path)
    collector = _collector(tmp_path, f"/dev/x {point} ext4 rw 0 0\n", statfs=os.statvfs)
    out = {r.check: r for r in await collector.collect()}
    reading = out[f"fs/{point}"]
    assert reading.unit == "%" and reading.value is not None and 0 <= reading.value <= 100


def test_config() -> None:
    built = build_collector(
        Table({"kind": "filesystems", "space_warning": 70, "exclude": ["/boot*"]}, "check[0]", "c")
    )
    assert isinstance(built, FilesystemsCollector)
    assert built.space == Thresholds(70, 95) and "/boot*" in built.exclude
    with pytest.raises(ConfigError, match=r"check\[0\].space_critical: must not be below"):
        build_collector(Table({"kind": "filesystems", "space_warning": 99}, "check[0]", "c"))
    with pytest.raises(ConfigError, match=r"check\[0\].inodes_warning: must be between 0 and 100"):
        build_collector(Table({"kind": "filesystems", "inodes_warning": 101}, "check[0]", "c"))
