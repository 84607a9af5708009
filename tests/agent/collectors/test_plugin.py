"""Monitoring plugins: real scripts that exit with each code, print garbage, hang, or
print too much; and the performance-data parser."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callhome.client.agent.collectors import perfdata, plugin
from callhome.client.agent.collectors.base import State
from callhome.client.agent.collectors.perfdata import PerfdataError, PerfItem
from callhome.client.agent.collectors.plugin import PluginCollector
from callhome.client.agent.collectors.runner import build_collector, run_collector
from modem_drivers.configfile import ConfigError, Table

from .test_runner import _wait_gone


def test_perfdata_examples_from_real_plugins() -> None:
    assert perfdata.parse("time=0.002722s;;;0.000000 size=1117B;;;0") == [
        PerfItem("time", 0.002722, "s", minimum=0.0),
        PerfItem("size", 1117.0, "B", minimum=0.0),
    ]
    # check_ping
    rta, pl = perfdata.parse("rta=0.070000ms;3000.000000;5000.000000;0.000000 pl=0%;80;100;0")
    assert (rta.value, rta.uom, rta.warn, rta.crit) == (0.07, "ms", "3000.000000", "5000.000000")
    assert (pl.value, pl.uom, pl.minimum) == (0.0, "%", 0.0)
    # check_disk, labels that are paths
    root, boot = perfdata.parse("/=2643MB;5948;5958;0;5968 /boot=68MB;88;93;0;98")
    assert (root.label, root.value, root.uom, root.maximum) == ("/", 2643.0, "MB", 5968.0)
    assert boot.label == "/boot"
    # quoted labels, a doubled quote, U, ranges
    (item,) = perfdata.parse("'C:\\ Label''s'=80%;@10:20;~:95;0;100")
    assert (item.label, item.warn, item.crit) == ("C:\\ Label's", "@10:20", "~:95")
    (undetermined,) = perfdata.parse("load=U;5;10")
    assert undetermined.value is None and undetermined.warn == "5"
    assert perfdata.parse("   ") == []


@pytest.mark.parametrize(
    "text",
    [
        "novalue",
        "a=",
        "a=abc",
        "'unterminated=1",
        "'a'b=1",
        "=1",
        "a=1;2;3;4;5;6",
        "a=1;x",
        "a=1;;;zero",
        "a=1.2.3",
        "a=1e999",
        "a=1;;;-1e400",
    ],
)
def test_perfdata_garbage_is_a_typed_error(text: str) -> None:
    with pytest.raises(PerfdataError):
        perfdata.parse(text)


_numbers = st.floats(allow_nan=False, allow_infinity=False, width=32).map(float)
_ranges = st.sampled_from(["", "10", "10:", "~:10", "10:20", "@10:20", "-5:5", "@~:0.5"])
_items = st.builds(
    PerfItem,
    label=st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s.strip() == s and "\n" not in s and "\r" not in s),
    value=st.none() | _numbers,
    uom=st.sampled_from(["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"]),
    warn=_ranges,
    crit=_ranges,
    minimum=st.none() | _numbers,
    maximum=st.none() | _numbers,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_items, max_size=5))
def test_perfdata_round_trip(items: list[PerfItem]) -> None:
    items = [i for i in items if i.label.split()]  # a label of spaces only is not data
    assert perfdata.parse(perfdata.format_items(items)) == items


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_typed_error(text: str) -> None:
    try:
        items = perfdata.parse(text)
    except PerfdataError:
        return
    for item in items:
        assert item.label
        assert item.value is None or not math.isnan(item.value)
    assert perfdata.parse(perfdata.format_items(items)) == items


def test_output_with_long_text_and_perfdata_lines() -> None:
    output = (
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/home 69357 MB (27%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414\n"
        "/var/log=818MB;970;975;0;980\n"
    )
    parsed = plugin.parse_output(output)
    assert parsed.text == "DISK OK - free space: / 3326 MB (56%);"
    assert parsed.long_text.splitlines()[-1] == "/var/log 819 MB (84%);"
    assert [p.label for p in parsed.perf] == ["/", "/boot", "/home", "/var/log"]


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (0, State.OK),
        (1, State.WARNING),
        (2, State.CRITICAL),
        (3, State.UNKNOWN),
        (4, State.UNKNOWN),
        (127, State.UNKNOWN),
    ],
)
async def test_exit_codes(tmp_path: Path, code: int, state: State) -> None:
    program = _script(
        tmp_path, "check_thing", f"echo 'THING {code} - fine | t=5s;1;2;0'\nexit {code}\n"
    )
    (reading,) = await PluginCollector([program]).collect()
    assert reading.check == "plugin/check_thing" and reading.state is state
    if code <= 3:
        assert reading.text == f"THING {code} - fine"
        assert (reading.value, reading.unit) == (5.0, "s")
        assert reading.attributes["perfdata"] == "t=5s;1;2;0"
    else:
        assert reading.text == f"exit {code}, not a monitoring-plugin state: THING {code} - fine"


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    program = _script(tmp_path, "check_dies", "kill -9 $$\n")
    (reading,) = await PluginCollector([program]).collect()
    assert reading.state is State.UNKNOWN and reading.text == "killed by signal 9"


async def test_garbage(tmp_path: Path) -> None:
    program = _script(tmp_path, "check_garbage", "printf 'ok\\000\\377binary'\nexit 0\n")
    (reading,) = await PluginCollector([program]).collect()
    assert reading.state is State.UNKNOWN and reading.text == "output is not text"
    program = _script(tmp_path, "check_badperf", "echo 'OK | this is = not perfdata'\nexit 0\n")
    (reading,) = await PluginCollector([program]).collect()
    assert reading.state is State.OK and "perfdata_error" in reading.attributes
    program = _script(tmp_path, "check_quiet", "echo oops >&2\nexit 2\n")
    (reading,) = await PluginCollector([program]).collect()
    assert (reading.state, reading.text) == (State.CRITICAL, "oops")
    program = _script(tmp_path, "check_silent", "exit 0\n")
    (reading,) = await PluginCollector([program]).collect()
    assert reading.text == "(no output)"


async def test_a_hang_is_killed_at_the_deadline_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    program = _script(tmp_path, "check_hangs", f"sleep 1000 & echo $! > {pidfile}\nwait\n")
    (reading,) = await PluginCollector([program], timeout=0.3).collect()
    assert reading.state is State.UNKNOWN and "no answer within 0.3 s" in reading.text
    assert _wait_gone(int(pidfile.read_text()))


async def test_huge_output_is_bounded(tmp_path: Path) -> None:
    code = "import sys; print('OK - big | a=1'); sys.stdout.write('x' * 5_000_000); sys.exit(1)"
    (reading,) = await PluginCollector([sys.executable, "-c", code], label="big").collect()
    assert reading.check == "plugin/big" and reading.state is State.WARNING
    assert reading.text == "OK - big" and "truncated" in reading.attributes
    assert len(reading.attributes["long_text"]) == plugin.MAX_LONG


async def test_missing_plugin_is_unknown(tmp_path: Path) -> None:
    (reading,) = await PluginCollector([str(tmp_path / "check_nothing")]).collect()
    assert reading.state is State.UNKNOWN


async def test_through_the_registry_and_runner(tmp_path: Path) -> None:
    program = _script(tmp_path, "check_x", "echo 'X CRITICAL - broken'\nexit 2\n")
    table = Table(
        {"kind": "plugin", "command": [program, "-w", "1"], "timeout": "5s"}, "check[3]", "c"
    )
    out = await run_collector(build_collector(table), 10.0, name="x")
    assert [(r.check, r.state) for r in out] == [
        ("plugin/check_x", State.CRITICAL),
        ("collector/x", State.OK),
    ]


def test_config() -> None:
    with pytest.raises(ConfigError, match=r"check\[0\].command: missing"):
        build_collector(Table({"kind": "plugin"}, "check[0]", "c"))
    with pytest.raises(ConfigError, match=r"check\[0\].command: expected"):
        build_collector(Table({"kind": "plugin", "command": []}, "check[0]", "c"))
    with pytest.raises(ConfigError, match=r"check\[0\].command: expected a list"):
        build_collector(Table({"kind": "plugin", "command": "check_x -w 1"}, "check[0]", "c"))
