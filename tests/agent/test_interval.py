"""The centre says how often it expects a line test (an optional field of HS2); the
agent adopts it and says so."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.linesim import Centre, Device
from callhome.client.agent.config import load_agent_config
from callhome.client.agent.daemon import Agent
from callhome.client.config import load_client_config
from callhome.wire.messages import CURRENT_DICTIONARY, Kind, encode_message, load_dictionary
from callhome.wire.session import HandshakeCompleted, ServerSession
from tests.wire.framesim import run_call

from .agentkit import FakeCentre, write_config

ACCEPT = ServerSession.accept


def one_call(monkeypatch: pytest.MonkeyPatch, interval: int | None) -> HandshakeCompleted:
    def accept(self: ServerSession, now: float, **kwargs: Any) -> None:
        ACCEPT(self, now, **{**kwargs, "test_interval": interval})

    monkeypatch.setattr(ServerSession, "accept", accept)
    centre, device = Centre(), Device()
    centre.enroll(device.public, "device")
    device.add(
        1, encode_message(Kind.REPORT, {"severity": "info"}, load_dictionary(CURRENT_DICTIONARY))
    )
    outcome = run_call(device, centre)
    assert outcome.closed and outcome.failure is None
    return next(e for e in outcome.client_events if isinstance(e, HandshakeCompleted))


def test_the_handshake_carries_the_expected_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert one_call(monkeypatch, 6 * 3600).test_interval == 6 * 3600
    assert one_call(monkeypatch, None).test_interval is None


async def test_the_agent_adopts_the_centres_interval_and_keeps_it(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[agent]\ntime_scale = 0.001\n")
    client = load_client_config(path)
    config = load_agent_config(path, client.spool)
    centre = FakeCentre(test_interval=6 * 3600)
    agent = Agent(client, config, b"k" * 32, caller=centre, rng=random.Random(3))
    assert agent.policy.test_interval == 86400
    agent.spool.enqueue(Kind.REPORT, {"severity": "info"})
    await agent.call_once()
    assert agent.policy.test_interval == 6 * 3600
    assert agent.policy.next_test - agent.clock.now() < 6 * 3600 * 1.1
    agent.save()
    agent.spool.close()
    again = Agent(client, config, b"k" * 32, caller=centre, rng=random.Random(3))
    assert again.policy.test_interval == 6 * 3600  # remembered across a restart
    again.spool.close()
