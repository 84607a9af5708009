"""The store and the spool hold private data: created 0600 (with their -wal, -shm and
-journal files) in 0700 folders whatever the umask, and refused when others can read
them, as the key files are."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from callhome import exitcodes
from callhome.client.cli import main as client_main
from callhome.client.spool import Spool, SpoolError
from callhome.wire.messages import Kind
from receiver.cli import main as centre_main
from receiver.store import SQLiteStore, StoreUnavailable


@pytest.fixture(autouse=True)
def wide_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def init_client(folder: Path) -> None:
    key = base64.b64encode(bytes(32)).decode()
    args = ["init", str(folder), "--name", "a", "--centre-key", key]
    result = CliRunner().invoke(client_main, [*args, "--number", "1", "--port", "/dev/null"])
    assert result.exit_code == 0, result.output


def test_init_makes_private_folders_and_databases(tmp_path):
    centre, client = tmp_path / "new" / "centre", tmp_path / "new2" / "client"
    assert CliRunner().invoke(centre_main, ["init", str(centre)]).exit_code == 0
    init_client(client)
    for folder in (centre, centre.parent, client, client.parent):
        assert mode(folder) == 0o700, folder
    for path in (centre / "centre.db", centre / "centre.key", client / "spool.db"):
        assert mode(path) == 0o600, path


def test_wal_and_shm_files_are_private_too(tmp_path):
    store = SQLiteStore(tmp_path / "s" / "centre.db", create=True)
    spool = Spool(tmp_path / "c" / "spool.db", create=True)
    try:
        store.enroll("a", bytes(32), test_interval=60, grace=0, site=None)
        spool.enqueue(Kind.REPORT, {"severity": "info"})
        companions = [
            p for p in (*(tmp_path / "s").iterdir(), *(tmp_path / "c").iterdir()) if "-" in p.name
        ]
        assert companions  # WAL mode: -wal and -shm exist while open
        for path in companions:
            assert mode(path) == 0o600, path
    finally:
        store.close()
        spool.close()


@pytest.mark.parametrize("suffix", ["", "-wal"])
def test_a_store_others_can_read_is_refused(tmp_path, suffix):
    folder = tmp_path / "centre"
    assert CliRunner().invoke(centre_main, ["init", str(folder)]).exit_code == 0
    exposed = folder / f"centre.db{suffix}"
    exposed.touch()
    exposed.chmod(0o644)
    with pytest.raises(StoreUnavailable, match="readable by others"):
        SQLiteStore(folder / "centre.db")
    result = CliRunner().invoke(centre_main, ["-c", str(folder / "centre.toml"), "devices"])
    assert result.exit_code == exitcodes.STORAGE
    assert result.output == (
        f"callhome-receiver: {exposed} is readable by others (mode 0644); it holds private "
        f"data: chmod 600 {exposed}\n"
    )
    exposed.chmod(0o600)
    SQLiteStore(folder / "centre.db").close()


def test_a_spool_others_can_read_is_refused(tmp_path):
    folder = tmp_path / "client"
    init_client(folder)
    (folder / "spool.db").chmod(0o604)
    with pytest.raises(SpoolError, match="readable by others"):
        Spool(folder / "spool.db")
    result = CliRunner().invoke(client_main, ["-c", str(folder / "client.toml"), "queue"])
    assert result.exit_code == exitcodes.STORAGE
    assert "readable by others (mode 0604)" in result.output and result.output.count("\n") == 1
