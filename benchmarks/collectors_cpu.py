"""CPU time of one full collection on a typical server (issue 11: <= 1 s).

    python -m benchmarks.collectors_cpu [--runs 7]

The server: 12 md arrays (node_exporter's mdstat fixture), the hwmon tree of
tests/agent/collectors/fixtures/hwmon (6 chips, 27 sensors), this machine's real mount
table with real statvfs calls, 4 disks through a stand-in smartctl (a shell script
printing the fixtures' JSON: one process per disk, as the real one), ipmitool the same
way, systemd through this machine's systemctl (if it has none, the collector says so),
and 3 monitoring plugins (tiny shell scripts). All collectors run at once through
`run_collector`, as the agent runs them.

CPU is that of this process and of every child it waited for (getrusage SELF +
CHILDREN), user + system, per collection; the median and the worst of the runs are
printed, with wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

from callhome.client.agent.collectors.base import Collector
from callhome.client.agent.collectors.filesystems import FilesystemsCollector
from callhome.client.agent.collectors.hwmon import HwmonCollector
from callhome.client.agent.collectors.ipmi import IpmiCollector
from callhome.client.agent.collectors.mdraid import MdraidCollector
from callhome.client.agent.collectors.plugin import PluginCollector
from callhome.client.agent.collectors.runner import run_collector
from callhome.client.agent.collectors.smart import SmartCollector
from callhome.client.agent.collectors.systemd import SystemdCollector
from tests.agent.collectors.test_hwmon import build_tree

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "agent" / "collectors" / "fixtures"


def _script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build(folder: Path) -> dict[str, Collector]:
    smart = FIXTURES / "smart"
    smartctl = _script(
        folder,
        "smartctl",
        'case "$*" in\n'
        f"  *nvme*) cat {smart}/nvme_healthy_samsung.json ;;\n"
        f"  *sdd*) cat {smart}/standby.json; exit 2 ;;\n"
        f"  *) cat {smart}/ata_healthy_wdc.json ;;\nesac\n",
    )
    ipmi = FIXTURES / "ipmi"
    ipmitool = _script(
        folder,
        "ipmitool",
        f'case "$1" in\n  sdr) cat {ipmi}/hp_dl360_sdr_elist.txt ;;\n'
        f"  sel) cat {ipmi}/hp_sel_list.txt ;;\nesac\n",
    )
    plugin = _script(folder, "check_dummy", "echo 'DUMMY OK - fine | t=0.01s;1;2;0'\n")
    return {
        "md": MdraidCollector(path=FIXTURES / "mdstat" / "node_exporter_mixed.mdstat"),
        "hwmon": HwmonCollector(root=build_tree(folder / "sys")),
        "fs": FilesystemsCollector(),
        "smart": SmartCollector(
            devices=["/dev/sda", "/dev/sdb", "/dev/sdd", "/dev/nvme0"], smartctl=smartctl
        ),
        "ipmi": IpmiCollector(ipmitool=ipmitool),
        "systemd": SystemdCollector(),
        "plugin1": PluginCollector([plugin], label="one"),
        "plugin2": PluginCollector([plugin], label="two"),
        "plugin3": PluginCollector([plugin], label="three"),
    }


async def collect_all(collectors: dict[str, Collector]) -> int:
    results = await asyncio.gather(*(run_collector(c, 30.0, name=n) for n, c in collectors.items()))
    return sum(len(r) for r in results)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as name:
        collectors = build(Path(name))
        readings = await collect_all(collectors)  # warm-up: imports, first scans
        cpu, wall = [], []
        for _ in range(runs):
            c0, w0 = _cpu(), time.monotonic()
            await collect_all(collectors)
            cpu.append(_cpu() - c0)
            wall.append(time.monotonic() - w0)
    print(f"collectors: {len(collectors)}, readings per collection: {readings}")
    print(
        f"CPU per full collection: median {statistics.median(cpu) * 1000:.0f} ms, "
        f"worst {max(cpu) * 1000:.0f} ms over {runs} runs (this process + children)"
    )
    print(f"wall time: median {statistics.median(wall) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    asyncio.run(main(parser.parse_args().runs))
