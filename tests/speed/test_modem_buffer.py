"""The virtual modem holds a few KiB from its DTE, as a real one does (issue 18).

Bytes the modem took from its port but has not yet put on the line stay within its
transmit buffer (USRobotics Courier: 3.25 K under error control, 1.5 K without); the rest
waits in the port, which back-pressures the writer.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from modem_drivers.virtual import PhoneNetwork
from modem_drivers.virtual.profiles import get_profile
from tests.speed.test_guard_time import _call


@pytest.mark.parametrize("kind", ["pty", "inproc"])
async def test_the_modem_holds_no_more_than_its_transmit_buffer(tmp_path, kind):
    site, _client, call, far = await _call(tmp_path, 2400, kind)
    try:
        runner = site.runner
        record = site.network.line("client").call.record
        exposure = runner.exposures["client"]
        base = runner.bytes_from_dte  # the AT commands before CONNECT
        call.write(os.urandom(12_000))  # 50 s of line time at 2400 bit/s
        held: list[int] = []
        got = 0
        while got < 12_000:
            chunk = await asyncio.wait_for(far.read(), 10)
            got += len(chunk)
            taken = runner.bytes_from_dte - len(exposure.held) - base
            held.append(taken - record.bytes_caller_to_callee)
        limit = get_profile("generic").tx_buffer_arq
        assert max(held) <= limit
        assert max(held) > limit // 2  # the buffer is used, the line never starves
    finally:
        await site.close()


def test_the_buffer_depends_on_error_control():
    from tests.virtual.harness import Bench

    for v42, size in ((True, 3328), (False, 1536)):
        network = PhoneNetwork()
        bench = Bench(network)
        caller = bench.modem("a", number="1", line={"rate": 2400, "v42": v42})
        callee = bench.modem("b", number="2")
        bench.quiet_echo(caller, callee)
        bench.at(caller, "AT&K3")
        bench.connect(caller, callee, "2")
        taken = caller.receive(b"x" * 10_000)
        assert taken == size
        assert not caller.accepting() and caller.dte_room() == 0
