"""mgetty, a real third-party DTE, answering on a virtual modem's pty.

mgetty's config, log and lock paths are compiled in (`/etc/mgetty/mgetty.config`,
`/var/log/mgetty/mg_<tty>.log`, `/var/lock/LCK..<tty>`), and it has no option to move
them. So that nothing on the machine changes, mgetty runs in a private mount namespace
(`unshare --mount`) in which a folder of the test is bound over each of those
directories: its config, login.config, issue file, log and lock file all live in that
folder, and `/etc` is only ever read.

`mgetty_or_skip()` finds the binary, installs the Debian package when it may (root, and
apt-get available), and otherwise skips the test with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

MGETTY_PATHS = ("/usr/sbin/mgetty", "/sbin/mgetty")
# the compiled-in directories that get a private copy in the namespace
ETC, LOG = Path("/etc/mgetty"), Path("/var/log/mgetty")
HOW_TO_RUN = "see 'The mgetty test' in README.md"


def _find() -> str | None:
    for path in MGETTY_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("mgetty")


def _install() -> str | None:
    """`apt-get install mgetty`, as root only; returns why it could not, or None."""
    if os.geteuid() != 0:
        return "not root, so it cannot be installed here"
    apt = shutil.which("apt-get")
    if apt is None:
        return "apt-get is not available to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [apt, *args], capture_output=True, text=True, timeout=300, env=env, check=False
        )

    try:
        done = apt_get("install", "-y", "--no-install-recommends", "mgetty")
        if done.returncode != 0:  # a fresh image may have no package lists yet
            apt_get("update")
            done = apt_get("install", "-y", "--no-install-recommends", "mgetty")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install mgetty failed: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return f"apt-get install mgetty exited {done.returncode}: {' '.join(tail)}"
    return None


def _namespace_problem() -> str | None:
    """Can this process give mgetty a private mount namespace? None when it can."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not available"
    try:
        done = subprocess.run(
            [unshare, "--mount", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --mount failed: {exc}"
    if done.returncode != 0:
        return f"unshare --mount is not permitted here ({done.stderr.strip()})"
    return None


def mgetty_or_skip() -> str:
    """The mgetty binary, installed if need be; skips the test with a reason otherwise."""
    path = _find()
    if path is None:
        problem = _install()
        path = _find()
        if path is None:
            pytest.skip(
                f"mgetty is not installed and {problem or 'was not found after apt-get'}"
                f" ({HOW_TO_RUN})"
            )
    for folder in (ETC, LOG):  # the mount points of the private copies
        if not os.path.isdir(folder):
            pytest.skip(f"{folder} is missing: the mgetty package is incomplete ({HOW_TO_RUN})")
    problem = _namespace_problem()
    if problem is not None:
        pytest.skip(
            f"mgetty needs a private mount namespace for its compiled-in /etc and /var "
            f"paths: {problem}; run as root ({HOW_TO_RUN})"
        )
    return path


LOGIN_PROGRAM = r"""#!/bin/sh
# A stand-in for login(1) that never lets anyone in. Without a name argument it reads the
# name itself, as login does under mgetty's TTYPROMPT hack (mgetty printed the prompt).
trap '' INT QUIT TSTP
stty raw 2>/dev/null  # the caller's bytes raise no signal and no end of file
[ -n "$1" ] || read -r name || exit 0
while :; do
    printf '\r\nPassword: '
    read -r password || exit 0
    printf '\r\nLogin incorrect\r\n\r\nlogin: '
    read -r name || exit 0
done
"""


class Mgetty:
    """One mgetty on `tty` (a /dev/pts/N path), with everything private in `folder`.

    `reads_login_name`: mgetty reads the caller's login name itself (its default). Its
    reader ends the call on a ^\\ or (first) ^D byte, 0x1c/0x9c or 0x04/0x84: a caller
    sending binary data is hung up on in about half the calls. With False, mgetty prints
    the login prompt and hands the line to the login program at once (its
    `login-env-ttyprompt-hack`), which keeps the line up whatever arrives.
    """

    def __init__(
        self, binary: str, tty: str, folder: Path, *, reads_login_name: bool = False
    ) -> None:
        if not tty.startswith("/dev/"):
            raise ValueError(f"mgetty wants a device under /dev, not {tty}")
        self.binary = binary
        self.tty = tty
        self.port = tty.removeprefix("/dev/")  # mgetty takes the name relative to /dev
        self.folder = folder
        self.etc = folder / "etc"
        self.log_dir = folder / "log"
        self.lock_dir = folder / "lock"
        self.output = folder / "mgetty.out"
        self.reads_login_name = reads_login_name
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"mg_{self.port.replace('/', '-')}.log"

    def log(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        if self.output.exists():
            text += self.output.read_text(errors="replace")
        return text

    def waiting(self) -> bool:
        """The modem is set up and mgetty waits for a call ("waiting..." in its log)."""
        return re.search(r"\swaiting\.\.\.$", self.log(), re.MULTILINE) is not None

    def write_config(self) -> None:
        for folder in (self.etc, self.log_dir, self.lock_dir):
            folder.mkdir(parents=True, exist_ok=True)
        login = self.folder / "fake-login"
        login.write_text(LOGIN_PROGRAM)
        login.chmod(0o755)
        # mgetty ignores a login.config not owned by root with mode 0600, and falls back
        # to /bin/login (whose vhangup() would drop the line)
        login_config = self.etc / "login.config"
        login_config.write_text(f"*\t-\t-\t{login} @\n")
        login_config.chmod(0o600)
        (self.etc / "dialin.config").write_text("")
        (self.folder / "issue").write_text("callhome test site, mgetty on @ (\\L)\n")
        # Everything else is mgetty's own default: its init chat (ATQ0V1H0, AT), the
        # answer on the first RING (ATA, wait for CONNECT), the banner, the login prompt
        # (after a FidoNet EMSI request when mgetty reads the name itself).
        (self.etc / "mgetty.config").write_text(
            "\n".join(
                [
                    "# written by tests/e2e/test_mgetty.py; private to this test",
                    "debug 9",
                    "speed 38400",
                    "data-only yes",
                    "port-group root",
                    f"issue-file {self.folder / 'issue'}",
                    f"login-conf-file {self.etc / 'login.config'}",
                    "login-time 120",
                    f"login-env-ttyprompt-hack {'no' if self.reads_login_name else 'yes'}",
                    "",
                ]
            )
        )

    def command(self) -> list[str]:
        lock = os.path.realpath("/var/lock")
        script = (
            'mount --bind "$1" /etc/mgetty && mount --bind "$2" /var/log/mgetty && '
            'mount --bind "$3" "$4" && shift 4 && exec "$@"'
        )
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            script,
            "mgetty-namespace",
            str(self.etc),
            str(self.log_dir),
            str(self.lock_dir),
            lock,
            self.binary,
            "-x",
            "9",
            self.port,
        ]

    def start(self) -> None:
        self.write_config()
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """mgetty, the login program it started, and anything they started: all gone."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(5)
                break
            except subprocess.TimeoutExpired:
                continue
        # anything left in mgetty's session (it is its leader, we made it so)
        for pid in _session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _session_members(session: int) -> list[int]:
    """Processes of session `session` (Linux /proc; none elsewhere)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session:  # stat field 6: the session id
                found.append(int(entry.name))
    return found
