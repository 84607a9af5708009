"""`port.py` fixes serial_asyncio_fast's write path by overriding private methods. The
requirement is pinned to the release range it was checked against; these tests fail
first if a release moves the ground under the override."""

from __future__ import annotations

import asyncio
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


def test_the_pyserial_internals_the_one_descriptor_port_uses_still_exist():
    """`_TtySerial.open` is pyserial's POSIX `open` without the abort pipes."""
    import serial
    import serial.serialposix

    major, minor, *_ = (int(part) for part in version("pyserial").split("."))
    assert (major, minor) == (3, 5), "re-check port._TtySerial against this release"
    assert serial.Serial is serial.serialposix.Serial
    for name in ("_reconfigure_port", "_update_dtr_state", "_update_rts_state"):
        assert callable(getattr(serial.Serial, name, None)), name
    assert callable(getattr(serial.Serial, "_reset_input_buffer", None))
    probe = serial.Serial()
    for name in ("_port", "_dsrdtr", "_rtscts", "is_open", "portstr"):
        assert hasattr(probe, name), name
    assert "pipe_abort_read_r" in inspect.getsource(serial.serialposix.Serial.open)


async def test_a_tty_costs_one_descriptor():
    controller, device = pty.openpty()
    try:
        before = len(os.listdir("/proc/self/fd"))
        opened = await port.open_port(os.ttyname(device), asyncio.Protocol())
        try:
            assert len(os.listdir("/proc/self/fd")) - before == 1
        finally:
            opened.transport.close()
            await asyncio.sleep(0.05)
    finally:
        os.close(controller)
        os.close(device)
