"""Everything the driver can raise. A caller that catches `ModemError` has caught all of it."""

from __future__ import annotations


class ModemError(Exception):
    """Base of every error the Hayes driver raises."""


class PortOpenError(ModemError):
    """The port named by the URL cannot be opened (missing, busy, refused)."""


class PortGone(ModemError):
    """The port went away under us (EIO, USB unplug, socket closed)."""


class ModemTimeout(ModemError):
    """No final result before the command's deadline."""


class ModemNotResponding(ModemError):
    """The modem does not answer `AT` even after resynchronising."""


class ModemBusy(ModemError):
    """A command or a call set-up is in progress; nothing may be written now."""


class ModemStateError(ModemError):
    """The operation makes no sense in the modem's current state."""


class CommandRejected(ModemError):
    """The modem answered ERROR (or another non-OK result) to a command."""

    def __init__(self, command: bytes, result: str) -> None:
        super().__init__(f"{command.decode('latin-1')!r} -> {result}")
        self.command = command
        self.result = result


class InitialisationError(ModemError):
    """A setting of the init sequence was not accepted."""


class HangupFailed(ModemError):
    """Every step of the hang-up ladder failed: the line may still be off hook."""


class CallEnded(ModemError):
    """Writing to a call that has ended."""
