"""The inventory: gathered from files, and only what changed since the last one the
centre acknowledged goes on the wire."""

from __future__ import annotations

import random
from pathlib import Path

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
