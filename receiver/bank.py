"""The modem bank: one worker per port, each answering calls, all sharing the store.

A worker initialises its modem, waits for RING (and caller ID), answers, runs a
`ServerSession` over the call, stores what arrives and acknowledges it only after the
commit, hangs up, and waits again. A port whose modem stops answering is reopened with
backoff and reported; the other ports keep serving. On stop, calls in progress are
given time to finish, then hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import cbor2
import structlog

from callhome.backoff import Backoff
from callhome.link import modem_timings, run_session, transfer_config
from callhome.tcp import TcpCall
from callhome.wire.phases import Phase
from callhome.wire.records import RefusalReason
from callhome.wire.session import (
    CallFailed,
    Event,
    HandshakeConfirmed,
    HandshakeDecryptionFailed,
    HandshakeRefused,
    HandshakeRequested,
    MessageFailed,
    MessagePartReceived,
    MessageReceived,
    MessageStarted,
    SecurityAlert,
    ServerSession,
)
from callhome.wire.transfer import TransferConfig
from modem_drivers.hayes import (
    DataCall,
    HangupFailed,
    HayesModem,
    IncomingCall,
    InitialisationError,
    ModemError,
    ModemTimeout,
    State,
)
from modem_drivers.logs import Throttle

from .store import AsyncStore, CallEnd, Device, StoreUnavailable
from .supervision.callback import CallbackRequest, CallbackResult
from .supervision.service import Stored, Supervisor, device_time

if TYPE_CHECKING:
    from .supervision.leader import Leadership

log = structlog.get_logger("callhome.receiver")

SECURITY_COUNTERS = ("auth_failures", "replays", "crc_failures", "malformed", "oversize")
"""The session counters that tell forgery from noise (docs/security.md)."""


def summarise(content: bytes) -> dict[str, str | None]:
    """The few fields of a report the store indexes (never logged above debug)."""
    try:
        data = cbor2.loads(content)
    except Exception:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: str(data[key])[:200] if data.get(key) is not None else None
        for key in ("severity", "component", "state")
    }


PARTIAL_COMMIT_BYTES = 8192
PARTIAL_COMMIT_SECONDS = 10.0
"""A long message's chunks go to the store's partial copy once 8 KiB have gathered, or
10 s after the first of them (line time at the bank's scale), and at the end of the call
whatever its end: a call that drops resumes exactly where it stopped; only a receiver
that dies mid-call loses up to 8 KiB or 10 s of resume point (the device sends them
again). One commit per ~1 KiB frame made the partial copy cost more fsyncs than the
messages themselves; at 33,600 bit/s 8 KiB is about 2.5 s of line, at 2,400 about 34 s,
hence the time bound."""


@dataclass
class PartialBuffer:
    offset: int
    """Where `data` starts in the message."""
    data: bytearray
    since: float
    """Loop time of the first byte not yet saved."""


@dataclass
class CallState:
    port: str
    caller: str | None
    call_id: int | None = None
    """The call's row in the store (None: the store could not even record the call)."""
    device: Device | None = None
    epoch: int = 0
    outcome: str | None = None
    """Set by what happened in the session (refused, store unavailable); otherwise
    derived from how the session ended."""
    error: str | None = None
    messages: int = 0
    undecryptable: int = 0
    """First handshake messages that did not decrypt (NOTICE sent for each)."""
    counter: int | None = None
    """The call counter of the accepted HS1, recorded only once the caller is live."""
    confirmed: bool = False
    """The caller proved it is live (its first record after the handshake)."""
    resume: dict[int, int] = field(default_factory=dict)
    """What we told the caller we hold of its messages (number -> bytes)."""
    unsaved: dict[int, PartialBuffer] = field(default_factory=dict)
    """Chunks of long messages received but not yet in the store's partial copy."""
    settled: set[int] = field(default_factory=set)
    """Messages answered STORED or DUPLICATE in this call: the rest of their bytes, which
    may come in the same batch of events, must never become a partial copy."""
    stats: dict[str, int] = field(default_factory=dict)
    """The session's counters (`ServerSession.stats()`), recorded with the call."""
    callback: bool = False
    """We called the device (supervision's callback): it did not call out."""
    started: float = field(default_factory=time.time)


class Penalties:
    """Callers whose handshakes keep failing are answered later and later.

    Keyed by caller ID, or by port when the line gives none. The first failure costs
    nothing (a misconfigured device, a noisy line); after that each one doubles the
    rings we let pass before answering, up to `cap`; a caller that completes a
    handshake is forgiven, and failures older than `forget_after` are forgotten.
    Times are arguments: the bank passes its loop's clock."""

    def __init__(self, cap: int = 6, forget_after: float = 3600.0):
        self.cap = cap
        self.forget_after = forget_after
        self._failures: dict[str, tuple[int, float]] = {}

    def failed(self, caller: str, now: float) -> int:
        count, _ = self._failures.get(caller, (0, now))
        self._failures[caller] = (count + 1, now)
        return count + 1

    def succeeded(self, caller: str) -> None:
        self._failures.pop(caller, None)

    def failures(self, caller: str, now: float) -> int:
        count, last = self._failures.get(caller, (0, now))
        if now - last > self.forget_after:
            self._failures.pop(caller, None)
            return 0
        return count

    def extra_rings(self, caller: str, now: float) -> int:
        """How many more rings to let this caller wait before we answer: none for the
        first failure, then 1, 2, 4, up to `cap` (6: 36 s at the usual 6 s cadence,
        below the 50-60 s a calling modem waits for an answer)."""
        count = self.failures(caller, now)
        if count < 2:
            return 0
        return int(min(self.cap, 2 ** (count - 2)))


def hangup_patience(state: CallState) -> float | None:
    """How long the bank lets the device hang up first: the driver's default after a
    completed call (the device hangs up once it has our last acknowledgement, and
    hanging up under it could cut that), none after anything else."""
    return None if state.outcome == "completed" and state.error is None else 0.0


REOPEN_BACKOFF = Backoff(1.0, 2.0, 60.0, "decorrelated")
"""Waits before a port whose modem failed is opened again (scaled with the bank's time)."""
STORE_BACKOFF = Backoff(1.0, 2.0, 30.0, "decorrelated")
"""Waits between attempts to reach a store that failed (scaled with the bank's time)."""
MISSED_CALLS = 10_000
"""At most this many calls taken while the store was down are kept to record later."""


class PortWorker:
    path = "modem"
    """The path its calls take (the console's metrics label them with it)."""

    def __init__(self, bank: Bank, url: str, index: int) -> None:
        self.bank = bank
        self.url = url
        self.name = f"bank{index}"
        self.state = "starting"
        self.in_call = False
        self._held: tuple[str, int] | None = None
        """A penalised call we let ring: its penalty key and the ring to answer at."""
        self._log = self._bind_log()
        self.callbacks: asyncio.Queue[CallbackRequest] = asyncio.Queue()
        """Callbacks the bank gave this port to make (supervision's, an operator's)."""

    def _bind_log(self) -> Any:
        """The logger with this port's fields (binding one costs tens of microseconds:
        a TCP call, which makes a worker per connection, binds its own once)."""
        return log.bind(port=self.name, url=self.url)

    async def run(self) -> None:
        bank = self.bank
        backoff = REOPEN_BACKOFF.scaled(bank.scale)
        while not bank.stopping.is_set():
            modem = HayesModem(
                self.url,
                profile=bank.profile,
                timings=bank.timings,
                name=self.name,
                init=bank.init,
                skip=bank.skip,
            )
            try:
                await modem.connect()
                info = await modem.initialize()
                self.state = "ready"
                if bank.supervisor is not None:
                    bank.supervisor.port_state(self.name, True)
                self._log.info(
                    "port.up", profile=info.profile, refused=len(info.refused)
                )  # modem.ready, logged by the driver, lists the features and refusals
                backoff.reset()
                while not bank.stopping.is_set():
                    incoming = await self._wait_for_call(modem)
                    if incoming is None:
                        break
                    if isinstance(incoming, CallbackRequest):
                        await self._call_out(modem, incoming)
                        continue
                    await self._take_call(modem, incoming)
            except Exception as exc:
                self.state = "down"
                if bank.supervisor is not None:
                    bank.supervisor.port_state(self.name, False, str(exc) or type(exc).__name__)
                delay = backoff.next()
                down = isinstance(exc, ModemError | OSError)
                event = "port.down" if down else "port.internal_error"
                now = asyncio.get_running_loop().time()
                extra = bank.log_throttle.allow((event, str(exc)), now)
                if extra is None:
                    pass  # the same failure, logged often enough lately (counted)
                elif event == "port.down":
                    self._log.error(event, error=str(exc), retry_in=round(delay, 3), **extra)
                else:  # a bug: it must cost this port a restart, never the bank
                    self._log.exception(event, retry_in=round(delay, 3), **extra)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(bank.stopping.wait(), delay)
            finally:
                with contextlib.suppress(ModemError, OSError):
                    await modem.close()
        self.state = "stopped"

    async def _wait_for_call(self, modem: HayesModem) -> IncomingCall | CallbackRequest | None:
        """The next call (or a callback to make), or None when the bank stops. While
        idle the modem is asked `AT` every `health_check`: a modem that died between
        calls would otherwise only be noticed by the caller it failed to answer."""
        waiter = asyncio.ensure_future(
            modem.wait_for_call(
                rings=self.bank.rings, wait_for_caller_id=self.bank.wait_for_caller_id
            )
        )
        stopper = asyncio.ensure_future(self.bank.stopping.wait())
        dialler: asyncio.Future[CallbackRequest] | None = asyncio.ensure_future(
            self.callbacks.get()
        )
        try:
            while True:
                watched: set[asyncio.Future[Any]] = {waiter, stopper}
                if dialler is not None:
                    watched.add(dialler)
                done, _ = await asyncio.wait(
                    watched, timeout=self.bank.health_check, return_when=asyncio.FIRST_COMPLETED
                )
                if dialler is not None and dialler in done:
                    if waiter not in done and stopper not in done and modem.state is State.IDLE:
                        request, dialler = dialler.result(), None
                        return request
                    # a call is ringing in: it goes first, the callback after it
                    self.callbacks.put_nowait(dialler.result())
                    dialler = None
                if waiter in done:
                    return waiter.result()
                if stopper in done:
                    return None
                if modem.state is State.IDLE and not done:  # not while a call rings in
                    await self._check_alive(modem)
        finally:
            if dialler is not None:
                if dialler.done() and not dialler.cancelled():
                    self.callbacks.put_nowait(dialler.result())  # not taken: keep it
                else:
                    dialler.cancel()
            for task in (waiter, stopper):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ModemError):
                        await task

    async def _check_alive(self, modem: HayesModem) -> None:
        """Raises ModemError when the modem does not answer `AT` twice in a row (once
        may be a reply lost to a RING starting at the same moment)."""
        for attempt in (1, 2):
            try:
                await modem.command("AT", check=True)
                return
            except ModemTimeout:
                if attempt == 2:
                    raise
                self._log.warning("port.health_check_missed", attempt=attempt)

    async def _take_call(self, modem: HayesModem, incoming: IncomingCall) -> None:
        bank = self.bank
        caller = incoming.caller_id.number if incoming.caller_id else None
        self._log.info("call.ringing", caller=caller, rings=incoming.rings)
        key = self._hold_off(caller, incoming.rings)
        if key is None:
            return  # a penalised caller: let it ring (the next ring comes back here)
        self.in_call = True
        try:
            outcome = await modem.answer()
            if not outcome.connected or outcome.call is None:
                self._log.info("call.not_connected", outcome=outcome.outcome.value)
                return
            if bank.supervisor is not None:
                bank.supervisor.port_answered(self.name)
            bank.notify(
                "answered",
                port=self.name,
                caller=caller,
                connect=outcome.call.record.connect_line.decode("latin-1"),
                rings=incoming.rings,
                call=outcome.call,  # the console reads its byte counters while it lasts
            )
            state = CallState(self.name, caller)
            try:
                await self._serve_call(outcome.call, state)
            finally:
                with contextlib.suppress(HangupFailed, ModemError):
                    if modem.state is not State.IDLE or outcome.call.open:
                        # after a completed call the device hangs up: give it a moment
                        # (its NO CARRIER is believed at once), then hang up ourselves;
                        # a RING of the next call meanwhile is never answered with ATH
                        await outcome.call.finish(hangup_patience(state))
                await self._record(outcome.call, state)
                self._judge(key, state)
        finally:
            self.in_call = False

    async def _call_out(self, modem: HayesModem, request: CallbackRequest) -> None:
        """Call a device back: it answers and runs its ordinary session, served as any
        call is; whether it answered tells dial-out-broken from down."""
        result = CallbackResult(request.device, request.number, self.name, "failed")
        self.in_call = True
        try:
            self._log.info("callback.dialling", device=request.device)
            outcome = await modem.dial(request.number)
            result.outcome = outcome.outcome.value
            if outcome.connected and outcome.call is not None:
                state = CallState(self.name, f"callback:{request.number}", callback=True)
                try:
                    state.call_id = await self.bank.store.start_call(
                        self.name, state.caller, time.time()
                    )
                    await self._serve(outcome.call, state)
                except StoreUnavailable as exc:
                    state.outcome, state.error = "store unavailable", str(exc)
                finally:
                    with contextlib.suppress(HangupFailed, ModemError):
                        if modem.state is not State.IDLE or outcome.call.open:
                            await outcome.call.finish(hangup_patience(state))
                    await self._record(outcome.call, state)
                result.outcome = "answered"
                result.confirmed = state.confirmed and (
                    state.device is not None and state.device.name == request.device
                )
                result.messages = state.messages
        finally:
            self.in_call = False
            if not request.result.done():
                request.result.set_result(result)

    def _hold_off(self, caller: str | None, rings: int) -> str | None:
        """The penalty key of a call to answer now, or None to let it ring on.

        A caller whose handshakes keep failing is answered some rings later than the
        others (`Penalties.extra_rings`), while the hunt group's other ports serve
        genuine callers. Rings, not a sleep: every ring of the held call comes back
        here and is consumed, so none is left over to look like a new call."""
        loop = asyncio.get_running_loop()
        if self._held is not None and caller is None and rings > 1:
            key, answer_at = self._held  # a later ring of the call we are holding off
            if rings < answer_at:
                return None
            self._held = None
            return key
        self._held = None
        key = caller or f"port:{self.name}"
        extra = self.bank.penalties.extra_rings(key, loop.time())
        if extra:
            self.bank.penalised += 1
            self._held = (key, rings + extra)
            self._log.warning(
                "security.caller_penalised",
                caller=caller,
                failures=self.bank.penalties.failures(key, loop.time()),
                answer_at_ring=rings + extra,
            )
            return None
        return key

    def _judge(self, key: str, state: CallState) -> None:
        """A handshake that failed (never confirmed, for a reason of the caller's) counts
        against the caller; a confirmed one clears it."""
        penalties = self.bank.penalties
        if state.confirmed:
            penalties.succeeded(key)
        elif state.outcome not in ("refused: busy", "store unavailable", "stopped"):
            failures = penalties.failed(key, asyncio.get_running_loop().time())
            self._log.warning(
                "security.handshake_failed",
                caller=state.caller,
                outcome=state.outcome,
                failures=failures,
                error=state.error,
            )

    async def _serve_call(self, call: DataCall | TcpCall, state: CallState) -> None:
        """Record the call and serve it: what the modem ports and the TCP listener
        (`receiver.ip`) share. Trouble with the store or a bug costs this call only."""
        try:
            await self._start_record(state)
            await self._serve(call, state)
        except (ModemError, OSError):
            raise
        except StoreUnavailable as exc:
            # nothing acknowledged that is not committed: the device will call again
            state.outcome = "store unavailable"
            state.error = str(exc)
            self._log.error("call.store_unavailable", error=str(exc))
            self.bank.store_failed(exc)
        except Exception as exc:
            # a bug must cost this call, never the port or the process
            state.outcome = "failed"
            state.error = f"internal error: {type(exc).__name__}: {exc}"
            self._log.exception("call.internal_error")

    async def _start_record(self, state: CallState) -> None:
        bank = self.bank
        if bank.store_down is not None:
            return  # recorded once the store is back (`Bank.missed`)
        try:
            state.call_id = await bank.store.start_call(self.name, state.caller, time.time())
        except StoreUnavailable as exc:
            bank.store_failed(exc)  # the handshake is refused busy

    def _transfer_config(self, call: DataCall | TcpCall) -> TransferConfig:
        record = call.record
        return transfer_config(record.rate, self.bank.scale, error_corrected=record.error_corrected)

    async def _let_caller_hang_up(self, call: DataCall | TcpCall) -> None:
        # let the refusal or the "cannot decrypt" notice leave the modem and the
        # caller hang up: hanging up at once loses them in the modem's buffer
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(call.ended.wait(), 5.0 * self.bank.scale + 1.0)

    async def _run_session(
        self,
        call: DataCall | TcpCall,
        session: ServerSession,
        handle: Callable[[Event], Awaitable[None]],
    ) -> str:
        """The loop that carries the session (`run_session`'s outcomes): the modem's;
        the TCP listener's calls run `run_tcp_session`."""
        return await run_session(call, session, handle, stop=self.bank.hard_stop)

    async def _serve(self, call: DataCall | TcpCall, state: CallState) -> None:
        bank = self.bank
        loop = asyncio.get_running_loop()
        config = self._transfer_config(call)
        session = ServerSession(static_private=bank.static_private, config=config)
        session.start(loop.time())

        async def handle(event: Event) -> None:
            await self._event(session, event, state)

        try:
            ended = await self._run_session(call, session, handle)
        finally:
            state.stats = session.stats()
            await self._save_all_parts(state)
        if state.outcome is None and session.phase is Phase.FAILED and not session.confirmed:
            state.outcome = "failed"  # no genuine, live caller: a handshake that failed
        if state.outcome is None:
            if ended == "closed" or session.complete:
                state.outcome = "completed"
            elif ended == "carrier lost" and not session.confirmed:
                state.outcome = "failed"  # hung up before proving it is live
                state.error = state.error or "the caller hung up during the handshake"
            elif ended == "carrier lost":
                state.outcome = "dropped"
                state.error = state.error or "carrier lost before the exchange was complete"
            elif ended == "stopped":
                state.outcome = "stopped"
            else:
                state.outcome = "failed"
        if state.outcome.startswith("refused") or (state.undecryptable and not session.confirmed):
            await self._let_caller_hang_up(call)

    async def _event(self, session: ServerSession, event: Event, state: CallState) -> None:
        bank = self.bank
        store = bank.store
        loop = asyncio.get_running_loop()
        if isinstance(event, HandshakeRefused):
            # the session refused by itself (a protocol version we do not speak)
            device = await store.device_by_key(event.device_key)
            state.device = device
            state.outcome = f"refused: {event.reason.text}"
            state.error = f"protocol version {event.version}"
            self._refused(event.reason, device, event.device_key, version=event.version)
        elif isinstance(event, HandshakeRequested):
            device = None
            partial: dict[int, bytes] = {}
            if bank.store_down is None:
                try:
                    device, partial = await store.device_and_partials(event.device_key, event.epoch)
                except StoreUnavailable as exc:
                    bank.store_failed(exc)
            if bank.stopping.is_set():
                reason = RefusalReason.BUSY  # draining: call again, another bank answers
            elif bank.store_down is not None:
                # nothing could be committed, so nothing may be acknowledged: the device
                # keeps its messages and calls its next number (maybe another site)
                reason = RefusalReason.BUSY
                state.error = f"store unavailable: {bank.store_down}"
            elif device is None:
                reason = RefusalReason.UNKNOWN_DEVICE
            elif device.revoked:
                reason = RefusalReason.REVOKED
            elif event.call_counter <= device.last_counter:
                reason = RefusalReason.STALE_COUNTER
            else:
                # nothing is recorded yet: a replayed HS1 looks exactly like this. The
                # counter and last-seen wait for HandshakeConfirmed (the caller is live)
                state.device = device
                state.epoch = event.epoch
                state.counter = event.call_counter
                state.resume = {seq: len(data) for seq, data in partial.items()}
                interval = device.test_interval  # what supervision expects, when it runs
                if bank.supervisor is not None:
                    interval = bank.supervisor.expected_interval(device.name) or interval
                session.accept(
                    loop.time(),
                    clock_ms=int(time.time() * 1000),
                    resume=partial,
                    test_interval=int(interval),
                )
                self._log.info(
                    "call.handshake",
                    device=device.name,
                    counter=event.call_counter,
                    resume=len(partial),
                )
                return
            state.device = device
            state.outcome = f"refused: {reason.text}"
            session.refuse(loop.time(), reason)
            self._refused(reason, device, event.device_key, counter=event.call_counter)
        elif isinstance(event, HandshakeConfirmed):
            device = state.device
            assert device is not None and state.counter is not None
            if not await store.advance_counter(device.id, state.counter, time.time()):
                # another call of this device (a clone?) got in with this counter first
                state.outcome = "refused: stale counter"
                state.error = "call counter taken by another call while shaking hands"
                self._log.warning("call.counter_raced", device=device.name, counter=state.counter)
                session.abort(state.error)
                return
            state.confirmed = True
            self._log.info(
                "call.accepted",
                device=device.name,
                counter=state.counter,
                resume=len(state.resume),
                confirmed_in=round(event.confirmation_time, 3),
            )
            bank.notify(
                "accepted",
                port=self.name,
                device=device.name,
                resume=state.resume,
                path=self.path,
                started=state.started,
            )
        elif isinstance(event, SecurityAlert):
            # a line repeats a frame hundreds of times in a call when the ACKs come late
            # (each resend is a "replay"): a few lines per port, the totals on call.ended
            name = f"security.{event.kind}"
            extra = bank.log_throttle.allow((name, self.name), loop.time())
            if extra is not None:
                self._log.warning(
                    name,
                    device=state.device.name if state.device else None,
                    caller=state.caller,
                    frame_type=event.frame_type,
                    count=event.counter,
                    **extra,
                )
        elif isinstance(event, MessageStarted):
            device = state.device
            # a duplicate found now is answered before its bytes come, and none of them
            # kept; one that came whole is found by storing it (a read less per call)
            if (
                device is not None
                and not event.whole
                and await store.has_message(device.id, state.epoch, event.seq)
            ):
                state.settled.add(event.seq)
                session.message_stored(event.seq, loop.time(), duplicate=True)
                self._log.info("message.duplicate", device=device.name, seq=event.seq)
        elif isinstance(event, MessagePartReceived):
            device = state.device
            assert device is not None
            if event.seq not in state.settled:  # a duplicate's bytes are not kept
                await self._gather_part(event, state, loop.time())
        elif isinstance(event, MessageReceived):
            await self._store(session, event, state)
        elif isinstance(event, MessageFailed):
            state.unsaved.pop(event.seq, None)  # it failed its digest: start again
            self._log.warning("message.failed", seq=event.seq, reason=event.reason.name)
        elif isinstance(event, HandshakeDecryptionFailed):
            # the wrong centre key, or a forgery: the session answered with a NOTICE and
            # waits (until the handshake deadline) in case a genuine HS1 follows
            state.undecryptable += 1
            state.error = f"cannot decrypt the caller's handshake: {event.error}"
        elif isinstance(event, CallFailed):
            if state.undecryptable and state.device is None:
                # the deadline that followed says less than why the caller never got in
                state.error = f"{state.error} (then: {event.error})"
            else:
                state.error = str(event.error)
            self._log.warning("call.protocol_error", error=str(event.error))
        # CallClosed: the outcome follows from how run_session ends

    async def _gather_part(self, event: MessagePartReceived, state: CallState, now: float) -> None:
        held = state.unsaved.get(event.seq)
        if held is not None and held.offset + len(held.data) != event.offset:
            await self._save_parts(state, event.seq)  # not contiguous: start afresh
            held = None
        if held is None:
            held = state.unsaved[event.seq] = PartialBuffer(event.offset, bytearray(), now)
        held.data += event.data
        if (
            len(held.data) >= PARTIAL_COMMIT_BYTES
            or now - held.since >= PARTIAL_COMMIT_SECONDS * self.bank.scale
        ):
            await self._save_parts(state, event.seq)

    async def _save_parts(self, state: CallState, seq: int) -> None:
        held = state.unsaved.pop(seq, None)
        if held is None or not held.data or state.device is None or seq in state.settled:
            return
        await self.bank.store.append_partial(
            state.device.id, state.epoch, seq, held.offset, bytes(held.data)
        )

    async def _save_all_parts(self, state: CallState) -> None:
        """At the end of a call, however it ended: what arrived of unfinished messages
        becomes their partial copy, for the next call to resume from."""
        for seq in list(state.unsaved):
            try:
                await self._save_parts(state, seq)
            except StoreUnavailable as exc:
                self._log.error("message.partial_not_saved", seq=seq, error=str(exc))
                state.unsaved.clear()
                return

    def _refused(
        self, reason: RefusalReason, device: Device | None, key: bytes, **fields: int
    ) -> None:
        self.bank.refusals[reason.text] = self.bank.refusals.get(reason.text, 0) + 1
        self.bank.notify(
            "refused", port=self.name, reason=reason.text, device=device.name if device else None
        )
        self._log.warning(
            "call.refused",
            reason=reason.text,
            device=device.name if device else None,
            key=key.hex()[:16],
            **fields,
        )

    async def _store(
        self, session: ServerSession, event: MessageReceived, state: CallState
    ) -> None:
        store = self.bank.store
        device = state.device
        assert device is not None
        supervisor = self.bank.supervisor
        now = time.time()
        note = handover = None
        if supervisor is not None:  # a resent one proves the device alive too
            kind = event.kind.label
            note = Stored(
                device,
                now,
                self.name,
                state.caller,
                kind,
                device_time(kind, event.content),
                getattr(state, "path", None),
                callback=state.callback,
            )
            handover = supervisor.handover(note)
        try:
            stored = await store.store_message(
                device.id,
                state.epoch,
                event.seq,
                event.kind.label,
                event.content,
                summarise(event.content),
                state.call_id,
                now,
                handover=handover,
            )
        except StoreUnavailable as exc:
            # no acknowledgement: the device keeps the message and calls again
            state.error = str(exc)
            state.outcome = "store unavailable"
            self._log.error("message.not_stored", device=device.name, seq=event.seq, error=str(exc))
            session.abort(str(exc))
            self.bank.store_failed(exc)
            return
        loop = asyncio.get_running_loop()
        state.settled.add(event.seq)
        state.unsaved.pop(event.seq, None)  # the stored message replaced its partial copy
        session.message_stored(event.seq, loop.time(), duplicate=not stored)
        state.messages += 1
        if supervisor is not None and note is not None:
            supervisor.message_stored(note, handed=handover is not None)
        self._log.info(
            "message.stored" if stored else "message.duplicate",
            device=device.name,
            kind=event.kind.label,
            seq=event.seq,
            size=event.body_size,
        )
        self._log.debug("message.content", content=event.content.hex())
        self.bank.notify(
            "stored",
            device=device.name,
            message_kind=event.kind.label,
            seq=event.seq,
            duplicate=not stored,
        )

    async def _record(self, call: DataCall | TcpCall, state: CallState) -> None:
        record = call.record
        outcome = state.outcome or "failed"
        end = CallEnd(
            ended=time.time(),
            outcome=outcome,
            device_id=state.device.id if state.device else None,
            rate=record.rate,
            modulation=record.modulation,
            error_correction=record.error_correction,
            bytes_in=call.bytes_in,
            bytes_out=call.bytes_out,
            messages=state.messages,
            error=state.error,
            security=state.stats,
        )
        if state.call_id is not None:
            try:
                await self.bank.store.finish_call(state.call_id, end)
            except StoreUnavailable as exc:
                self._log.error("call.not_recorded", error=str(exc))
                self.bank.store_failed(exc)
        elif self.bank.store_down is not None and len(self.bank.missed) < MISSED_CALLS:
            # recorded once the store is back, so that `calls` shows the outage too
            self.bank.missed.append((self.name, state.caller, state.started, end))
        security = {k: v for k, v in state.stats.items() if k in SECURITY_COUNTERS and v}
        self._log.info(
            "call.ended",
            outcome=outcome,
            device=state.device.name if state.device else None,
            messages=state.messages,
            error=state.error,
            **security,
        )
        self.bank.notify(
            "call",
            outcome=outcome,
            device=state.device.name if state.device else None,
            caller=state.caller,
            port=self.name,
            bytes_in=call.bytes_in,
            bytes_out=call.bytes_out,
            path=self.path,
            started=state.started,
        )


class Service(Protocol):
    in_call: int
    """Calls in progress."""

    async def run(self) -> None:
        """Serve until the bank is `stopping`, then let calls finish (the bank sets
        `hard_stop` when they may not) and return."""


class Bank:
    def __init__(
        self,
        ports: list[str],
        store: AsyncStore,
        static_private: bytes,
        *,
        profile: str = "auto",
        init: tuple[str, ...] = (),
        skip: tuple[str, ...] = (),
        rings: int = 1,
        wait_for_caller_id: bool = False,
        health_check: float = 300.0,
        scale: float = 1.0,
        drain_timeout: float = 30.0,
        notify: Callable[..., None] | None = None,
        supervisor: Supervisor | None = None,
        listening: bool = False,
    ) -> None:
        """`listening`: a TCP listener will be added to `services`, so no modem port is
        needed."""
        if not ports and not listening:
            raise InitialisationError("no modem ports configured ([bank] ports)")
        self.store = store
        self.static_private = static_private
        self.profile = profile
        self.init, self.skip = init, skip
        self.rings = rings
        self.wait_for_caller_id = wait_for_caller_id
        """False: answer on the `rings`-th ring, with the caller ID that came before it
        (if any: most lines send it after the first ring). True: allow one ring more
        for it, which costs every call a ring cycle (about 6 s) where none comes."""
        self.health_check = health_check * scale
        """Real seconds of silence on an idle port before its modem is asked `AT`."""
        self.scale = scale
        self.timings = modem_timings(scale)
        self.drain_timeout = drain_timeout
        self.stopping = asyncio.Event()
        self.hard_stop = asyncio.Event()
        self.workers = [PortWorker(self, url, index) for index, url in enumerate(ports)]
        self.services: list[Service] = []
        """What serves calls beside the modem ports (the TCP listener, `receiver.ip`):
        run, drained and stopped with them."""
        self.refusals: dict[str, int] = {}
        """Refused calls since start, by reason."""
        self.penalties = Penalties(forget_after=3600.0 * scale)
        self.penalised = 0
        """Calls answered late because their caller kept failing handshakes."""
        self._notify = notify or (lambda what, **fields: None)
        self.log_throttle = Throttle()
        """Port failures that repeat (the same error on many ports, or again and again)."""
        self.supervisor = supervisor
        """Told of every stored message; runs beside the ports (receiver/supervision)."""
        self.leadership: Leadership | None = None
        """Set when several receivers may share the store: supervision then runs here
        only while this receiver holds its lease (receiver/supervision/leader.py)."""
        self.store_down: str | None = None
        """Why the store failed, while it does (None: usable). Meanwhile calls are refused
        busy without touching it, and `_reconnect` tries it again with backoff."""
        self._reconnecting: asyncio.Task[None] | None = None
        self.missed: list[tuple[str, str | None, float, CallEnd]] = []
        """Calls taken while the store was down (port, caller, start, end)."""

    async def call(self, device: str, number: str) -> CallbackResult:
        """Call a device back on an idle port ("no port": none is ready)."""
        ready = [w for w in self.workers if w.state == "ready" and not self.stopping.is_set()]
        if not ready:
            return CallbackResult(device, number, None, "no port")
        worker = min(ready, key=lambda w: (w.in_call, w.callbacks.qsize()))
        request = CallbackRequest(device, number, asyncio.get_running_loop().create_future())
        worker.callbacks.put_nowait(request)
        return await request.result

    def store_failed(self, exc: StoreUnavailable) -> None:
        """The store failed: refuse calls busy until it can be read again."""
        if self.store_down is None:
            log.error("store.unavailable", error=str(exc))
        self.store_down = str(exc)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        backoff = STORE_BACKOFF.scaled(self.scale)
        loop = asyncio.get_running_loop()
        since = loop.time()
        while self.store_down is not None and not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff.next())
            try:
                await self.store.device_by_key(b"")  # any read that goes to the database
                recorded = await self._record_missed()
            except StoreUnavailable as exc:
                log.warning("store.still_unavailable", error=str(exc), attempts=backoff.count)
                continue
            self.store_down = None
            log.info(
                "store.reconnected",
                after=round((loop.time() - since) / self.scale, 3),
                attempts=backoff.count,
                calls_recorded=recorded,
            )

    async def _record_missed(self) -> int:
        recorded = 0
        while self.missed:
            port, caller, started, end = self.missed[0]
            call_id = await self.store.start_call(port, caller, started)
            await self.store.finish_call(call_id, end)
            self.missed.pop(0)
            recorded += 1
        return recorded

    def calls_in_progress(self) -> int:
        return sum(w.in_call for w in self.workers) + sum(s.in_call for s in self.services)

    def notify(self, what: str, **fields: Any) -> None:
        """Tell an interested party (the demo's narrator) what just happened."""
        self._notify(what, **fields)

    async def run(self, stop: asyncio.Event, hang_up_now: asyncio.Event | None = None) -> None:
        """Serve until `stop`; then let calls in progress finish for up to
        `drain_timeout` (or until `hang_up_now`), hang up what is left, and return."""
        supervising = asyncio.Event()
        supervision = None
        if self.supervisor is not None:
            self.supervisor.dialler = self.call
            if self.leadership is not None:  # supervision here only while it leads
                supervision = asyncio.ensure_future(self.leadership.run(supervising))
            else:
                await self.supervisor.start()  # every timer rebuilt from the store
                supervision = asyncio.ensure_future(self.supervisor.run(supervising))
        runners: list[PortWorker | Service] = [*self.workers, *self.services]
        tasks = [asyncio.ensure_future(runner.run()) for runner in runners]
        log.info(
            "bank.started",
            ports=len(self.workers),
            services=len(self.services),
            event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        await stop.wait()
        log.info(
            "bank.stopping",
            calls_in_progress=self.calls_in_progress(),
            drain_seconds=self.drain_timeout,
        )
        self.stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        impatient = asyncio.ensure_future((hang_up_now or asyncio.Event()).wait())
        pending = set(tasks)
        while pending and not impatient.done() and loop.time() < deadline:
            await asyncio.wait(
                {*pending, impatient},
                timeout=deadline - loop.time(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending = {task for task in tasks if not task.done()}
        impatient.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if pending:
            log.warning("bank.hanging_up", calls=self.calls_in_progress())
            self.hard_stop.set()  # calls still up: hang them up now
            await asyncio.wait(pending, timeout=10.0)
        done = {task for task in tasks if task.done()}
        pending = {task for task in tasks if not task.done()}
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("bank.worker_failed", error=repr(task.exception()))
        if supervision is not None:  # after the drain: its messages are supervised too
            supervising.set()
            await asyncio.wait({supervision}, timeout=10.0)
            if supervision.done() and not supervision.cancelled() and supervision.exception():
                log.error("bank.supervision_failed", error=repr(supervision.exception()))
        store = self.store
        log.info(
            "bank.stopped",
            store_trips=store.trips,
            commits=store.commits,
            writes=store.operations,
            reads=store.reads,
        )
