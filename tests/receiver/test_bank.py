"""The bank in-process: a store that fails must cost a call, never the port."""

from __future__ import annotations

import asyncio

from callhome import exitcodes
from callhome.client.dialer import call_centre, line_test_content
from callhome.keys import public_of, write_private_key
from callhome.wire.errors import Refused
from callhome.wire.framing import encode_frame
from callhome.wire.messages import Kind, encode_message
from callhome.wire.noise import IKHandshake
from callhome.wire.phases import Phase
from callhome.wire.records import HS1, RefusalReason
from callhome.wire.session import PROLOGUE, CallFailed, ClientSession, ServerSession
from receiver.bank import Bank, CallState, Penalties, hangup_patience
from receiver.store import AsyncStore, SQLiteStore, StartCall, StoreUnavailable
from tests.bankworld import bank_world


class FlakyStore(SQLiteStore):
    """Cannot even record the first call (locked for too long, say)."""

    failures = 1

    def apply_batch(self, operations):  # the bank writes through group commit
        if self.failures and any(isinstance(op, StartCall) for op in operations):
            self.failures -= 1
            raise StoreUnavailable("the store is locked by another process")
        return super().apply_batch(operations)


async def test_a_store_that_cannot_record_a_call_costs_that_call_only(tmp_path):
    flaky = lambda path: FlakyStore(path / "centre.db", create=True)  # noqa: E731
    async with bank_world(tmp_path, store=flaky) as world:
        bank = world.bank()
        async with world.serving(bank):
            first = await world.line_test()
            assert first.result != "ok" and len(world.spool.queued()) == 1  # nothing lost
            second = await call_centre(world.config(), world.spool, world.device_key)
            assert second.result == "ok", second
            assert world.spool.queued() == [] and len(world.store.messages()) == 1
            assert bank.workers[0].state == "ready"


# -- decisions at the handshake, in-process (no modem) -----------------------------------


def _bank(tmp_path) -> tuple[Bank, SQLiteStore, bytes, bytes]:
    store = SQLiteStore(tmp_path / "centre.db", create=True)
    centre_key = write_private_key(tmp_path / "centre.key")
    device_key = write_private_key(tmp_path / "device.key")
    store.enroll("plant", public_of(device_key), test_interval=86400, grace=900, site=None)
    return Bank(["unused"], AsyncStore(store), centre_key), store, centre_key, device_key


async def _handshake(bank: Bank, server: ServerSession, frame: bytes) -> CallState:
    worker = bank.workers[0]
    state = CallState(worker.name, None)
    for event in server.receive_data(frame, 0.1):
        await worker._event(server, event, state)
    return state


async def test_an_unknown_protocol_version_is_refused_and_recorded(tmp_path):
    bank, store, centre_key, device_key = _bank(tmp_path)
    handshake = IKHandshake(
        initiator=True,
        static_private=device_key,
        remote_static=public_of(centre_key),
        prologue=PROLOGUE,
    )
    payload = bytes([2, 0, 1]) + b"\x00\x00\x00\x05\x01"
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = await _handshake(
        bank, server, encode_frame(bytes([HS1]) + handshake.write_message_1(payload))
    )
    assert state.outcome == "refused: unsupported version"
    assert state.error == "protocol version 2"
    assert state.device is not None and state.device.name == "plant"
    assert bank.refusals == {"unsupported version": 1}
    device = store.device_by_key(public_of(device_key))
    assert device is not None and device.last_counter == -1 and device.last_seen is None
    store.close()


async def test_a_draining_bank_answers_busy(tmp_path):
    bank, store, centre_key, device_key = _bank(tmp_path)
    bank.stopping.set()
    client = ClientSession(
        static_private=device_key, server_public=public_of(centre_key), call_counter=1, epoch=5
    )
    client.start(0.0)
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = await _handshake(bank, server, client.data_to_send())
    assert state.outcome == "refused: busy" and bank.refusals == {"busy": 1}
    (event,) = client.receive_data(server.data_to_send(), 0.2)
    assert isinstance(event, CallFailed) and isinstance(event.error, Refused)
    assert client.refusal is RefusalReason.BUSY
    store.close()


# -- a wrong centre key: the notice reaches the caller (issue 10 defect 6) ---------------


async def test_a_wrong_key_call_ends_with_the_notice_not_dropped(tmp_path):
    """10 of 10 such calls over in-process lines used to end `dropped` (exit 7): the bank
    hung up before the "cannot decrypt" notice had left."""
    ended: list[dict[str, object]] = []
    answered: list[object] = []

    def notify(what: str, **fields: object) -> None:
        if what == "call":
            ended.append(fields)
        elif what == "answered":
            answered.append(fields["rings"])

    async with bank_world(tmp_path) as world:
        other_key = write_private_key(tmp_path / "other.key")
        config = world.config(centre_key=public_of(other_key))  # not the centre's
        spool, store, device_key = world.spool, world.store, world.device_key
        bank = world.bank(notify=notify, wait_for_caller_id=True)  # penalties: per caller ID
        async with world.serving(bank):
            spool.enqueue(Kind.LINE_TEST, line_test_content(spool))
            for attempt in range(5):
                report = await call_centre(config, spool, device_key)
                assert report.result == "protocol", report
                assert exitcodes.CALL_RESULTS["protocol"] == exitcodes.PROTOCOL == 10
                assert "wrong centre public key" in report.detail
                assert len(spool.queued()) == 1  # nothing lost
                while len(ended) <= attempt or bank.workers[0].in_call:
                    await asyncio.sleep(0.02)
            assert [call["outcome"] for call in ended] == ["failed"] * 5
            calls = store.calls()
            assert all("decrypt" in (c.error or "") for c in calls)
            device = store.device_by_key(public_of(device_key))
            assert device is not None and device.last_seen is None  # never got in
            # issue 10 defect 3: the same caller ID failing again and again is answered
            # later and later (the 3rd, 4th and 5th call here), no longer at once
            assert bank.penalised == 3 and answered == [1, 1, 2, 3, 5]
            # the same caller, now with the right key: answered (late), and forgiven
            config.centre_key = public_of(world.centre_key)
            report = await call_centre(config, spool, device_key)
            assert report.result == "ok", report
            while len(ended) < 6:
                await asyncio.sleep(0.02)
            assert answered[-1] == 7
            loop = asyncio.get_running_loop()
            assert bank.penalties.extra_rings("5550001", loop.time()) == 0


# -- liveness and penalties ---------------------------------------------------------------


async def test_the_device_is_recorded_as_seen_only_once_the_caller_is_live(tmp_path):
    bank, store, centre_key, device_key = _bank(tmp_path)
    worker = bank.workers[0]
    client = ClientSession(
        static_private=device_key, server_public=public_of(centre_key), call_counter=7, epoch=5
    )
    client.queue(1, encode_message(Kind.LINE_TEST, {"skew_ms": 1}, None))
    client.finish()
    client.start(0.0)
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = await _handshake(bank, server, client.data_to_send())  # a replay looks the same
    assert server.phase is Phase.ACCEPTED and state.counter == 7 and not state.confirmed
    device = store.device_by_key(public_of(device_key))
    assert device is not None and device.last_counter == -1 and device.last_seen is None
    client.receive_data(server.data_to_send(), 0.2)
    for event in server.receive_data(client.data_to_send(), 0.3):  # the first record
        await worker._event(server, event, state)
    assert state.confirmed and server.phase is Phase.ESTABLISHED
    device = store.device_by_key(public_of(device_key))
    assert device is not None and device.last_counter == 7 and device.last_seen is not None
    store.close()


async def test_a_frame_resent_hundreds_of_times_is_logged_a_few_times_and_counted(tmp_path):
    """A CI run's receiver wrote 631 `security.replay` warnings in one call (each resend
    of a frame whose ACK came late is one); the log is throttled, the count is not."""
    from structlog.testing import capture_logs

    bank, store, centre_key, device_key = _bank(tmp_path)
    worker = bank.workers[0]
    client = ClientSession(
        static_private=device_key, server_public=public_of(centre_key), call_counter=7, epoch=5
    )
    client.queue(1, encode_message(Kind.LINE_TEST, {"skew_ms": 1}, None))
    client.start(0.0)
    server = ServerSession(static_private=centre_key)
    server.start(0.0)
    state = await _handshake(bank, server, client.data_to_send())
    client.receive_data(server.data_to_send(), 0.2)
    first_record = client.data_to_send()
    with capture_logs() as logs:
        for at in range(301):
            for event in server.receive_data(first_record, 0.3 + at / 1000):
                await worker._event(server, event, state)
    assert server.stats()["replays"] == 300
    lines = [line for line in logs if line["event"] == "security.replay"]
    assert len(lines) == bank.log_throttle.burst
    assert [line["count"] for line in lines] == list(range(1, len(lines) + 1))
    store.close()


def test_penalties_grow_for_a_failing_caller_and_are_forgiven():
    penalties = Penalties(cap=6, forget_after=3600.0)
    assert penalties.extra_rings("5550666", 0.0) == 0
    rings = []
    for _ in range(8):
        penalties.failed("5550666", 10.0)
        rings.append(penalties.extra_rings("5550666", 10.0))
    assert rings == [0, 1, 2, 4, 6, 6, 6, 6]
    assert penalties.extra_rings("5550123", 10.0) == 0  # others are not affected
    assert penalties.extra_rings("5550666", 10.0 + 3601.0) == 0  # forgotten in time
    penalties.failed("port:bank0", 0.0)
    penalties.failed("port:bank0", 0.0)
    penalties.succeeded("port:bank0")
    assert penalties.extra_rings("port:bank0", 0.0) == 0


def test_only_a_completed_call_gives_the_device_time_to_hang_up_first():
    """After a completed call the device hangs up once it has our last acknowledgement:
    the bank waits for that (the driver's patience) rather than cutting it. Anything else
    ends at once."""
    completed = CallState("bank0", None, outcome="completed")
    assert hangup_patience(completed) is None  # the driver's default patience
    for outcome, error in (("failed", None), ("dropped", None), ("completed", "oops")):
        assert hangup_patience(CallState("bank0", None, outcome=outcome, error=error)) == 0.0
