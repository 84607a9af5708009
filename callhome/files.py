"""Private files: what holds keys, reports and call counters is created readable by its
owner only, whatever the umask, and refused when others can read it."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
COMPANIONS = ("-wal", "-shm", "-journal")
"""The files SQLite keeps beside a database; they hold the same data."""


def make_private_folder(folder: Path) -> None:
    """Create `folder` and any missing parents with mode 0700 (the umask does not widen
    it); an existing folder is left as it is."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=PRIVATE_FOLDER)
            os.chmod(path, PRIVATE_FOLDER)  # mkdir's mode is masked by the umask
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))


def create_private_file(path: Path) -> None:
    """Create an empty file with mode 0600 if there is none. SQLite gives its -wal, -shm
    and -journal files the mode of the database file, so they are private too."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def readable_by_others(path: Path) -> list[tuple[Path, int]]:
    """The database file and companions of `path` that others (not owner, not group) may
    read or write, with their modes."""
    found = []
    for candidate in (path, *(path.with_name(path.name + s) for s in COMPANIONS)):
        try:
            mode = candidate.stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            found.append((candidate, stat.S_IMODE(mode)))
    return found
