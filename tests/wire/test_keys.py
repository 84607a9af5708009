"""Key files and `callhome keygen` / `callhome pubkey`."""

from __future__ import annotations

import base64
import os

import pytest
from click.testing import CliRunner

from callhome import exitcodes
from callhome.client.cli import main
from callhome.keys import (
    KeyFileError,
    encode_key,
    load_private_key,
    parse_public_key,
    public_of,
    write_private_key,
)


def test_keygen_writes_0600_and_pubkey_prints_the_same_key(tmp_path):
    path = tmp_path / "keys" / "device.key"
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 0
    public = result.output.strip()
    assert len(base64.b64decode(public)) == 32
    assert (path.stat().st_mode & 0o777) == 0o600
    assert CliRunner().invoke(main, ["pubkey", str(path)]).output.strip() == public
    assert public_of(load_private_key(path)) == parse_public_key(public)


def test_keygen_never_overwrites(tmp_path):
    path = tmp_path / "device.key"
    write_private_key(path)
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == exitcodes.USAGE and "refusing to overwrite" in result.output
    assert path.read_bytes() == before


def test_keygen_ignores_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "k"
        write_private_key(path)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_readable_private_key_is_refused(tmp_path, mode):
    path = tmp_path / "device.key"
    write_private_key(path)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=r"readable by others.*chmod 600"):
        load_private_key(path)
    result = CliRunner().invoke(main, ["pubkey", str(path)])
    assert result.exit_code == exitcodes.USAGE and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content", ["", "# only a comment\n", "not base64 !!\n", base64.b64encode(b"short").decode()]
)
def test_malformed_private_keys_are_clear_errors(tmp_path, content):
    path = tmp_path / "bad.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_private_key(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="no such key file"):
        load_private_key(tmp_path / "nope")


def test_public_keys_in_base64_or_hex():
    key = os.urandom(32)
    assert parse_public_key(encode_key(key)) == key
    assert parse_public_key(key.hex()) == key
    for bad in ("", "abc", encode_key(os.urandom(16)), "z" * 64):
        with pytest.raises(KeyFileError):
            parse_public_key(bad)
