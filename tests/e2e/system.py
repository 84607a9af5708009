"""A whole call-home system for end-to-end tests.

The test process runs the virtual phone network (so a test can cut lines, make lines
busy, and read call records); everything else is the real programs as subprocesses:
`callhome-receiver run` on the bank's ptys, and `callhome` commands on the clients'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.network import NetworkTiming
from modem_drivers.virtual.runner import NetworkRunner

SCALE = 0.1
CENTRE_NUMBER = "5550100"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err[-3000:]}"


async def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"{args} did not finish in {timeout} s:\n{err.decode()[-3000:]}"
        ) from None
    return Result(process.returncode or 0, out.decode(), err.decode())


class System:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = root / "ports"
        self.network = PhoneNetwork(timing=NetworkTiming(ring_on=1.0, ring_off=2.0))
        self.runner = NetworkRunner(self.network, time_scale=SCALE)
        self.centre_config = root / "centre" / "centre.toml"
        self.centre_key = ""
        self.receiver: asyncio.subprocess.Process | None = None
        self.receiver_log = root / "receiver.log"
        self._log_handle: Any = None
        self._log_copy: asyncio.Task[None] | None = None

    # -- the network ---------------------------------------------------------------------

    async def start(
        self, bank: int = 2, *, profiles: list[str] | None = None, **centre_settings: str | bool
    ) -> None:
        """A bank of `bank` modems on one hunt group (of `profiles` in turn), and the
        centre's config, with `centre_settings` (e.g. health_check="20s") written into
        its [bank] table."""
        network = self.network
        profiles = profiles or ["usr", "conexant", "generic"]
        for index in range(bank):
            network.add_modem(f"bank{index}", profiles[index % 3])
        network.add_hunt_group(CENTRE_NUMBER, [f"bank{i}" for i in range(bank)])
        await self.runner.start()
        for index in range(bank):
            await self.runner.expose(f"bank{index}", "pty", path=str(self.ports / f"bank{index}"))
        result = await run(
            "receiver",
            "-c",
            str(self.centre_config),
            "init",
            str(self.centre_config.parent),
            *[arg for i in range(bank) for arg in ("--port", str(self.ports / f"bank{i}"))],
            "--time-scale",
            str(SCALE),
        )
        assert result.code == 0, result
        self.centre_key = result.out.split("centre public key: ")[1].split()[0]
        text = self.centre_config.read_text()
        for key, value in centre_settings.items():
            literal = str(value).lower() if isinstance(value, bool) else f'"{value}"'
            text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {literal}", text)
            assert count == 1, key
        self.centre_config.write_text(text)

    async def stop(self) -> None:
        await self.stop_receiver()
        await self.runner.stop()

    # -- the centre ----------------------------------------------------------------------

    async def receiver_cli(self, *args: str) -> Result:
        return await run("receiver", "-c", str(self.centre_config), *args)

    async def start_receiver(self, *, file_size_limit: int | None = None) -> None:
        if self._log_handle is None:
            self._log_handle = open(self.receiver_log, "ab")  # noqa: SIM115
        before = len(self.events())

        def limit() -> None:  # a full disk, as far as the store can tell
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        # The limit binds every regular file the receiver writes, its log too: a log
        # grown past it lost the very call.ended the test waits for (a CI failure with
        # 631 replay warnings). A pipe is not bound; this process copies it to the log.
        piped = file_size_limit is not None
        output = asyncio.subprocess.PIPE if piped else self._log_handle
        self.receiver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "receiver",
            "-c",
            str(self.centre_config),
            "run",
            "--json-logs",
            "--log-level",
            "info",
            stdout=output,
            stderr=asyncio.subprocess.STDOUT if piped else self._log_handle,
            preexec_fn=limit if piped else None,
        )
        if piped:
            self._log_copy = asyncio.create_task(self._copy_log(self.receiver.stdout))
        bank = sum(1 for name in self.network.lines if name.startswith("bank"))
        await self.wait_for("port.up", count=bank, after=before)

    async def stop_receiver(self, sig: int = signal.SIGTERM) -> int | None:
        process, self.receiver = self.receiver, None
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        code = await asyncio.wait_for(process.wait(), 60)
        copy, self._log_copy = self._log_copy, None
        if copy is not None:
            await asyncio.wait_for(copy, 10)
        return code

    async def _copy_log(self, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            self._log_handle.write(chunk)
            self._log_handle.flush()

    def events(self) -> list[dict[str, Any]]:
        if not self.receiver_log.exists():
            return []
        events = []
        for line in self.receiver_log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
        return events

    async def wait_for(
        self, event: str, *, count: int = 1, after: int = 0, timeout: float = 30.0, **fields: Any
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matches = [
                e
                for e in self.events()[after:]
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]
            if len(matches) >= count:
                return matches[count - 1]
            if loop.time() > deadline:
                tail = "\n".join(json.dumps(e) for e in self.events()[-15:])
                raise AssertionError(f"no {event} {fields} in the receiver log:\n{tail}")
            await asyncio.sleep(0.05)

    async def reports(self, *args: str) -> list[dict[str, Any]]:
        result = await self.receiver_cli("reports", "--json", *args)
        assert result.code == 0, result
        return json.loads(result.out)

    async def calls(self, *args: str) -> list[dict[str, Any]]:
        result = await self.receiver_cli("calls", "--json", *args)
        assert result.code == 0, result
        return json.loads(result.out)

    # -- clients -------------------------------------------------------------------------

    async def add_client(
        self,
        name: str,
        number: str,
        *,
        enroll: bool = True,
        profile: str = "generic",
        attempts: int = 2,
        retry_delay: str = "5s",
    ) -> Client:
        self.network.add_modem(name, profile, number=number)
        url = str(self.ports / name)
        await self.runner.expose(name, "pty", path=url)
        folder = self.root / name
        result = await run(
            "callhome",
            "-c",
            str(folder / "client.toml"),
            "init",
            str(folder),
            "--name",
            name,
            "--centre-key",
            self.centre_key,
            "--number",
            CENTRE_NUMBER,
            "--port",
            url,
            "--attempts",
            str(attempts),
            "--retry-delay",
            retry_delay,
            "--time-scale",
            str(SCALE),
        )
        assert result.code == 0, result
        public = result.out.split("device public key: ")[1].split()[0]
        client = Client(self, name, folder / "client.toml", public)
        if enroll:
            enrolled = await self.receiver_cli("enroll", name, "--pubkey", public)
            assert enrolled.code == 0, enrolled
        return client


class Client:
    def __init__(self, system: System, name: str, config: Path, public: str) -> None:
        self.system = system
        self.name = name
        self.config = config
        self.public = public

    async def cli(self, *args: str, timeout: float = 120) -> Result:
        return await run("callhome", "-c", str(self.config), *args, timeout=timeout)

    async def send_over_a_slow_line(
        self, *, rate: int, component: str, size: int, severity: str = "error"
    ) -> asyncio.Task[Result]:
        """Start `send` of a report carrying `size` random bytes over a line at `rate`
        bit/s; returns once the centre has answered the handshake (`call.handshake`: the
        caller has not proved it is live yet), the command still running."""
        before = len(self.system.events())
        self.system.network.set_next_call(self.name, rate=rate)
        sending = asyncio.ensure_future(
            self.cli(
                "send",
                "--severity",
                severity,
                "--component",
                component,
                "--state",
                "failing",
                "--message",
                os.urandom(size).hex(),
            )
        )
        await self.system.wait_for("call.handshake", after=before, device=self.name)
        return sending

    async def queue(self) -> list[dict[str, Any]]:
        result = await self.cli("queue", "--json")
        assert result.code == 0, result
        return json.loads(result.out)
