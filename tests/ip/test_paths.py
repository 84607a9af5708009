"""The client's paths: the config, and parsing addresses."""

from __future__ import annotations

import pytest

from callhome.client.config import parse_client_config
from callhome.client.paths import IpPath, ModemPath, legs
from callhome.keys import encode_key
from callhome.tcp import format_address, parse_endpoint
from modem_drivers.configfile import ConfigError

KEY = encode_key(bytes(range(32)))


def config(paths: dict[str, str] | None, *, modem: bool = True):
    data = {
        "device": {"name": "plant", "key": "device.key", "spool": "spool.db"},
        "centre": {"public_key": KEY, **({"numbers": ["5550100"]} if modem else {})},
        "modem": {"ports": ["/dev/ttyS0", "/dev/ttyS1"]} if modem else {},
    }
    if paths is not None:
        data["paths"] = paths
    return parse_client_config(data, "/etc/callhome/client.toml")


def test_without_paths_the_modem_is_the_one_path():
    (path,) = config(None).paths()
    assert path == ModemPath("modem", ("/dev/ttyS0", "/dev/ttyS1"), ("5550100",))


def test_paths_in_the_order_written_and_legs_of_a_round():
    paths = config({"lan": "centre.example.net:7070", "phone": "modem", "v6": "[2001:db8::7]:7070"})
    assert [p.name for p in paths.paths()] == ["lan", "phone", "v6"]
    assert paths.paths()[2] == IpPath("v6", "2001:db8::7", 7070)
    assert [(p.name, leg) for p, leg in legs(paths.paths())] == [
        ("lan", "centre.example.net:7070"),
        ("phone", "/dev/ttyS0"),
        ("phone", "/dev/ttyS1"),
        ("v6", "[2001:db8::7]:7070"),
    ]


def test_an_ip_only_device_needs_no_modem_or_numbers():
    only = config({"lan": "192.0.2.1:7070"}, modem=False)
    assert [p.name for p in only.paths()] == ["lan"] and only.ports == []


@pytest.mark.parametrize(
    ("paths", "modem", "message"),
    [
        ({"lan": "centre.example.net"}, True, "paths.lan: 'centre.example.net': give host:port"),
        ({"lan": "2001:db8::1:7070"}, True, "paths.lan: '2001:db8::1:7070': an IPv6 address"),
        ({"lan": "host:99999"}, True, "paths.lan: 'host:99999': the port must be"),
        ({"a": "modem", "b": "modem"}, True, "paths.b: only one path can be the modem"),
        ({"phone": "modem"}, False, "centre.numbers: missing"),
        ({"lan": 7}, True, "paths.lan: expected"),
    ],
)
def test_errors_name_the_file_and_key(paths, modem, message):
    with pytest.raises(ConfigError) as error:
        config(paths, modem=modem)
    assert str(error.value).startswith("/etc/callhome/client.toml: " + message), error.value


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("centre.example.net:7070", "centre.example.net", 7070),
        ("192.0.2.1:1", "192.0.2.1", 1),
        ("[::1]:65535", "::1", 65535),
        ("[2001:db8::7]:7070", "2001:db8::7", 7070),
    ],
)
def test_endpoints_round_trip(text, host, port):
    assert parse_endpoint(text) == (host, port)
    assert format_address(host, port) == text


@pytest.mark.parametrize(
    "text", ["", ":7070", "host:", "host:0", "[::1]", "[nonsense]:1", "a b:1", "h:x", "h:١٢"]
)
def test_bad_endpoints(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_port_zero_only_to_listen():
    assert parse_endpoint("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)
