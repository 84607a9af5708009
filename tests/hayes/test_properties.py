"""Random bytes from a modem never raise anything but the driver's own errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_drivers.hayes.callerid import CallerIdAssembler, is_caller_id_line
from modem_drivers.hayes.classify import NumericTable, VerboseMode
from modem_drivers.hayes.connect import parse_connect
from modem_drivers.hayes.errors import ModemError
from modem_drivers.hayes.framer import LineFramer
from modem_drivers.hayes.state import CommandKind, DataReceived, ModemCore
from modem_drivers.vendors import USROBOTICS

MODEM_ALPHABET = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\x00",
        b"OK",
        b"RING",
        b"NO CARRIER",
        b"CONNECT",
        b" 2400",
        b"/ARQ",
        b"BUSY",
        b"ERROR",
        b"NMBR = ",
        b"DATE=",
        b"+MRR: ",
        b"CARRIER ",
        b"0",
        b"10",
        b"3",
        b"\xff",
        b"\xe9",
        b"MESG = 8012",
        b"+++",
        b"ATD1",
    ]
)
noise = st.lists(st.one_of(st.binary(max_size=40), MODEM_ALPHABET), max_size=40)


def make_core(start: int, verbose: VerboseMode) -> ModemCore:
    modem = ModemCore(numeric=NumericTable.with_extra(USROBOTICS.numeric_results()))
    modem.opened()
    modem.set_verbose(verbose)
    if start == 1:
        modem.start_command(b"ATI3", CommandKind.COMMAND, 0.0, 3.0)
    elif start == 2:
        modem.start_command(b"ATDT5551234", CommandKind.DIAL, 0.0, 60.0)
    elif start == 3:
        modem.start_command(b"ATA", CommandKind.ANSWER, 0.0, 60.0)
    elif start == 4:
        modem.start_command(b"ATH0", CommandKind.HANGUP, 0.0, 3.0)
    return modem


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    chunks=noise,
    start=st.integers(0, 4),
    verbose=st.sampled_from(list(VerboseMode)),
    times=st.lists(st.floats(0, 200, allow_nan=False), max_size=6),
)
def test_random_input_only_ever_raises_modem_errors(chunks, start, verbose, times):
    modem = make_core(start, verbose)
    now = 0.0
    try:
        for chunk in chunks:
            now += 0.01
            for event in modem.receive(chunk, now):
                if isinstance(event, DataReceived):
                    assert event.data
            if times:
                now = max(now, times.pop())
                modem.tick(now)
            if modem.state.value == "online data" and chunk.endswith(b"+"):
                modem.start_escape(now, 1.0)
            if modem.state.value == "idle" and not modem.pending_command:
                modem.start_command(b"AT", CommandKind.COMMAND, now, 1.0)
    except ModemError:
        pass
    assert modem._framer.buffered <= modem._framer.max_line + 40 * 4


@given(st.binary(max_size=4000))
def test_framer_memory_is_bounded(data):
    framer = LineFramer(max_line=100)
    for start in range(0, len(data), 97):
        framer.feed(data[start : start + 97])
        while (line := framer.next_line()) is not None:
            assert 0 < len(line.text) <= 100
        assert framer.buffered <= 100 + 97


@given(st.lists(st.binary(max_size=60), max_size=10))
def test_caller_id_parser_never_raises(lines):
    assembler = CallerIdAssembler()
    for line in lines:
        if is_caller_id_line(line):
            assembler.add(line)
    assembler.take()


@given(st.binary(max_size=60), st.lists(st.binary(max_size=40), max_size=5))
def test_connect_parser_never_raises(line, progress):
    record = parse_connect(b"CONNECT " + line, progress)
    assert record.connect_line.startswith(b"CONNECT")


@given(st.binary(min_size=1, max_size=300))
def test_data_is_never_lost_or_altered_while_online(payload):
    """Whatever the bytes, online data comes out as it went in (bar a held tail)."""
    modem = make_core(2, VerboseMode.VERBOSE)
    modem.receive(b"\r\nCONNECT 2400\r\n", 1.0)
    out = b"".join(e.data for e in modem.receive(payload, 1.1) if isinstance(e, DataReceived))
    out += b"".join(e.data for e in modem.release_held())
    assert out == payload


@pytest.mark.parametrize(
    ("connect", "progress", "corrected"),
    [
        (b"CONNECT 33600/ARQ", (), True),
        (b"CONNECT 33600", (), False),
        (b"CONNECT 28800", (b"PROTOCOL: LAPM",), True),
        (b"CONNECT 9600", (b"PROTOCOL: NONE",), False),
        (b"CONNECT 2400/REL", (), True),
        (b"CONNECT 14400", (b"COMPRESSION: V42BIS",), True),  # compression needs it
        (b"CONNECT 9600", (b"COMPRESSION: NONE",), False),  # no compression says nothing
        (b"CONNECT 9600", (b"+DR: NONE",), False),
    ],
)
def test_the_connect_record_says_whether_the_modems_correct_errors(connect, progress, corrected):
    """The protocol's loss detection trusts a late frame on an error-corrected line
    (`TransferConfig.error_corrected`); a record that says nothing is taken for none."""
    assert parse_connect(connect, progress).error_corrected is corrected
