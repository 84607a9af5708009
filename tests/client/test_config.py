"""Config files and `init`'s file creation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhome.client.config import load_client_config
from callhome.config import SetupError, create_files
from modem_drivers.configfile import ConfigError, format_duration, parse_duration


def test_init_leaves_nothing_behind_when_a_file_cannot_be_made(tmp_path):
    made = tmp_path / "a.db"

    def fail(path):
        raise PermissionError(13, "Permission denied")

    with pytest.raises(SetupError, match=r"cannot write .*b\.key: Permission denied"):
        create_files({made: lambda path: path.write_text("x"), tmp_path / "b.key": fail})
    assert list(tmp_path.iterdir()) == []  # a second `init` can simply run again
    (tmp_path / "file").write_text("")
    with pytest.raises(SetupError, match=r"cannot create .*file"):
        create_files({tmp_path / "file" / "x": lambda path: path.write_text("x")})


def test_init_refuses_before_it_writes_anything(tmp_path):
    (tmp_path / "b").write_text("mine")
    with pytest.raises(SetupError, match="already exists"):
        create_files(
            {
                tmp_path / "a": lambda path: path.write_text("x"),
                tmp_path / "b": lambda path: path.write_text("y"),
            }
        )
    assert not (tmp_path / "a").exists() and (tmp_path / "b").read_text() == "mine"


CLIENT = """
[device]
name = "a"
key = "device.key"
spool = "/var/lib/callhome/spool.db"
[centre]
public_key = "{key}"
numbers = ["5550100"]
[modem]
ports = ["/dev/ttyS0"]
"""
KEY = "A" * 43 + "="


def test_a_client_config_with_defaults_and_relative_paths(tmp_path):
    path = tmp_path / "client.toml"
    path.write_text(CLIENT.format(key=KEY))
    config = load_client_config(path)
    assert config.key == tmp_path / "device.key"
    assert str(config.spool) == "/var/lib/callhome/spool.db"
    assert (config.profile, config.time_scale, config.attempts, config.retry_delay) == (
        "auto",
        1.0,
        3,
        60.0,
    )


def test_modem_settings_for_a_difficult_modem(tmp_path):
    path = tmp_path / "client.toml"
    text = CLIENT.format(key=KEY).replace(
        'ports = ["/dev/ttyS0"]',
        'ports = ["/dev/ttyS0"]\nprofile = "minimal"\ninit = ["S0=1", "AT&A3"]\nskip = ["+VCID"]',
    )
    path.write_text(text.replace('["5550100"]', '["127.0.0.1:6400", "5550100"]'))
    config = load_client_config(path)
    assert (config.profile, config.init, config.skip) == ("minimal", ("S0=1", "AT&A3"), ("+VCID",))
    assert config.numbers == ["127.0.0.1:6400", "5550100"]


@pytest.mark.parametrize(
    "change, complaint",
    [
        (("[modem]", "[modem]\nspeed = 9600"), "modem.speed: unknown key"),
        (("[modem]", "[modme]\n[modem]"), "modme: unknown key"),
        (('name = "a"\n', ""), "device.name: missing"),
        (('["5550100"]', "[]"), "centre.numbers: at least one number"),
        (('["5550100"]', '"5550100"'), "centre.numbers: expected a list, got str"),
        (
            ('ports = ["/dev/ttyS0"]', 'ports = ["/dev/ttyS0"]\nprofile = "hayes"'),
            "modem.profile: unknown profile",
        ),
        (
            ('ports = ["/dev/ttyS0"]', 'ports = ["/dev/ttyS0"]\n[calls]\nretry_delay = "soon"'),
            "calls.retry_delay: not a duration",
        ),
        (
            ('ports = ["/dev/ttyS0"]', 'ports = ["/dev/ttyS0"]\n[calls]\nattempts = true'),
            "calls.attempts: expected an integer, got a boolean",
        ),
        ((KEY, "short"), "centre.public_key"),
        (('["5550100"]', '["5550100", "call the centre"]'), "centre.numbers: not a dial string"),
        (('["5550100"]', '["555.0100"]'), "centre.numbers"),
        (
            ('ports = ["/dev/ttyS0"]', 'ports = ["/dev/ttyS0"]\ninit = ["ATV0"]'),
            "modem.init: 'ATV0': the driver needs verbose result codes",
        ),
        (
            ('ports = ["/dev/ttyS0"]', 'ports = ["/dev/ttyS0"]\nskip = ["E"]'),
            "modem.skip: 'E' cannot be skipped",
        ),
        (
            ('ports = ["/dev/ttyS0"]', 'ports = ["/dev/ttyS0"]\ninit = ["AT\\u0007"]'),
            "modem.init: not a modem command",
        ),
    ],
)
def test_every_mistake_names_the_file_and_the_key(tmp_path, change, complaint):
    path = tmp_path / "client.toml"
    text = CLIENT.format(key=KEY)
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as caught:
        load_client_config(path)
    assert str(caught.value).startswith(f"{path}: ") and complaint in str(caught.value)


@given(st.integers(0, 10**7))
def test_durations_survive_writing_and_reading(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(0, 1e6, allow_nan=False).filter(lambda x: not math.isinf(x)))
def test_fractional_durations_survive_writing_and_reading(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.0005)
