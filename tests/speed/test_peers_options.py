"""`benchmarks.peers` picks lines of its matrix by rate, BER and payload (issue 18), and
a value that would measure nothing is a usage error."""

from __future__ import annotations

import pytest

from benchmarks.peers import parse_args


def test_rate_ber_and_payload_pick_one_line():
    args = parse_args(["--runs", "1", "--rate", "2400", "--ber", "0", "--only", "64 KiB random"])
    assert (args.runs, args.rate, args.ber, args.only) == (1, [2400], [0.0], "64 KiB random")


def test_rate_and_ber_may_be_repeated():
    args = parse_args(["--rate", "2400", "--rate", "33600", "--ber", "0", "--ber", "1e-5"])
    assert (args.rate, args.ber) == ([2400, 33600], [0.0, 1e-5])


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "9600"],  # no scale for it
        ["--ber", "0.5"],
        ["--only", "report2"],
        ["--sender", "kermit"],
    ],
)
def test_values_that_measure_nothing_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
