"""Every config file that `callhome init` and `callhome-receiver init` write loads back
equal to what was asked for; what they cannot write faithfully they refuse (exit 2)
before writing anything."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callhome import exitcodes
from callhome.client.cli import main as client_main
from callhome.client.config import load_client_config
from callhome.config import port_problem
from callhome.keys import parse_public_key
from modem_drivers.hayes import DRIVER_PROFILES
from receiver.cli import main as centre_main
from receiver.config import load_centre_config

# any text an argument can carry: all of Unicode, emoji, quotes, backslashes, controls,
# and the lone surrogates by which Python passes on argv bytes that are not UTF-8
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=30)
URLS = st.sampled_from(["rfc2217://ts:7001", "socket://h:1", "nope://x", "/dev/ttyS0", "a\0b"])
NAMES = ANY_TEXT | st.sampled_from(["plant 😀", 'a"b', "a\\b", "line\nbreak", "tab\t", "é"])
PORTS = st.lists(ANY_TEXT.filter(lambda t: not t.startswith("-")) | URLS, min_size=1, max_size=3)
NUMBERS = st.lists(st.from_regex(r"\A[0-9]{1,15}\Z"), min_size=1, max_size=3)
PROFILES = st.sampled_from(["auto", *DRIVER_PROFILES])
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@SETTINGS
@given(
    name=NAMES,
    ports=PORTS,
    numbers=NUMBERS,
    profile=PROFILES,
    attempts=st.integers(1, 100),
    retry_ms=st.integers(0, 86_400_000),
)
def test_every_client_config_init_writes_loads_back_equal(
    name, ports, numbers, profile, attempts, retry_ms
):
    centre_key = base64.b64encode(bytes(range(32))).decode()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "client"
        args = ["init", str(folder), "--name", name, "--centre-key", centre_key]
        args += [f"--number={n}" for n in numbers] + [f"--port={p}" for p in ports]
        args += ["--profile", profile, "--attempts", str(attempts)]
        args += ["--retry-delay", f"{retry_ms / 1000}s"]
        result = CliRunner().invoke(client_main, args)
        if not all(is_text(v) for v in (name, *ports)) or any(map(port_problem, ports)):
            assert result.exit_code == exitcodes.USAGE, result.output
            assert not folder.exists() or not any(folder.iterdir())
            return
        assert result.exit_code == 0, (result.output, result.exception)
        config = load_client_config(folder / "client.toml")
        assert (config.name, config.ports, config.numbers) == (name, ports, numbers)
        assert config.centre_key == parse_public_key(centre_key)
        assert (config.profile, config.attempts, config.retry_delay) == (
            profile,
            attempts,
            retry_ms / 1000,
        )
        assert (config.key, config.spool) == (folder / "device.key", folder / "spool.db")


@SETTINGS
@given(
    name=NAMES, ports=st.lists(ANY_TEXT.filter(lambda t: not t.startswith("-")) | URLS, max_size=3)
)
def test_every_centre_config_init_writes_loads_back_equal(name, ports):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "centre"
        args = ["init", str(folder), "--name", name, *(f"--port={p}" for p in ports)]
        result = CliRunner().invoke(centre_main, args)
        if not all(is_text(v) for v in (name, *ports)) or any(map(port_problem, ports)):
            assert result.exit_code == exitcodes.USAGE, result.output
            assert not folder.exists() or not any(folder.iterdir())
            return
        assert result.exit_code == 0, (result.output, result.exception)
        config = load_centre_config(folder / "centre.toml")
        assert (config.name, config.ports) == (name, ports)
        assert (config.key, config.store) == (folder / "centre.key", folder / "centre.db")


def test_an_emoji_name_makes_a_readable_file(tmp_path):
    key = base64.b64encode(bytes(32)).decode()
    folder = tmp_path / "c"
    args = ["init", str(folder), "--name", "plant 😀", "--centre-key", key]
    result = CliRunner().invoke(client_main, [*args, "--number", "1", "--port", "/dev/null"])
    assert result.exit_code == 0, result.output
    assert load_client_config(folder / "client.toml").name == "plant 😀"
