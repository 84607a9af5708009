"""X25519 key files, shared by the client and the centre.

A private key file holds one line of base64 (32 bytes) after a comment line; it is
created with mode 0600 and refused at load time when group or others can read it, or
when it belongs to another user. Public keys are base64 strings (44 characters), as
WireGuard writes them; hex is accepted too.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

HEADER = "# callhome X25519 private key: keep this file private (mode 0600)\n"


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or too widely readable."""


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def parse_public_key(text: str) -> bytes:
    value = text.strip()
    try:
        key = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"not a public key: {value[:60]!r}") from None
    if len(key) != 32:
        raise KeyFileError(f"a public key is 32 bytes, this is {len(key)}")
    return key


def write_private_key(path: str | Path, private: bytes | None = None) -> bytes:
    """Create a new private key file (never overwrites); returns the private key."""
    if private is None:
        from .wire.noise import generate_private_key  # pyca/cryptography: only when used

        private = generate_private_key()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists: refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # whatever the umask said
        handle.write(HEADER + encode_key(private) + "\n")
    return private


def load_private_key(path: str | Path) -> bytes:
    path = Path(path)
    try:
        info = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a callhome private key file (not text)") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    if info.st_uid != os.getuid():
        raise KeyFileError(f"{path} belongs to another user (uid {info.st_uid})")
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    if len(lines) != 1:
        raise KeyFileError(f"{path}: not a callhome private key file")
    try:
        key = base64.b64decode(lines[0], validate=True)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"{path}: the key is not valid base64") from None
    if len(key) != 32:
        raise KeyFileError(f"{path}: a private key is 32 bytes, this is {len(key)}")
    return key


def public_of(private: bytes) -> bytes:
    # imported here: loading and parsing keys (all an idle agent does) needs no cryptography
    from .wire.noise import public_key

    return public_key(private)
