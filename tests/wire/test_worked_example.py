"""docs/protocol.md shows a whole call byte for byte: it must be the bytes the code sends."""

from __future__ import annotations

from pathlib import Path

from benchmarks import worked_example

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_the_worked_example_in_the_docs_is_what_the_code_sends(capsys):
    assert worked_example.main() == 0
    printed = [
        line
        for line in capsys.readouterr().out.splitlines()
        if not line.lstrip().startswith("(payload")
    ]
    document = DOC.read_text()
    start = document.index(printed[0])
    shown = document[start:].splitlines()[: len(printed)]
    assert shown == printed
