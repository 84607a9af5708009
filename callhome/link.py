"""Run a sans-IO protocol session over a modem's data call: the one loop both ends use.

It writes what the session wants sent, waits for bytes from the line or the session's
next deadline, feeds either to the session and hands every event to the caller's
handler (which may call back into the session, e.g. `message_stored`). It ends when the
session closes or fails, when the call ends (carrier lost), or when told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol

from modem_drivers.hayes import CallEnded, DataCall

from .modemtimings import modem_timings as modem_timings  # re-exported: its old home
from .wire.session import ClientSession, Event, Phase, ServerSession
from .wire.transfer import TransferConfig

Session = ClientSession | ServerSession


class ByteCall(Protocol):
    """What a session runs over: a modem's `DataCall`, or a TCP connection
    (`callhome.tcp.TcpCall`)."""

    @property
    def open(self) -> bool: ...

    async def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


def transfer_config(
    rate: int | None, scale: float = 1.0, *, error_corrected: bool = False
) -> TransferConfig:
    """Protocol timers for a call at `rate` bit/s (2,400 when the modem did not say);
    on a scaled line the bytes fly faster too. `error_corrected`: the connect record
    says the modems run error control (`ConnectRecord.error_corrected`)."""
    nominal = rate or 2400
    config = TransferConfig(
        line_rate=max(300, int(nominal / scale)), error_corrected=error_corrected
    )
    if scale == 1.0:
        return config
    scaled = config.scaled(scale)
    # the handshake deadlines must also cover the port's own I/O, which does not scale
    return dataclasses.replace(scaled, handshake_timeout=max(scaled.handshake_timeout, 2.0))


async def run_session(
    call: DataCall | ByteCall,
    session: Session,
    handle: Callable[[Event], Awaitable[None]],
    *,
    stop: asyncio.Event | None = None,
) -> str:
    """Returns why it ended: "closed", "failed", "carrier lost" or "stopped"."""
    loop = asyncio.get_running_loop()
    reader: asyncio.Task[bytes] | None = None
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    ending = False
    try:
        await _flush(call, session)
        while True:
            if session.phase is Phase.CLOSED:
                return "closed"
            if not ending and isinstance(session, ServerSession) and session.complete:
                # the centre lingers for a lost last frame, but the caller's hang-up
                # is now the expected end: the modem believes it at once
                ending = True
                if isinstance(call, DataCall):
                    call.expect_end()
            if session.phase is Phase.FAILED:
                return "failed"
            if reader is None:
                reader = asyncio.ensure_future(call.read())
            deadline = session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            waiting = {reader} | ({stopper} if stopper is not None else set())
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if stopper is not None and stopper in done:
                return "stopped"
            now = loop.time()
            if reader in done:
                data = reader.result()
                reader = None
                if not data:
                    return "carrier lost"
                events = session.receive_data(data, now)
            else:
                # the wait timed out: the deadline has come by the loop's clock, which
                # may count coarser than the deadline (uvloop: whole milliseconds)
                events = session.handle_timer(now if deadline is None else max(now, deadline))
            for event in events:
                await handle(event)
            if not await _flush(call, session):
                return "carrier lost"
    finally:
        for task in (reader, stopper):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _flush(call: DataCall | ByteCall, session: Session) -> bool:
    data = session.data_to_send()
    if not data:
        return call.open
    try:
        call.write(data)
    except CallEnded:
        return False
    await call.drain()
    return True
