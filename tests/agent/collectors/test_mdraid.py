"""md RAID from a corpus of real /proc/mdstat files (fixtures/mdstat/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.client.agent.collectors import mdraid
from callhome.client.agent.collectors.base import Reading, State
from callhome.client.agent.collectors.mdraid import MdraidCollector, MdstatError, parse_mdstat
from callhome.client.agent.collectors.runner import build_collector, run_collector
from modem_drivers.configfile import ConfigError, Table

FIXTURES = Path(__file__).parent / "fixtures" / "mdstat"


def verdicts(name: str, **kwargs: object) -> dict[str, State | None]:
    arrays = parse_mdstat((FIXTURES / name).read_text())
    return {r.check: r.state for r in mdraid.readings(arrays, **kwargs)}  # type: ignore[arg-type]


def reading(name: str, check: str) -> Reading:
    arrays = parse_mdstat((FIXTURES / name).read_text())
    return next(r for r in mdraid.readings(arrays) if r.check == check)


def test_every_fixture_parses() -> None:
    files = sorted(FIXTURES.glob("*.mdstat"))
    assert len(files) >= 15
    for path in files:
        parse_mdstat(path.read_text())


def test_node_exporter_mixed() -> None:
    assert verdicts("node_exporter_mixed.mdstat") == {
        "md/md3": State.OK,
        "md/md127": State.OK,
        "md/md0": State.OK,
        "md/md4": State.CRITICAL,  # inactive
        "md/md6": State.CRITICAL,  # degraded, recovering
        "md/md8": State.OK,  # resync on a complete array
        "md/md7": State.CRITICAL,  # raid6 [4/3]
        "md/md9": State.OK,  # resync=DELAYED
        "md/md10": State.OK,  # raid0
        "md/md11": State.OK,  # auto-read-only, resync=PENDING
        "md/md12": State.OK,
        "md/md219": State.OK,  # IMSM container: inactive by design
    }
    md6 = reading("node_exporter_mixed.mdstat", "md/md6")
    assert md6.text == "raid1: degraded, 1 of 2 members; recovery 8.5% at 253.7 MiB/s, 17 min left"
    assert (md6.value, md6.unit) == (8.5, "%")
    assert reading("node_exporter_mixed.mdstat", "md/md10").text == "raid0: active, no redundancy"
    assert reading("node_exporter_mixed.mdstat", "md/md9").text.endswith("; resync delayed")
    md11 = reading("node_exporter_mixed.mdstat", "md/md11")
    assert md11.attributes["mode"] == "auto-read-only" and "resync pending" in md11.text
    assert reading("node_exporter_mixed.mdstat", "md/md219").text == "imsm container"


def test_recovery_can_be_lowered_to_warning() -> None:
    got = verdicts("node_exporter_mixed.mdstat", recovering=State.WARNING)
    assert got["md/md6"] is State.WARNING
    assert got["md/md7"] is State.CRITICAL  # degraded, nothing rebuilding


def test_failed_member() -> None:
    assert verdicts("raid1_failed_member.mdstat") == {
        "md/md0": State.OK,
        "md/md1": State.CRITICAL,
    }
    md1 = reading("raid1_failed_member.mdstat", "md/md1")
    assert md1.attributes["failed"] == "sdb3" and "failed member sdb3" in md1.text


def test_failed_member_with_stale_counts_is_critical() -> None:
    # right after the failure the 2.4 kernel still said [2/2] but [U_]
    assert set(verdicts("raid1_failed_counts_stale.mdstat").values()) == {State.CRITICAL}


def test_recovery_while_other_arrays_failed() -> None:
    got = verdicts("raid1_recovery_others_failed.mdstat")
    assert got == dict.fromkeys(["md/md3", "md/md2", "md/md1", "md/md4"], State.CRITICAL)
    assert reading("raid1_recovery_others_failed.mdstat", "md/md1").attributes["operation"] == (
        "recovery"
    )


def test_old_kernel_recovery_and_unindented_mail_copy() -> None:
    assert verdicts("raid1_recovery_2_4_kernel.mdstat") == {"md/md0": State.CRITICAL}
    assert verdicts("raid5_degraded_unindented.mdstat") == {
        "md/md2": State.CRITICAL,
        "md/md1": State.OK,
    }


def test_spares_and_a_24_slot_mirror() -> None:
    got = verdicts("raid5_resync_spares_synology.mdstat")
    assert got == {
        "md/md1": State.OK,
        "md/md256": State.OK,
        "md/md13": State.CRITICAL,
        "md/md9": State.CRITICAL,
    }
    md256 = reading("raid5_resync_spares_synology.mdstat", "md/md256")
    assert md256.attributes["spares"] == "sdb2,sdf2,sda2" and md256.text.endswith("3 spares")
    assert "resync 2.5%" in reading("raid5_resync_spares_synology.mdstat", "md/md1").text


def test_check_is_ok_with_progress() -> None:
    got = verdicts("raid1_raid10_check_bitmap.mdstat")
    assert set(got.values()) == {State.OK}
    md126 = reading("raid1_raid10_check_bitmap.mdstat", "md/md126")
    assert md126.attributes["operation"] == "check" and md126.value == 57.1
    got = verdicts("raid1_pending_and_check.mdstat")
    assert set(got.values()) == {State.OK}


def test_reshapes() -> None:
    assert set(verdicts("raid5_reshape_grow.mdstat").values()) == {State.OK}
    assert verdicts("raid10_reshape.mdstat") == {"md/md127": State.OK}
    assert verdicts("raid10_spares_then_reshape.mdstat") == {"md/md127": State.OK}
    # a reshape of a degraded array leaves it degraded
    assert verdicts("raid5_reshape_degraded_091.mdstat") == {"md/md0": State.CRITICAL}
    assert verdicts("raid4_reshape_from_raid0.mdstat") == {"md/md0": State.CRITICAL}


def test_many_delayed_resyncs() -> None:
    got = verdicts("raid1_resync_many_delayed.mdstat")
    assert set(got.values()) == {State.OK} and len(got) == 6


def test_no_arrays_and_expected_arrays() -> None:
    assert verdicts("no_arrays.mdstat") == {}
    assert verdicts("no_arrays.mdstat", expect=["md0"]) == {"md/md0": State.CRITICAL}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world\n",
        "<html>oops</html>",
        "Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1] garbage[[\n",
        "Personalities : [raid1]\n      1000 blocks [2/2] [UU]\n",
        "Personalities : [raid1]\nsomething else : here\n",
    ],
)
def test_garbage_is_a_typed_error(text: str) -> None:
    with pytest.raises(MdstatError):
        parse_mdstat(text)


def test_an_array_without_a_status_line_is_unknown() -> None:
    arrays = parse_mdstat("Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1]\n")
    assert mdraid.readings(arrays)[0].state is State.UNKNOWN


_MDSTAT_WORDS = st.sampled_from(
    [
        "Personalities : [raid1]\n",
        "md0 : active raid1 sda1[0] sdb1[1](F)\n",
        "md1 : inactive sdb[2](S)\n",
        "md2 : active (auto-read-only) raid5 sdc[0]\n",
        "      1000 blocks super 1.2 [2/1] [U_]\n",
        "      [=>....]  recovery =  8.5% (1/2) finish=1.0min speed=100K/sec\n",
        "\tresync=DELAYED\n",
        "      bitmap: 0/1 pages [0KB], 65536KB chunk\n",
        "unused devices: <none>\n",
        "\n",
        "md0 : active raid1\n",
        "[UU]\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_MDSTAT_WORDS, st.text(max_size=40)), max_size=12))
def test_any_text_parses_or_is_a_typed_error(parts: list[str]) -> None:
    try:
        arrays = parse_mdstat("".join(parts))
    except MdstatError:
        return
    for r in mdraid.readings(arrays):
        assert isinstance(r.state, State)


async def test_collector_reads_the_configured_path(tmp_path: Path) -> None:
    path = tmp_path / "mdstat"
    path.write_bytes((FIXTURES / "raid1_failed_member.mdstat").read_bytes())
    table = Table({"kind": "mdraid", "path": str(path), "expect": ["md0", "md9"]}, "check[0]", "c")
    collector = build_collector(table)
    assert isinstance(collector, MdraidCollector)
    out = await run_collector(collector, 5.0, name="md")
    assert {r.check: r.state for r in out} == {
        "md/md0": State.OK,
        "md/md1": State.CRITICAL,
        "md/md9": State.CRITICAL,
        "collector/md": State.OK,
    }


async def test_no_mdstat_is_no_readings_and_garbage_is_unknown(tmp_path: Path) -> None:
    collector = MdraidCollector(path=tmp_path / "absent")
    assert await collector.collect() == []
    (tmp_path / "garbage").write_text("not mdstat")
    out = await run_collector(
        MdraidCollector(path=tmp_path / "garbage"), 5.0, name="md", checks=["md/md0"]
    )
    assert {r.check: r.state for r in out} == {
        "collector/md": State.UNKNOWN,
        "md/md0": State.UNKNOWN,
    }


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"c: check\[0\].recovering: expected"):
        build_collector(Table({"kind": "mdraid", "recovering": "meh"}, "check[0]", "c"))
    with pytest.raises(ConfigError, match=r"check\[0\].pth: unknown key"):
        build_collector(Table({"kind": "mdraid", "pth": "/x"}, "check[0]", "c"))


MDADM_DETAIL = (FIXTURES / "mdadm_detail_degraded.txt").read_text()


def test_mdadm_detail_can_only_make_it_worse() -> None:
    assert mdraid.parse_detail_state(MDADM_DETAIL) == "clean, degraded"
    ok = Reading("md/md1", State.OK, "raid1: clean", attributes={"level": "raid1"})
    worse = mdraid.merge_detail(ok, "clean, degraded")
    assert worse.state is State.CRITICAL and worse.attributes["mdadm_state"] == "clean, degraded"
    crit = Reading("md/md1", State.CRITICAL, "x", attributes={"level": "raid1"})
    assert mdraid.merge_detail(crit, "clean").state is State.CRITICAL
    assert mdraid.merge_detail(ok, "active").state is State.OK


async def test_mdadm_detail_through_a_fake_mdadm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "mdadm"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat {FIXTURES / 'mdadm_detail_degraded.txt'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    mdstat = tmp_path / "mdstat"
    mdstat.write_text(
        "Personalities : [raid1]\nmd1 : active raid1 sda3[0] sdb3[1]\n  10 blocks [2/2] [UU]\n"
    )
    out = await MdraidCollector(path=mdstat, mdadm=True).collect()
    assert out[0].state is State.CRITICAL and "mdadm says clean, degraded" in out[0].text
