"""The inventory: gathered from files, and only what changed since the last one the
centre acknowledged goes on the wire."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhome.client.agent import inventory
from callhome.client.agent.config import load_agent_config
from callhome.client.agent.daemon import Agent
from callhome.client.config import load_client_config

from .agentkit import FakeCentre, write_config


def fake_root(root: Path, serial: str = "WD-1234") -> Path:
    files = {
        "etc/os-release": 'NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "proc/cpuinfo": "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) E-2236\n",
        "proc/meminfo": "MemTotal:       32788916 kB\n",
        "sys/class/dmi/id/sys_vendor": "Supermicro\n",
        "sys/block/sda/device/model": "WDC WD40EFRX\n",
        "sys/block/sda/device/serial": serial + "\n",
        "sys/block/loop0/device/model": "ignored\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_gather_reads_identity_and_leaves_out_what_it_cannot_read(tmp_path: Path) -> None:
    items = inventory.gather(fake_root(tmp_path), version="1.2")
    assert items["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert items["cpu"] == "Intel(R) Xeon(R) E-2236" and items["memory"] == "31 GiB"
    assert items["dmi/sys_vendor"] == "Supermicro" and "dmi/product_serial" not in items
    assert items["disk/sda/serial"] == "WD-1234" and "disk/loop0/model" not in items
    assert items["agent"] == "1.2"


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from("xyz")),
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from("xyz")),
)
def test_applying_the_difference_gives_the_current_inventory(
    old: dict[str, str], new: dict[str, str]
) -> None:
    changed, removed = inventory.difference(old, new)
    rebuilt = {k: v for k, v in old.items() if k not in removed} | changed
    assert rebuilt == new
    assert all(old.get(k) != v for k, v in changed.items())  # nothing unchanged is sent


async def test_the_agent_sends_a_full_inventory_then_only_changes_once_acknowledged(
    tmp_path: Path, monkeypatch: object
) -> None:
    root = fake_root(tmp_path / "root")
    real = inventory.gather
    monkeypatch.setattr(inventory, "gather", lambda **kw: real(root, **kw))  # type: ignore[attr-defined]

    async def no_packages(*args: object, **kw: object) -> dict[str, str]:
        return {}  # reading this machine's would take agent time (scaled 1000 times)

    monkeypatch.setattr(inventory, "installed_packages", no_packages)  # type: ignore[attr-defined]
    path = write_config(tmp_path, "[agent]\ntime_scale = 0.001\n")
    client = load_client_config(path)
    config = load_agent_config(path, client.spool)
    centre = FakeCentre(failures=1)
    agent = Agent(client, config, b"k" * 32, caller=centre, rng=random.Random(5))

    def inventories() -> list[dict[str, object]]:
        return [c for kind, c in centre.calls[-1] if kind == "inventory"]

    await agent.call_once()  # the first call fails: the inventory stays queued
    [first] = inventories()
    assert first["full"] and "disk/sda/serial" in first["changed"]  # type: ignore[operator]
    await agent.call_once()
    assert inventories() == [first]  # the same message, delivered now
    assert agent.inventory["acked"]["disk/sda/serial"] == "WD-1234"
    agent.inventory["next"] = 0  # a week later, nothing changed: nothing goes
    calls = len(centre.calls)
    await agent.call_once()
    assert len(centre.calls) == calls  # and no call is made for nothing
    fake_root(root, serial="WD-9999")  # a disk was replaced
    agent.inventory["next"] = 0
    await agent.call_once()
    [update] = inventories()
    assert update["changed"] == {"disk/sda/serial": "WD-9999"} and not update["full"]
    agent.spool.close()


DPKG_STATUS = """Package: mdadm
Status: install ok installed
Priority: optional
Version: 4.2-5
Description: tool to administer Linux MD arrays (software RAID)
 Version: 9.9 (a continuation line is not a field)

Package: linux-image-6.1.0-13-amd64
Status: install ok installed
Version: 6.1.55-1

Package: vim
Status: install ok installed
Version: 2:9.0.1378-2

Package: smartmontools
Status: deinstall ok config-files
Version: 7.3-pre

Package: systemd
Status: install ok installed
Version: 252.19-1~deb12u1
"""


def test_package_versions_come_from_dpkgs_file_for_the_packages_of_interest(
    tmp_path: Path,
) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(DPKG_STATUS)
    installed = inventory.dpkg_packages(tmp_path)
    assert installed is not None
    assert installed["mdadm"] == "4.2-5" and "smartmontools" not in installed  # removed
    items = inventory.select_packages(installed, inventory.DEFAULT_PACKAGES)
    assert items == {
        "package/linux-image-6.1.0-13-amd64": "6.1.55-1",
        "package/mdadm": "4.2-5",
        "package/systemd": "252.19-1~deb12u1",
    }  # vim is of no interest
    # bounded: past the limit, a count of what was left out (nothing is dropped silently)
    bounded = inventory.select_packages(installed, ["*"], limit=2)
    assert bounded == {
        "package/linux-image-6.1.0-13-amd64": "6.1.55-1",
        "package/mdadm": "4.2-5",
        "packages/omitted": "2",
    }
    assert inventory.dpkg_packages(tmp_path / "elsewhere") is None


async def test_package_versions_come_from_rpm_with_a_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rpm = bin_dir / "rpm"
    rpm.write_text(
        "#!/bin/sh\nprintf 'kernel-core\\t5.14.0-362.el9\\nmdadm\\t4.2-8.el9\\n"
        "bash\\t5.1.8-6.el9\\nglibc\\t2.34-8'\n"  # the last line cut short: left out
    )
    rpm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    installed = await inventory.installed_packages(tmp_path, timeout=10)
    assert installed == {
        "kernel-core": "5.14.0-362.el9",
        "mdadm": "4.2-8.el9",
        "bash": "5.1.8-6.el9",
    }
    rpm.write_text("#!/bin/sh\nsleep 60\n")  # a hung rpm database
    started = time.monotonic()
    assert await inventory.installed_packages(tmp_path, timeout=0.3) == {}
    assert time.monotonic() - started < 10
    rpm.unlink()  # neither dpkg nor rpm: no packages, no error
    assert await inventory.installed_packages(tmp_path, timeout=1) == {}


async def test_an_upgraded_package_is_all_the_next_inventory_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_root(tmp_path / "root")
    installed = {"mdadm": "4.2-5", "vim": "9.0", "linux-image-6.1.0-13-amd64": "6.1.55-1"}
    real = inventory.gather
    monkeypatch.setattr(inventory, "gather", lambda **kw: real(root, **kw))

    async def packages(root: Path = root, *, timeout: float = 10.0) -> dict[str, str]:
        return dict(installed)

    monkeypatch.setattr(inventory, "installed_packages", packages)
    path = write_config(tmp_path, '[agent]\ntime_scale = 0.001\ninventory_packages = ["mdadm"]\n')
    client = load_client_config(path)
    config = load_agent_config(path, client.spool)
    centre = FakeCentre()
    agent = Agent(client, config, b"k" * 32, caller=centre, rng=random.Random(5))
    await agent.call_once()
    [first] = [c for kind, c in centre.calls[-1] if kind == "inventory"]
    assert first["changed"]["package/mdadm"] == "4.2-5"  # type: ignore[index]
    assert not any("vim" in key or "linux" in key for key in first["changed"])  # type: ignore[union-attr]
    installed["mdadm"] = "4.2-6"
    installed["vim"] = "9.1"  # of no interest: no change to send
    agent.inventory["next"] = 0
    await agent.call_once()
    [update] = [c for kind, c in centre.calls[-1] if kind == "inventory"]
    assert update["changed"] == {"package/mdadm": "4.2-6"} and not update["full"]
    agent.spool.close()


async def test_a_crash_before_the_state_file_is_written_queues_no_second_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callhome.client.agent import daemon

    root = fake_root(tmp_path / "root")
    real = inventory.gather
    monkeypatch.setattr(inventory, "gather", lambda **kw: real(root, **kw))

    async def no_packages(*args: object, **kw: object) -> dict[str, str]:
        return {}

    monkeypatch.setattr(inventory, "installed_packages", no_packages)
    monkeypatch.setattr(daemon, "write_state", lambda *a: None)  # every save is lost
    path = write_config(tmp_path, "[agent]\ntime_scale = 0.001\n")
    client = load_client_config(path)
    config = load_agent_config(path, client.spool)
    for _ in range(2):  # the agent, then the agent restarted
        agent = Agent(client, config, b"k" * 32, caller=FakeCentre("busy"), rng=random.Random(5))
        await agent.call_once()
        inventories = [m for m in agent.spool.queued() if m.kind.label == "inventory"]
        assert len(inventories) == 1
        agent.spool.close()


def test_the_agents_version_is_the_installed_ones_read_without_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import version

    assert inventory.agent_version() == version("callhome")
    site = tmp_path / "site"
    (site / "callhome-9.8.7.dist-info").mkdir(parents=True)
    (site / "callhome-9.8.7.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: callhome\nVersion: 9.8.7\n\nVersion: not a header\n"
    )
    monkeypatch.syspath_prepend(str(site))  # first on the path: the one Python imports
    assert inventory.agent_version() == "9.8.7"
