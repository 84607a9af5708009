"""Callbacks: the centre calls a late device; whether it answers tells a device whose
dial-out is broken (it answers, runs its session, but never calls by itself) from one
that is down. The bank makes the call (`Bank.call`); supervision decides when (policy
per device: never, when late, on an operator's command) and what it means."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass


class Policy(enum.StrEnum):
    NEVER = "never"
    LATE = "late"
    """Call back as soon as the device is late (and on command)."""
    COMMAND = "command"
    """Only on `callhome-receiver call DEVICE`."""


@dataclass
class CallbackRequest:
    device: str
    number: str
    result: asyncio.Future[CallbackResult]


@dataclass
class CallbackResult:
    """How a callback went: "answered" (then `confirmed`: the device it was meant
    for got through the handshake), a dial result ("no answer", "busy" ...), or
    "no port"."""

    device: str
    number: str
    port: str | None
    outcome: str
    confirmed: bool = False
    messages: int = 0
