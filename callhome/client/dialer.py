"""Placing a call to the centre: modems, numbers, retries, and one session per call.

The numbers are tried in order on the first modem, then on the next modem. BUSY, NO
ANSWER, NO CARRIER and a refused dial move on to the next number; NO DIALTONE and a modem
that fails move on to the next modem, since every number would fail alike. When every
line was busy or unanswered the whole round is retried after a jittered, capped backoff
starting at `retry_delay` (so a fleet that lost the line at once does not redial in
step). A modem that says CONNECT as soon as its own link is up reports BUSY or NO ANSWER
as text afterwards: a call that ends that way before the centre's first frame counts as
that outcome, not as a cut call, and the dialer moves on as for the result code.
A connected call carries every queued message; each leaves the spool only when the
centre acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from modem_drivers.hayes import (
    DataCall,
    HangupFailed,
    HayesModem,
    InitialisationError,
    ModemError,
    ModemNotResponding,
    ModemTimeout,
    Outcome,
    PortGone,
    PortOpenError,
)

from .. import exitcodes
from ..backoff import Backoff
from ..link import modem_timings, run_session, transfer_config
from ..tcp import TcpCall, connect_tcp, tcp_transfer_config
from ..wire.client import ClientSession
from ..wire.errors import NotACentre, Refused
from ..wire.events import (
    CallFailed,
    Event,
    HandshakeCompleted,
    MessageAcknowledged,
    MessageRejected,
)
from .config import ClientConfig
from .paths import IpPath, legs
from .spool import Spool

log = structlog.get_logger("callhome.dialer")
Progress = Callable[..., None]

# when several numbers and modems failed differently, report the most telling
_SIGNIFICANCE = [
    "refused",
    "protocol",
    "dropped",
    "busy",
    "no answer",
    "no carrier",
    "dial refused",
    "no dial tone",
    "modem",
    "aborted",
]


EARLY_RESULTS = ("busy", "no answer", "no dial tone", "no carrier")
"""What a call that ended before the centre's first frame may come to (its modem said
CONNECT on link-up, then the far end's result as text)."""

CONNECT_TIMEOUT = 10.0
"""Seconds a TCP connection to the centre may take (resolving the name included)."""

RETRY_CAP = 3600.0
"""Seconds: the longest wait between two rounds of dialling, however many failed."""


@dataclass
class CallReport:
    result: str = "modem"
    detail: str = ""
    port: str | None = None
    profile: str | None = None
    number: str | None = None
    path: str | None = None
    """The name of the path the call took (`[paths]`; "modem" by default)."""
    connect: dict[str, Any] | None = None
    connect_seconds: float | None = None
    handshake_seconds: float | None = None
    """From the first HS1 sent to the centre's answer (every attempt counted)."""
    handshake_round_trip: float | None = None
    """From the HS1 that was answered to the answer."""
    handshake_attempts: int = 0
    transfer_seconds: float | None = None
    line_seconds: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    skew_ms: int | None = None
    test_interval: int | None = None
    """The line-test interval the centre expects, when its handshake said."""
    sent: list[int] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    undelivered: list[int] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exitcodes.for_result(self.result)

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items()} | {"exit_code": self.exit_code}


def _noop(step: str, **fields: Any) -> None:
    return None


async def call_centre(
    config: ClientConfig,
    spool: Spool,
    private_key: bytes,
    *,
    progress: Progress = _noop,
) -> CallReport:
    """One call carrying every queued message (with retries as configured)."""
    failures: list[str] = []
    details: dict[str, str] = {}
    backoff = Backoff(
        config.retry_delay, 2.0, max(config.retry_delay, RETRY_CAP), "decorrelated"
    ).scaled(config.time_scale)
    timings = modem_timings(config.time_scale)
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, config.attempts + 1):
        for path, port in legs(config.paths()):
            if isinstance(path, IpPath):
                report = await _call_ip(
                    config, spool, private_key, path, attempts, failures, details, progress
                )
                if report is not None:
                    return report
                continue
            progress("opening", port=port)
            modem = HayesModem(
                port,
                profile=config.profile,
                timings=timings,
                name=port,
                init=config.init,
                skip=config.skip,
            )
            try:
                await modem.connect()
                info = await modem.initialize()
            except (
                PortOpenError,
                PortGone,
                ModemNotResponding,
                InitialisationError,
                ModemTimeout,
            ) as exc:
                failures.append("modem")
                details["modem"] = str(exc)
                attempts.append({"port": port, "result": "modem", "detail": str(exc)})
                progress("modem failed", port=port, error=str(exc))
                with contextlib.suppress(ModemError, OSError):
                    await modem.close()
                continue
            try:
                for number in path.numbers:
                    counter = spool.next_call_counter()
                    progress("dialling", number=number, port=port, profile=info.profile)
                    started = time.monotonic()
                    try:
                        outcome = await modem.dial(number)
                    except ModemError as exc:
                        failures.append("modem")
                        details["modem"] = str(exc)
                        attempts.append(
                            {"port": port, "number": number, "result": "modem", "detail": str(exc)}
                        )
                        break
                    if outcome.connected and outcome.call is not None:
                        report = await _converse(
                            config, spool, private_key, outcome.call, counter, progress
                        )
                        if report.result in EARLY_RESULTS:
                            # the far end never came up: as if the dial had said so
                            failures.append(report.result)
                            details[report.result] = report.detail
                            attempts.append(
                                {"port": port, "number": number, "result": report.result}
                            )
                            progress("dial failed", number=number, port=port, result=report.result)
                            if report.result == "no dial tone":
                                break
                            continue
                        report.port, report.profile, report.number = port, info.profile, number
                        report.path = path.name
                        report.connect_seconds = outcome.seconds
                        report.line_seconds = time.monotonic() - started
                        report.attempts = [
                            *attempts,
                            {"port": port, "number": number, "result": "connected"},
                        ]
                        _remember(spool, report)
                        return report
                    result = exitcodes.DIAL_RESULTS[outcome.outcome]
                    failures.append(result)
                    details[result] = (outcome.result_line or b"").decode("latin-1")
                    attempts.append({"port": port, "number": number, "result": result})
                    progress("dial failed", number=number, port=port, result=result)
                    if result in ("modem", "no dial tone"):
                        break  # this modem's line is dead: every number would fail alike
            finally:
                with contextlib.suppress(ModemError, OSError):
                    await modem.close()
        if attempt < config.attempts:
            delay = backoff.next()
            progress("waiting", seconds=round(delay, 3), attempt=attempt)
            await asyncio.sleep(delay)
    result = min(failures, key=_SIGNIFICANCE.index) if failures else "modem"
    report = CallReport(
        result=result,
        detail=details.get(result, ""),
        attempts=attempts,
        undelivered=[m.seq for m in spool.queued()],
    )
    _remember(spool, report)
    return report


async def _call_ip(
    config: ClientConfig,
    spool: Spool,
    private_key: bytes,
    path: IpPath,
    attempts: list[dict[str, Any]],
    failures: list[str],
    details: dict[str, str],
    progress: Progress,
) -> CallReport | None:
    """One call over an IP path; None when it could not connect (the next path is
    tried). The name is resolved now: a centre that moved is found again."""
    progress("connecting", path=path.name, address=path.address)
    started = time.monotonic()
    try:
        call = await connect_tcp(
            path.host, path.port, max(2.0, CONNECT_TIMEOUT * config.time_scale)
        )
    except (OSError, TimeoutError) as exc:
        detail = f"{path.address}: {exc or 'no answer in time'}"
        failures.append("no carrier")
        details["no carrier"] = detail
        attempts.append({"path": path.name, "address": path.address, "result": "no carrier"})
        progress("connect failed", path=path.name, error=detail)
        return None
    counter = spool.next_call_counter()
    report = await _converse(config, spool, private_key, call, counter, progress)
    if report.handshake_seconds is None and (
        report.result == "dropped" or (report.result == "protocol" and not report.bytes_received)
    ):
        # reset, or silent, before the centre said anything (its listener's limits, a
        # proxy with no centre behind it): as if it had not connected, try the next path.
        # A centre that answered (a refusal, "cannot decrypt") is not asked again.
        failures.append(report.result)
        details[report.result] = f"{path.address}: {report.detail}"
        attempts.append({"path": path.name, "address": path.address, "result": report.result})
        progress("connect failed", path=path.name, error=report.detail)
        return None
    report.path, report.port, report.number = path.name, "tcp", path.address
    report.connect_seconds = None
    report.line_seconds = time.monotonic() - started
    report.attempts = [
        *attempts,
        {"path": path.name, "address": path.address, "result": "connected"},
    ]
    _remember(spool, report)
    return report


async def _converse(
    config: ClientConfig,
    spool: Spool,
    private_key: bytes,
    call: DataCall | TcpCall,
    counter: int,
    progress: Progress,
) -> CallReport:
    report = CallReport(result="protocol", connect=call.record.as_dict())
    progress("connected", connect=call.record.connect_line.decode("latin-1"), rate=call.record.rate)
    loop = asyncio.get_running_loop()
    queued = spool.queued()
    session = ClientSession(
        static_private=private_key,
        server_public=config.centre_key,
        call_counter=counter,
        epoch=spool.epoch,
        config=tcp_transfer_config()  # real time: TCP does not scale with a virtual line
        if isinstance(call, TcpCall)
        else transfer_config(
            call.record.rate, config.time_scale, error_corrected=call.record.error_corrected
        ),
    )
    for message in queued:
        session.queue(message.seq, message.encoded(), message.uncompressed())
    session.finish()
    report.sent = [message.seq for message in queued]
    spool.attempted(report.sent)
    session.start(loop.time())
    progress("handshake")
    handshake_done: list[float] = []
    failure: list[Exception] = []

    ticker: list[asyncio.Task[None]] = []

    async def handle(event: Event) -> None:
        if isinstance(event, HandshakeCompleted):
            handshake_done.append(loop.time())
            ticker.append(asyncio.ensure_future(_sending(session, queued, progress)))
            _handshake_timing(report, event)
            report.test_interval = event.test_interval
            # the centre's clock, read half a round trip ago
            report.skew_ms = int(
                event.server_clock_ms + event.round_trip * 500 - time.time() * 1000
            )
            progress("transfer", messages=len(queued), round_trip=event.round_trip)
        elif isinstance(event, MessageAcknowledged):
            spool.acknowledged(event.seq)
            (report.duplicates if event.duplicate else report.acknowledged).append(event.seq)
        elif isinstance(event, MessageRejected):
            spool.rejected(event.seq, event.reason.name.lower())
            report.rejected[event.seq] = event.reason.name.lower()
        elif isinstance(event, CallFailed):
            failure.append(event.error)

    try:
        ended = await run_session(call, session, handle)
    finally:
        for task in ticker:
            task.cancel()
    report.handshake_attempts = session.handshake_attempts
    said = call.early_result() if not handshake_done else None
    early = exitcodes.DIAL_RESULTS[Outcome.of(said)] if said is not None else None
    if handshake_done:
        report.transfer_seconds = loop.time() - handshake_done[0]
    report.bytes_sent = session.stats.bytes_out
    report.bytes_received = session.stats.bytes_in
    report.undelivered = session.undelivered()
    if early is not None and not session.heard_centre:
        report.result = early
        report.detail = "the modem said CONNECT, then the far end: " + early.upper()
    elif not failure and not session.heard_centre and _looks_like_text(session.stray):
        # a login prompt or banner, then the far end hung up before our patience ran
        # out: not a centre all the same (mgetty does that on a stray ^\ byte)
        report.result = "protocol"
        report.detail = str(NotACentre("it sent text and hung up", session.stray))
    elif failure and isinstance(failure[0], Refused):
        report.result = "refused"
        report.detail = failure[0].reason
    elif failure:
        report.result = "protocol"
        report.detail = str(failure[0])
    elif ended == "closed":
        report.result = "ok"
    else:
        report.result = "dropped"
        report.detail = "the connection was lost before the centre answered everything"
    if call.open:
        progress("hanging up")
        with contextlib.suppress(HangupFailed, ModemError):
            await call.hangup()
    log.info(
        "call.done",
        result=report.result,
        sent=len(report.sent),
        acknowledged=len(report.acknowledged) + len(report.duplicates),
        bytes_sent=report.bytes_sent,
        bytes_received=report.bytes_received,
    )
    return report


async def _sending(session: ClientSession, queued: list[Any], progress: Progress) -> None:
    """Bytes sent of the total, every half second, for a progress display."""
    loop = asyncio.get_running_loop()
    started, base = loop.time(), session.stats.bytes_out
    total = base + sum(len(message.encoded().body) for message in queued)
    while True:
        await asyncio.sleep(0.5)
        sent = session.stats.bytes_out
        rate = (sent - base) / max(loop.time() - started, 1e-3)
        progress("sending", sent=min(sent, total), total=total, rate=rate)


def _handshake_timing(report: CallReport, event: HandshakeCompleted) -> None:
    """Honest handshake figures: a retry costs the call its whole back-off, so the time
    counts from the first HS1, not from the attempt that was answered."""
    report.handshake_round_trip = event.round_trip
    report.handshake_attempts = event.attempts
    report.handshake_seconds = event.seconds if event.seconds is not None else event.round_trip


def _looks_like_text(data: bytes) -> bool:
    """Mostly printable ASCII: a person's or a program's text, never our COBS frames."""
    if len(data) < 8:
        return False
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in data)
    return printable >= 0.9 * len(data)


def _remember(spool: Spool, report: CallReport) -> None:
    """What the next line test tells the centre about this call."""
    spool.remember_call(
        {
            "result": report.result,
            "connect_ms": None
            if report.connect_seconds is None
            else int(report.connect_seconds * 1000),
            "total_ms": None if report.line_seconds is None else int(report.line_seconds * 1000),
            "rate": (report.connect or {}).get("dce_rate"),
            "skew_ms": report.skew_ms,
        }
    )


def line_test_content(spool: Spool) -> dict[str, Any]:
    previous = spool.last_call() or {}
    return {
        "time": int(time.time()),
        "skew_ms": previous.get("skew_ms"),
        "previous": {
            key: previous.get(key) for key in ("result", "connect_ms", "total_ms", "rate")
        },
    }
