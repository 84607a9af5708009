"""The commands' IP options: config errors name file and key, init --ip, run on an
address in use, the `ip` status command."""

from __future__ import annotations

import socket
import tomllib

import pytest
from click.testing import CliRunner

from callhome import exitcodes
from callhome.client.cli import main as client_main
from callhome.client.config import load_client_config
from callhome.keys import encode_key
from modem_drivers.configfile import ConfigError
from receiver.cli import main as receiver_main
from receiver.config import load_centre_config, parse_centre_config

KEY = encode_key(bytes(range(32)))
CENTRE = {"centre": {"key": "centre.key", "store": "centre.db"}}


@pytest.mark.parametrize(
    ("ip", "message"),
    [
        ({"listen": ["nowhere"]}, "ip.listen: 'nowhere': give host:port"),
        ({"listen": ["0.0.0.0:7070"], "rate": 0}, "ip.rate: "),
        ({"listen": ["0.0.0.0:7070"], "handshake_timeout": "10m"}, "ip.handshake_timeout: "),
        ({"listen": ["0.0.0.0:7070"], "colour": "red"}, "ip.colour: unknown key"),
    ],
)
def test_centre_ip_errors_name_file_and_key(ip, message):
    with pytest.raises(ConfigError) as error:
        parse_centre_config(CENTRE | {"ip": ip}, "/etc/callhome/centre.toml")
    assert str(error.value).startswith("/etc/callhome/centre.toml: " + message), error.value


def test_centre_ip_settings():
    config = parse_centre_config(
        CENTRE | {"ip": {"listen": ["[::]:7070", "0.0.0.0:7070"], "burst": 3, "rate": 0.5}},
        "c.toml",
    )
    assert config.ip_listen == ["[::]:7070", "0.0.0.0:7070"]
    assert (config.ip_limits.burst, config.ip_limits.rate) == (3, 0.5)
    assert parse_centre_config(CENTRE, "c.toml").ip_listen == []  # none by default


def test_init_with_ip_only_then_line_test_of_an_unknown_path(tmp_path):
    runner = CliRunner()
    folder = tmp_path / "dev"
    made = runner.invoke(
        client_main,
        ["init", str(folder), "--name", "plant", "--centre-key", KEY, "--ip", "[::1]:7070"],
    )
    assert made.exit_code == 0, made.output
    text = (folder / "client.toml").read_text()
    assert tomllib.loads(text)["paths"] == {"ip": "[::1]:7070"}
    config = load_client_config(folder / "client.toml")
    assert [p.name for p in config.paths()] == ["ip"] and config.ports == []
    wrong = runner.invoke(
        client_main, ["-c", str(folder / "client.toml"), "line-test", "--path", "modem"]
    )
    assert wrong.exit_code == exitcodes.USAGE
    assert "no path named 'modem' (paths: ip)" in wrong.output
    neither = runner.invoke(
        client_main, ["init", str(tmp_path / "x"), "--name", "p", "--centre-key", KEY]
    )
    assert neither.exit_code == exitcodes.USAGE and "--ip" in neither.output


def test_run_on_an_address_in_use_is_one_line(tmp_path):
    runner = CliRunner()
    made = runner.invoke(receiver_main, ["init", str(tmp_path / "c")])
    assert made.exit_code == 0, made.output
    config_path = tmp_path / "c" / "centre.toml"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with config_path.open("a") as config:
            config.write(f'\n[ip]\nlisten = ["127.0.0.1:{port}"]\n')
        assert load_centre_config(config_path).ip_listen
        result = runner.invoke(receiver_main, ["-c", str(config_path), "run"])
    assert result.exit_code == exitcodes.USAGE, result.output
    assert f"ip.listen: cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    status = runner.invoke(receiver_main, ["-c", str(config_path), "ip"])
    assert status.exit_code == exitcodes.FAILURE and "no status yet" in status.output
