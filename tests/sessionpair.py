"""A device and a centre (benchmarks.linesim's) talking through the sans-IO sessions
directly: no line, no modem, one virtual instant per hop."""

from __future__ import annotations

from typing import Any

from benchmarks.linesim import Centre, enrolled_pair
from callhome.wire.phases import Phase
from callhome.wire.session import ClientSession, Event, ServerSession
from callhome.wire.transfer import TransferConfig


def session_pair(
    config: TransferConfig, **client_options: Any
) -> tuple[Centre, ClientSession, ServerSession]:
    """A centre with one enrolled device, and both ends' sessions started at time 0."""
    device, centre = enrolled_pair()
    client = ClientSession(
        static_private=device.static_private,
        server_public=centre.public,
        call_counter=1,
        epoch=device.epoch,
        config=config,
        **client_options,
    )
    server = ServerSession(static_private=centre.static_private, config=config)
    server.start(0.0)
    client.start(0.0)
    return centre, client, server


def exchange(
    client: ClientSession,
    server: ServerSession,
    centre: Centre,
    *,
    step: float = 0.01,
    rounds: int = 200,
) -> list[Event]:
    """Pump bytes both ways, `step` apart, until the device's session ends; the events
    the device saw."""
    now = 0.0
    client_events: list[Event] = []
    for _ in range(rounds):
        now += step
        up = client.data_to_send()
        if up:
            for event in server.receive_data(up, now):
                centre.handle(server, event, now)
        now += step
        for event in server.handle_timer(now):
            centre.handle(server, event, now)
        down = server.data_to_send()
        if down:
            client_events += client.receive_data(down, now)
        client_events += client.handle_timer(now)
        if client.phase in (Phase.CLOSED, Phase.FAILED):
            break
    return client_events
