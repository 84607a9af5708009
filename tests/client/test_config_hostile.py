"""Bad config files: whatever the bytes, every loader answers with one ConfigError that
names the file (and the key), and every CLI prints one line and exits 2."""

from __future__ import annotations

import base64
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callhome import exitcodes
from callhome.client.cli import main as client_main
from callhome.client.config import load_client_config
from callhome.keys import KeyFileError, load_private_key
from modem_drivers.configfile import ConfigError
from modem_drivers.virtual.cli import main as sim_main
from modem_drivers.virtual.config import load_config as load_sim_config
from receiver.cli import main as centre_main
from receiver.config import load_centre_config

LOADERS = {
    "client": load_client_config,
    "centre": load_centre_config,
    "sim": load_sim_config,
}
KEY = base64.b64encode(bytes(32)).decode()
VALID: dict[str, dict[str, Any]] = {
    "client": {
        "device": {"name": "a", "key": "device.key", "spool": "spool.db"},
        "centre": {"public_key": KEY, "numbers": ["5550100"]},
        "modem": {"ports": ["/dev/ttyS0"], "profile": "auto", "time_scale": 1.0},
        "calls": {"attempts": 3, "retry_delay": "60s"},
    },
    "centre": {
        "centre": {"name": "c", "key": "centre.key", "store": "centre.db"},
        "bank": {
            "ports": ["/dev/ttyS0"],
            "profile": "auto",
            "rings": 1,
            "health_check": "5m",
            "drain": "1m",
            "time_scale": 1.0,
        },
        "devices": {"test_interval": "1d", "grace": "15m"},
    },
    "sim": {
        "time_scale": 1.0,
        "seed": 1,
        "timing": {"ring_on": 2.0, "ring_off": 4.0, "ring_limit": 15, "line_tick": 0.02},
        "line": {"rate": 33600, "latency": 0.05, "ber": 0.0, "training_time": 3.0},
        "modem": [
            {"name": "a", "number": "5550001", "line": {"rate": 2400}},
            {"name": "b", "blacklist": {"delays": [1.0], "max_attempts": 4, "window": 60.0}},
        ],
        "hunt_group": [{"number": "5550100", "members": ["b"]}],
        "fault": [{"at": 1.0, "modem": "a", "kind": "garbage", "seconds": 1.0, "count": 3}],
    },
}
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, 1e308, 2**63 - 1, -(2**63)])
    | st.text(max_size=20)
    | st.sampled_from(["~nosuchuser/x", "~", "", "\0", "-5s", "1e999d", "9" * 400 + "d", "nan"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


def write(folder: Path, data: bytes) -> Path:
    path = folder / "config.toml"
    path.write_bytes(data)
    return path


def only_config_errors(loader: Any, path: Path) -> None:
    try:
        loader(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


@pytest.mark.parametrize("which", sorted(LOADERS))
@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_give_only_config_errors(which, data):
    with tempfile.TemporaryDirectory() as tmp:
        only_config_errors(LOADERS[which], write(Path(tmp), data))


@SETTINGS
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_in_a_key_file_give_only_key_file_errors(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "device.key"
        path.write_bytes(data)
        path.chmod(0o600)
        try:
            load_private_key(path)
        except KeyFileError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, dict | list):
            found.extend(_paths(value, (*prefix, key)))
    return found


@pytest.mark.parametrize("which", sorted(LOADERS))
@SETTINGS
@given(choice=st.data(), value=VALUES)
def test_any_value_for_any_key_gives_only_config_errors(which, choice, value):
    """A valid file with one value (or table) replaced by anything TOML can hold."""
    document = _copy(VALID[which])
    path = choice.draw(st.sampled_from(_paths(document)))
    *parents, last = path
    target = document
    for step in parents:
        target = target[step]
    if value is None:
        del target[last]
    else:
        target[last] = value
    try:
        text = tomli_w.dumps(document).encode()
    except (TypeError, ValueError):
        return  # not representable in TOML (an array of tables mixed with values)
    with tempfile.TemporaryDirectory() as tmp:
        only_config_errors(LOADERS[which], write(Path(tmp), text))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def test_the_valid_documents_are_valid(tmp_path):
    for which, loader in LOADERS.items():
        loader(write(tmp_path, tomli_w.dumps(VALID[which]).encode()))


@pytest.mark.parametrize(
    ("which", "table", "key", "value", "complaint"),
    [
        ("centre", "bank", "time_scale", math.nan, "bank.time_scale: must be a finite number"),
        ("centre", "bank", "health_check", math.inf, "bank.health_check: must be a finite number"),
        ("centre", "bank", "drain", math.inf, "bank.drain: must be a finite number"),
        ("centre", "bank", "drain", -5, "bank.drain: a duration cannot be negative"),
        ("centre", "bank", "drain", "2h", "bank.drain: must be between 0s and 1h"),
        ("centre", "bank", "rings", -1, "bank.rings: must be between 1 and 10"),
        ("centre", "centre", "key", "~nosuchuser/centre.key", "centre.key: cannot expand"),
        ("centre", "devices", "grace", "1e999d", "devices.grace: not a duration"),
        ("client", "modem", "time_scale", -math.inf, "modem.time_scale: must be a finite"),
        ("client", "modem", "time_scale", 0, "modem.time_scale: must be between"),
        ("client", "calls", "retry_delay", "9" * 400 + "d", "calls.retry_delay: not a duration"),
        ("client", "device", "spool", "~nosuchuser/spool.db", "device.spool: cannot expand"),
        ("sim", "", "time_scale", math.nan, "time_scale: must be a finite number"),
        ("sim", "line", "latency", math.inf, "line.latency: must be a finite number"),
        ("sim", "timing", "ring_off", -1.0, "timing.ring_off: must be between 0 and 1000000"),
    ],
)
def test_non_finite_and_out_of_range_numbers_name_file_and_key(
    tmp_path, which, table, key, value, complaint
):
    document = _copy(VALID[which])
    (document[table] if table else document)[key] = value
    path = write(tmp_path, tomli_w.dumps(document).encode())
    with pytest.raises(ConfigError) as caught:
        LOADERS[which](path)
    assert str(caught.value).startswith(f"{path}: ") and complaint in str(caught.value)


NOT_UTF8 = b'[device]\nname = "caf\xe9"\n'


@pytest.mark.parametrize(
    ("main", "args"),
    [
        (client_main, ["-c", "{path}", "queue"]),
        (centre_main, ["-c", "{path}", "devices"]),
        (sim_main, ["run", "{path}"]),
    ],
)
@pytest.mark.parametrize(
    "content",
    [
        NOT_UTF8,
        b"\xff\xfe[\x00d\x00",
        tomli_w.dumps({"device": {"name": "a", "key": "~nosuchuser/k"}}).encode(),
        b"time_scale = nan\n[bank]\ntime_scale = nan\n[modem]\ntime_scale = nan\n",
        b"x = " + b"[" * 5000,
    ],
)
def test_every_cli_gives_one_line_and_exit_2(tmp_path, main, args, content):
    path = write(tmp_path, content)
    result = CliRunner().invoke(main, [a.format(path=path) for a in args])
    assert result.exit_code == exitcodes.USAGE, (result.output, result.exception)
    assert result.output.count("\n") == 1 and str(path) in result.output, result.output
