"""`port.py` fixes serial_asyncio_fast's write path by overriding private methods. The
requirement is pinned to the release range it was checked against; these tests fail
first if a release moves the ground under the override."""

from __future__ import annotations

import inspect
import os
import pty
from importlib.metadata import version

import serial_asyncio_fast

from modem_drivers.hayes import port


def test_the_pinned_release_is_installed():
    major, minor, *_ = (int(part) for part in version("pyserial-asyncio-fast").split("."))
    assert (major, minor) == (0, 16), "re-check port._SerialTransport against this release"


def test_the_private_interface_the_override_uses_still_exists():
    base = serial_asyncio_fast.SerialTransport
    for name in (
        "_write_data",
        "_write_ready",
        "_remove_writer",
        "_ensure_writer",
        "_maybe_pause_protocol",
        "_fatal_error",
        "_close",
    ):
        assert callable(getattr(base, name, None)), name
    # the overrides keep the signatures they replace
    for name in ("_write_data", "_write_ready"):
        ours = inspect.signature(getattr(port._SerialTransport, name))
        theirs = inspect.signature(getattr(base, name))
        assert list(ours.parameters) == list(theirs.parameters), name


async def test_a_tty_is_opened_with_the_fixed_transport():
    controller, device = pty.openpty()
    try:

        class Sink:
            def connection_made(self, transport):
                pass

            def data_received(self, data):
                pass

            def connection_lost(self, exc):
                pass

            def pause_writing(self):
                pass

            def resume_writing(self):
                pass

        opened = await port.open_port(os.ttyname(device), Sink())
        try:
            assert type(opened.transport) is port._SerialTransport
            opened.transport.write(b"AT\r")
            assert os.read(controller, 16) == b"AT\r"
        finally:
            opened.transport.close()
    finally:
        os.close(controller)
        os.close(device)
