"""What the daemon tells `callhome agent status`, and what it keeps across restarts (the
time of the last line test, the states it reported): one JSON file, replaced atomically
(write a temporary file, fsync, rename) so a reader never sees half of it."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def write_state(path: Path, state: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(state, indent=1, sort_keys=True).encode()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The last state written, or None when there is none (or it is unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        value = json.loads(path.read_text())
        if isinstance(value, dict):
            return value
    return None
