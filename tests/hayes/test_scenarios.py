"""The scenario streams of hayes-field-notes §5 against the sans-IO core, at every chunking.

Each stream is fed whole, split at every single point, split at every pair of points
(short streams) and byte by byte; the events must be the same every time.
"""

from __future__ import annotations

import itertools

import pytest

from modem_drivers.hayes.classify import NumericTable, ResultKind, VerboseMode
from modem_drivers.hayes.state import (
    CallerIdReceived,
    CallSetupFailed,
    CarrierLost,
    CarrierSuspect,
    CommandCompleted,
    CommandKind,
    CommandTimedOut,
    Connected,
    DataReceived,
    ModemCore,
    RingingStopped,
    RingReceived,
    State,
    StrayLine,
)
from modem_drivers.vendors import CONEXANT, HAYES


def chunkings(stream: bytes):
    """Whole, every split point, every pair of split points (short streams), bytewise."""
    yield [stream]
    for i in range(1, len(stream)):
        yield [stream[:i], stream[i:]]
    if len(stream) <= 80:
        for i, j in itertools.combinations(range(1, len(stream)), 2):
            yield [stream[:i], stream[i:j], stream[j:]]
    yield [bytes([b]) for b in stream]


def normalise(events):
    """Merge adjacent data events: chunking may split data, never change it."""
    merged = []
    for event in events:
        if isinstance(event, DataReceived) and merged and isinstance(merged[-1], DataReceived):
            merged[-1] = DataReceived(merged[-1].data + event.data)
        elif isinstance(event, Connected) and event.data:
            merged.append(Connected(event.record, b"", event.incoming, event.resumed))
            merged.append(DataReceived(event.data))
        else:
            merged.append(event)
    return merged


def core(verbose=VerboseMode.VERBOSE, numeric=None, reports="dce") -> ModemCore:
    modem = ModemCore(numeric=numeric, reports=reports)
    modem.opened()
    modem.resynchronised()
    modem.set_verbose(verbose)
    return modem


def run(stream: bytes, *, setup=None, ticks=(), **kwargs):
    """Feed `stream` at every chunking; assert identical events; return them."""
    results = []
    for chunks in chunkings(stream):
        modem = core(**kwargs)
        written = setup(modem) if setup else None
        events = []
        for chunk in chunks:
            events.extend(modem.receive(chunk, 1.0))
        for moment in ticks:
            events.extend(modem.tick(moment))
        results.append((normalise(events), modem.state))
        del written
    first = results[0]
    for other in results[1:]:
        assert other == first
    return first


def command(line: bytes, kind=CommandKind.COMMAND, timeout=3.0):
    def setup(modem: ModemCore) -> bytes:
        return modem.start_command(line, kind, 0.0, timeout)

    return setup


# 1 -------------------------------------------------------------------------------------


def test_1_ring_between_command_and_ok():
    events, state = run(b"\r\nRING\r\n\r\nOK\r\n", setup=command(b"ATS0=0"))
    assert events == [RingReceived(1), CommandCompleted(b"ATS0=0", events[1].result, ())]
    assert events[1].result.kind is ResultKind.OK
    assert state is State.RINGING  # a call is coming in


def test_1_ring_and_caller_id_between_command_and_ok():
    stream = b"\r\nRING\r\n\r\nDATE = 0321\r\nTIME = 1405\r\nNMBR = 5551234\r\n\r\nOK\r\n"
    events, _ = run(stream, setup=command(b"ATS0=0"), ticks=[2.0])
    kinds = [type(e) for e in events]
    assert kinds == [RingReceived, CommandCompleted, CallerIdReceived]
    assert events[1].info == ()
    assert events[2].caller_id.number == "5551234"


# 2 -------------------------------------------------------------------------------------


def test_2_echo_is_discarded():
    events, _ = run(b"ATE0\r\r\nOK\r\n", setup=command(b"ATE0"))
    assert len(events) == 1 and events[0].result.kind is ResultKind.OK


def test_2_echo_that_survives_e0_is_not_information():
    events, _ = run(b"ATI3\r\r\nFW 1.0\r\n\r\nOK\r\n", setup=command(b"ATI3"))
    assert events[0].info == (b"FW 1.0",)


def test_2_line_equal_to_the_command_only_once():
    events, _ = run(b"ATI3\r\r\nATI3\r\n\r\nOK\r\n", setup=command(b"ATI3"))
    assert events[0].info == (b"ATI3",)


# 3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "kind"),
    [
        (b"\r\nBUSY\r\n", ResultKind.BUSY),
        (b"\r\nNO DIAL TONE\r\n", ResultKind.NO_DIALTONE),
        (b"\r\nNO DIALTONE\r\n", ResultKind.NO_DIALTONE),
        (b"\r\nNO ANSWER\r\n", ResultKind.NO_ANSWER),
        (b"\r\nDELAYED\r\n", ResultKind.DELAYED),
        (b"\r\nBLACKLISTED\r\n", ResultKind.BLACKLISTED),
        (b"\r\nERROR\r\n", ResultKind.ERROR),
        (b"\r\nNO CARRIER\r\n", ResultKind.NO_CARRIER),
    ],
)
def test_3_dial_failures(stream, kind):
    events, state = run(stream, setup=command(b"ATDT5551234", CommandKind.DIAL, 90))
    assert len(events) == 1 and isinstance(events[0], CallSetupFailed)
    assert events[0].result.kind is kind and not events[0].aborted
    assert state is State.IDLE


def test_3_busy_inside_a_caller_name_is_not_a_result():
    events, state = run(b"\r\nNAME = BUSY BEE CAFE\r\n", ticks=[2.0])
    assert [type(e) for e in events] == [CallerIdReceived]
    assert events[0].caller_id.name == "BUSY BEE CAFE"
    assert state is State.IDLE


def test_3_connecticut_is_not_connect():
    events, state = run(b"\r\nCONNECTICUT GAS\r\n\r\nOK\r\n", setup=command(b"ATI4"))
    assert events[0].info == (b"CONNECTICUT GAS",)
    assert state is State.IDLE


# 4 -------------------------------------------------------------------------------------


def test_4_connect_with_reports_and_data_in_the_same_read():
    stream = (
        b"\r\nCARRIER 33600\r\n\r\nPROTOCOL: LAPM\r\n\r\nCOMPRESSION: V.42BIS\r\n"
        b"\r\nCONNECT 115200\r\n~\x7d\x23"
    )
    events, state = run(stream, setup=command(b"ATDT5551234", CommandKind.DIAL, 90), reports="dte")
    connected, data = events
    record = connected.record
    assert (record.dte_rate, record.dce_rate) == (115200, 33600)
    assert (record.error_correction, record.compression) == ("LAPM", "V42BIS")
    assert record.lines[-1] == b"CONNECT 115200"
    assert data == DataReceived(b"~\x7d\x23")
    assert state is State.ONLINE_DATA


@pytest.mark.parametrize(
    ("stream", "expect"),
    [
        (
            b"\r\n+MCR: V34\r\n\r\n+MRR: 33600,31200\r\n\r\n+ER: LAPM\r\n\r\n+DR: V42B\r\n"
            b"\r\nCONNECT 33600/ARQ/V34/LAPM/V42BIS\r\n",
            dict(
                dce_rate=33600,
                tx_rate=33600,
                rx_rate=31200,
                modulation="V34",
                error_correction="LAPM",
                compression="V42BIS",
            ),
        ),
        (
            b"\r\nCONNECT 38400/V.32bis 14400/V.42bis\r\n",
            dict(dte_rate=38400, dce_rate=14400, modulation="V32B", compression="V42BIS"),
        ),
        (b"\r\nCONNECT\r\n", dict(dce_rate=None, connect_rate=None)),
        (b"\r\nCONNECT 1200/75\r\n", dict(tx_rate=1200, rx_rate=75)),
        (
            b"\r\nCONNECT 2400/NONE\r\n",
            dict(dce_rate=2400, error_correction="NONE", compression="NONE"),
        ),
    ],
)
def test_4_connect_variants_keep_the_raw_line(stream, expect):
    events, _ = run(stream, setup=command(b"ATDT1", CommandKind.DIAL, 90))
    record = events[0].record
    for key, value in expect.items():
        assert getattr(record, key) == value, key
    assert record.connect_line == stream.strip().split(b"\r\n")[-1]


def test_4_lf_of_connect_arriving_late_is_not_data():
    modem = core()
    modem.start_command(b"ATD1", CommandKind.DIAL, 0.0, 90)
    events = modem.receive(b"\r\nCONNECT 2400\r", 1.0)
    events += modem.receive(b"\nDATA", 1.1)
    assert normalise(events)[1:] == [DataReceived(b"DATA")]


# 5 -------------------------------------------------------------------------------------


def v0(**kwargs):
    return dict(
        verbose=VerboseMode.NUMERIC,
        numeric=NumericTable.with_extra(HAYES.numeric_results()),
        **kwargs,
    )


def test_5_numeric_ok():
    events, _ = run(b"0\r", setup=command(b"AT"), **v0())
    assert events[0].result.kind is ResultKind.OK


def test_5_numeric_busy_and_multi_digit_connect():
    events, _ = run(b"7\r", setup=command(b"ATDT1", CommandKind.DIAL, 90), **v0())
    assert events[0].result.kind is ResultKind.BUSY
    events, _ = run(b"10\rdata", setup=command(b"ATDT1", CommandKind.DIAL, 90), **v0())
    assert events[0].record.connect_line == b"CONNECT 2400"
    assert events[0].record.lines == (b"10",)
    assert events[1] == DataReceived(b"data")


def test_5_numeric_register_query_is_info_then_ok():
    events, _ = run(b"000\r\n0\r", setup=command(b"ATS0?"), **v0())
    assert events[0].info == (b"000",) and events[0].result.kind is ResultKind.OK


def test_5_numeric_ring_while_idle():
    events, _ = run(b"2\r", **v0())
    assert events == [RingReceived(1)]


def test_5_vendor_table_is_injectable():
    hayes = v0()
    conexant = dict(
        verbose=VerboseMode.NUMERIC, numeric=NumericTable.with_extra(CONEXANT.numeric_results())
    )
    events, _ = run(b"13\r", setup=command(b"ATD1", CommandKind.DIAL, 90), **hayes)
    assert events[0].record.connect_line == b"CONNECT 14400"
    events, _ = run(b"15\r", setup=command(b"ATD1", CommandKind.DIAL, 90), **conexant)
    assert events[0].record.connect_line == b"CONNECT 14400"
    events, _ = run(b"13\r", setup=command(b"ATD1", CommandKind.DIAL, 90), **conexant)
    assert events[0].result.kind is ResultKind.DELAYED


def test_5_digits_are_information_in_v1():
    events, _ = run(b"\r\n0\r\n\r\nOK\r\n", setup=command(b"AT+FCLASS?"))
    assert events[0].info == (b"0",)


# 6 -------------------------------------------------------------------------------------


def test_6_caller_id_us_order():
    stream = (
        b"\r\nRING\r\n\r\nDATE = 0321\r\nTIME = 1405\r\nNMBR = 5551234\r\n"
        b"NAME = CONNECTICUT GAS\r\n\r\nRING\r\n"
    )
    events, state = run(stream)
    assert [type(e) for e in events] == [RingReceived, CallerIdReceived, RingReceived]
    cid = events[1].caller_id
    assert (cid.number, cid.name, cid.date, cid.time) == (
        "5551234",
        "CONNECTICUT GAS",
        "0321",
        "1405",
    )
    assert state is State.RINGING and not any(isinstance(e, Connected) for e in events)


def test_6_caller_id_uk_order_without_name():
    events, _ = run(b"DATE=0124\r\nTIME=1534\r\nNMBR=02071234123\r\n\r\nRING\r\n")
    assert [type(e) for e in events] == [CallerIdReceived, RingReceived]
    assert events[0].caller_id.number == "02071234123"
    assert events[0].caller_id.name is None


def test_6_private_caller():
    events, _ = run(b"\r\nRING\r\n\r\nNMBR = P\r\n", ticks=[2.0])
    assert events[1].caller_id.private and events[1].caller_id.number is None


def test_6_then_host_answers():
    def setup(modem):
        modem.receive(b"\r\nRING\r\n", 0.0)
        return modem.start_command(b"ATA", CommandKind.ANSWER, 0.1, 60)

    events, state = run(b"\r\nCONNECT 2400\r\n", setup=setup)
    assert isinstance(events[0], Connected) and events[0].incoming
    assert state is State.ONLINE_DATA


def test_6_ata_is_written_with_cr_only():
    modem = core()
    assert modem.start_command(b"ATA", CommandKind.ANSWER, 0.0, 60) == b"ATA\r"


def test_6_ringing_stops():
    modem = core()
    events = modem.receive(b"\r\nRING\r\n", 0.0)
    events += modem.tick(5.0)
    assert modem.state is State.RINGING
    events += modem.tick(10.5)
    assert events[-1] == RingingStopped(1) and modem.state is State.IDLE


# 7 -------------------------------------------------------------------------------------


def online() -> ModemCore:
    modem = core()
    modem.start_command(b"ATD1", CommandKind.DIAL, 0.0, 90)
    modem.receive(b"\r\nCONNECT 2400\r\n", 0.5)
    assert modem.state is State.ONLINE_DATA
    return modem


def test_7_carrier_loss_by_dcd_drops_the_no_carrier_text():
    for chunks in chunkings(b"payload\r\nNO CARRIER\r\n"):
        modem = online()
        events = []
        for chunk in chunks[:-1]:
            events += modem.receive(chunk, 1.0)
        events += modem.carrier_dropped(1.05)
        events += modem.receive(chunks[-1], 1.1)
        data = b"".join(e.data for e in events if isinstance(e, DataReceived))
        assert b"NO CARRIER" not in data and data == b"payload"[: len(data)]
        assert any(isinstance(e, CarrierLost) for e in events)
        assert modem.state is State.IDLE
        assert modem.start_command(b"AT", CommandKind.COMMAND, 2.0, 3) == b"AT\r"
        assert isinstance(modem.receive(b"\r\nOK\r\n", 2.1)[0], CommandCompleted)


def test_7_no_carrier_text_at_the_end_is_suspect_not_data():
    events, state = run(b"payload\r\nNO CARRIER\r\n", setup=lambda m: _online(m), ticks=[3.0])
    assert events == [DataReceived(b"payload"), CarrierSuspect()]
    assert state is State.ONLINE_DATA


def test_7_no_carrier_inside_user_data_stays_data():
    stream = b"abc\r\nNO CARRIER\r\nmore data"
    events, _ = run(stream, setup=lambda m: _online(m), ticks=[3.0])
    assert events == [DataReceived(stream)]


def test_7_suspect_released_when_the_call_is_alive():
    modem = online()
    modem.receive(b"x\r\nNO CARRIER\r\n", 1.0)
    assert modem.tick(2.5) == [CarrierSuspect()]
    assert modem.release_held() == [DataReceived(b"\r\nNO CARRIER\r\n")]


def _online(modem: ModemCore) -> None:
    modem.start_command(b"ATD1", CommandKind.DIAL, 0.0, 90)
    modem.receive(b"\r\nCONNECT 2400\r\n", 0.5)


# 8 (the core side; the timing of the ladder is tested against a fake port) -------------


def test_8_escape_then_ath():
    modem = online()
    modem.note_data_written(1.0)
    assert modem.start_escape(2.5, 1.0) == b"+++"
    events = modem.receive(b"\r\nOK\r\n", 3.6)
    assert modem.state is State.ONLINE_COMMAND and events[0].ok
    modem.start_command(b"ATH0", CommandKind.HANGUP, 3.8, 4)
    for reply in (b"\r\nOK\r\n", b"\r\nNO CARRIER\r\n"):
        clone = online()
        clone.start_escape(2.5, 1.0)
        clone.receive(b"\r\nOK\r\n", 3.6)
        clone.start_command(b"ATH0", CommandKind.HANGUP, 3.8, 4)
        done = clone.receive(reply, 4.0)
        assert isinstance(done[0], CommandCompleted) and clone.state is State.IDLE


def test_8_escape_without_ok_times_out_back_to_data():
    modem = online()
    modem.start_escape(2.5, 1.0)
    events = modem.tick(10.0)
    assert events[0].ok is False and modem.state is State.ONLINE_DATA


# 9 -------------------------------------------------------------------------------------


def test_9_timeout_marks_for_resync_and_late_reply_is_stray():
    modem = core()
    modem.start_command(b"AT+GCAP", CommandKind.COMMAND, 0.0, 3.0)
    assert modem.receive(b"\r\nRING\r\n", 1.0)  # chatter does not extend the deadline
    assert modem.receive(b"\r\nRING\r\n", 2.9)
    events = modem.tick(3.0)
    assert events == [CommandTimedOut(b"AT+GCAP", CommandKind.COMMAND)]
    assert modem.needs_resync and modem.consecutive_timeouts == 1
    late = modem.receive(b"\r\nOK\r\n", 3.5)
    assert late == [StrayLine(b"OK", ResultKind.OK)]


# 10 ------------------------------------------------------------------------------------


def test_10_nothing_may_be_written_during_call_setup():
    from modem_drivers.hayes.errors import ModemBusy, ModemStateError

    modem = core()
    modem.start_command(b"ATDT5551234", CommandKind.DIAL, 0.0, 90)
    with pytest.raises(ModemBusy):
        modem.start_command(b"AT", CommandKind.COMMAND, 1.0, 3)
    with pytest.raises(ModemStateError):
        modem.abort(0.1)  # inside the 125 ms grace: the modem would ignore it
    assert modem.abort(0.2) == b"\r"
    events = modem.receive(b"\r\nNO CARRIER\r\n", 0.3)
    assert events[0].aborted and modem.state is State.IDLE


# 11 ------------------------------------------------------------------------------------


def test_11_leading_nuls_are_skipped():
    events, _ = run(b"\x00\x00\r\nOK\r\n", setup=command(b"AT"))
    assert events[0].result.kind is ResultKind.OK


def test_11_non_utf8_garbage_is_not_fatal():
    events, state = run(b"\r\n\xe9\xffRING\r\n")
    assert events == [StrayLine(b"\xe9\xffRING", None)]
    assert state is State.IDLE


def test_11_port_lost_closes_the_core():
    modem = online()
    modem.port_lost()
    assert modem.state is State.CLOSED
    assert modem.receive(b"anything", 5.0) == []


def test_7_data_ending_in_part_of_no_carrier_is_released_after_a_moment():
    modem = online()
    assert modem.receive(b"line one\r\n", 1.0) == [DataReceived(b"line one")]
    assert modem.tick(1.0 + modem.timings.partial_hold) == [DataReceived(b"\r\n")]


def test_7_no_carrier_after_a_dcd_drop_is_not_the_answer_to_the_next_command():
    modem = online()
    modem.carrier_dropped(1.0)
    assert modem.command_allowed_at() >= 1.0 + modem.timings.trailing_no_carrier
    modem.start_command(b"AT", CommandKind.COMMAND, 1.1, 3)
    assert modem.receive(b"\r\nNO CARRIER\r\n", 2.4) == [
        StrayLine(b"NO CARRIER", ResultKind.NO_CARRIER)
    ]
    assert isinstance(modem.receive(b"\r\nOK\r\n", 2.5)[0], CommandCompleted)
