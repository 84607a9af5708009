"""`DataCall`: the byte stream of a connected call, with its CONNECT record."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .classify import VERBOSE_RESULTS, ResultKind
from .connect import ConnectRecord
from .errors import CallEnded

if TYPE_CHECKING:
    from .modem import HayesModem
    from .results import HangupReport

READ_BUFFER_LIMIT = 256 * 1024
HEAD_KEPT = 256
"""The first bytes of a call are kept: a modem that says CONNECT as soon as its link is
up reports BUSY or NO ANSWER afterwards, as text in the data (Hayes emulators)."""
_TEXT_RESULTS = (
    ResultKind.BUSY,
    ResultKind.NO_ANSWER,
    ResultKind.NO_DIALTONE,
    ResultKind.NO_CARRIER,
)


class DataCall:
    """The byte stream of a connected call."""

    def __init__(self, modem: HayesModem, record: ConnectRecord, *, incoming: bool) -> None:
        self._modem = modem
        self.record = record
        self.incoming = incoming
        self.started = modem._now()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.head = b""
        """The first `HEAD_KEPT` bytes received."""
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._paused = False

    @property
    def open(self) -> bool:
        return not self.ended.is_set()

    def early_result(self) -> ResultKind | None:
        """BUSY, NO ANSWER, NO DIALTONE or NO CARRIER, when the call's first bytes were
        that text: the link came up but the far end never did. The caller decides when
        this applies (before the first protocol frame)."""
        for line in self.head.replace(b"\r", b"\n").split(b"\n"):
            kind = VERBOSE_RESULTS.get(line.strip())
            if kind in _TEXT_RESULTS:
                return kind
        return None

    def _feed(self, data: bytes) -> None:
        if self.ended.is_set():
            return
        if len(self.head) < HEAD_KEPT:
            self.head += data[: HEAD_KEPT - len(self.head)]
        self.bytes_in += len(data)
        self._buffer += data
        self._readable.set()
        port = self._modem.port
        if len(self._buffer) > READ_BUFFER_LIMIT and port is not None and not self._paused:
            self._paused = True
            port.pause_reading()

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.ended.set()
        self._readable.set()
        modem = self._modem
        modem._log.info(
            "call.summary",
            direction="in" if self.incoming else "out",
            end=reason,
            seconds=round(modem._now() - self.started, 3),
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            **brief(self.record),
        )

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes`; b"" once the call has ended and everything was read."""
        while not self._buffer and not self.ended.is_set():
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._paused and len(self._buffer) < READ_BUFFER_LIMIT // 2:
            port = self._modem.port
            self._paused = False
            if port is not None:
                port.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self.ended.is_set():
            raise CallEnded(f"the call has ended ({self.end_reason})")
        self.bytes_out += len(data)
        self._modem._write_data(data)

    async def drain(self) -> None:
        await self._modem._drain()

    def expect_end(self) -> None:
        """The protocol on this call is over: the far end's hang-up (NO CARRIER, DCD
        dropping) is now expected and believed at once (`HayesModem.expect_call_end`)."""
        if not self.ended.is_set() and self._modem._call is self:
            self._modem.expect_call_end()

    async def finish(self, patience: float | None = None) -> HangupReport:
        """The protocol is over: let the far end hang up (its NO CARRIER is believed at
        once), or hang up after `patience` seconds. Never rejects a call ringing in."""
        return await self._modem.finish_call(patience)

    async def hangup(self) -> HangupReport:
        return await self._modem.hangup()


def brief(record: ConnectRecord) -> dict[str, Any]:
    return {
        "rate": record.rate,
        "dte_rate": record.dte_rate,
        "modulation": record.modulation,
        "ec": record.error_correction,
        "compression": record.compression,
    }
