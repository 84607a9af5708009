"""The agent answers the centre: while idle it lets its modem answer incoming calls from
the centre's numbers and, once connected, runs the same client session as an outgoing
call (the device is still the protocol's initiator): it sends what is queued and a line
test. This lets the centre call a device back.

The modem is held only in windows (`answer_window`), released between them so that a
person's `callhome send` and the agent's own calls get it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from modem_drivers.hayes import HayesModem, ModemError

from ...modemtimings import modem_timings
from ..config import ClientConfig
from ..spool import Spool

if TYPE_CHECKING:
    # the dialer (the protocol, pyca/cryptography) is imported once a call connects: an
    # agent waiting for the centre to call stays small
    from ..dialer import CallReport, Progress

log = structlog.get_logger("callhome.agent")

MIN_DIGITS = 4
"""Fewer digits than this never match a number (a caller ID of "1" is no proof)."""


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def caller_allowed(caller: str | None, numbers: list[str], *, require: bool) -> bool:
    """Whether a call from `caller` (its caller ID, None when the line gave none) is the
    centre's. A dial string may carry a prefix ("9,0123 555 0100") and a caller ID may
    lack one, so one number ending with the other is a match."""
    if caller is None:
        return not require
    got = _digits(caller)
    for number in numbers:
        want = _digits(number)
        if min(len(got), len(want)) >= MIN_DIGITS and (want.endswith(got) or got.endswith(want)):
            return True
    return False


async def answer_once(
    config: ClientConfig,
    spool: Spool,
    private_key: bytes,
    *,
    numbers: list[str],
    require_caller_id: bool,
    rings: int,
    window: float,
    interrupt: asyncio.Event,
    connected: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
) -> CallReport | None:
    """Wait up to `window` seconds (or until `interrupt`) for the centre to call; answer
    it and run the session. None when nobody (allowed) called."""
    modem = HayesModem(
        config.ports[0],
        profile=config.profile,
        timings=modem_timings(config.time_scale),
        name=config.ports[0],
        init=config.init,
        skip=config.skip,
    )
    try:
        await modem.connect()
        await modem.initialize()
        waiter = asyncio.ensure_future(modem.wait_for_call(rings=rings))
        stopper = asyncio.ensure_future(interrupt.wait())
        done, _ = await asyncio.wait(
            {waiter, stopper}, timeout=window, return_when=asyncio.FIRST_COMPLETED
        )
        for task in (waiter, stopper):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ModemError):
                    await task
        if waiter not in done:
            return None
        incoming = waiter.result()
        caller = incoming.caller_id.number if incoming.caller_id else None
        if not caller_allowed(caller, numbers, require=require_caller_id):
            log.warning("agent.caller_refused", caller=caller)
            return None  # let it ring: it is not the centre
        if progress is not None:
            progress("answering", caller=caller)
        outcome = await modem.answer()
        if not outcome.connected or outcome.call is None:
            return None
        log.info("agent.answered", caller=caller)
        from ..dialer import _converse, _noop

        connected()  # the caller queues the line test now: the session sends the queue
        counter = spool.next_call_counter()
        return await _converse(config, spool, private_key, outcome.call, counter, progress or _noop)
    finally:
        with contextlib.suppress(ModemError, OSError):
            await modem.close()
