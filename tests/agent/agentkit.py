"""What the agent's tests share: a client config with an agent part, and a fake call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2

from callhome.client.config import ClientConfig
from callhome.client.dialer import CallReport
from callhome.client.spool import Spool

KEY = "A" * 43 + "="
CLIENT = f"""
[device]
name = "a"
key = "device.key"
spool = "spool.db"
[centre]
public_key = "{KEY}"
numbers = ["5550100"]
[modem]
ports = ["/dev/ttyS0"]
"""


def write_config(folder: Path, agent: str) -> Path:
    """The client's config with `agent` after it; the agent does not answer (it would open
    the port, a real serial port here) unless `agent` says `answer`."""
    if "answer" not in agent:
        agent = (
            agent.replace("[agent]\n", "[agent]\nanswer = false\n", 1)
            if "[agent]\n" in agent
            else "[agent]\nanswer = false\n" + agent
        )
    path = folder / "client.toml"
    path.write_text(CLIENT + agent)
    Spool(folder / "spool.db", create=True).close()
    return path


class FakeCentre:
    """A call that the centre acknowledges in full; keeps what each call carried."""

    def __init__(
        self, result: str = "ok", *, failures: int = 0, test_interval: int | None = None
    ) -> None:
        self.result = result
        self.test_interval = test_interval
        self.failures = failures
        """So many calls fail (busy) before the centre answers."""
        self.calls: list[list[tuple[str, dict[str, Any]]]] = []

    def __call__(self, config: ClientConfig, spool: Spool, key: bytes, progress: Any = None) -> Any:
        async def call() -> CallReport:
            queued = spool.queued()
            self.calls.append([(m.kind.label, cbor2.loads(m.plain)) for m in queued])
            result = "busy" if len(self.calls) <= self.failures else self.result
            report = CallReport(result=result, sent=[m.seq for m in queued])
            report.test_interval = self.test_interval
            if result == "ok":
                for message in queued:
                    spool.acknowledged(message.seq)
                report.acknowledged = [m.seq for m in queued]
            else:
                report.undelivered = [m.seq for m in queued]
            return report

        return call()

    def events(self) -> list[dict[str, Any]]:
        return [c for call in self.calls for kind, c in call if kind == "report"]
