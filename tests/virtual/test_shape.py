"""Issue 9 shape checks for the virtual modem: tables, not branches; no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modem_drivers.virtual import commandline, exposure, interpreter, states
from modem_drivers.virtual.interpreter import COMMANDS, TCPSER_COMMANDS

FORBIDDEN_IN_CORES = {"asyncio", "time", "socket", "serial", "threading", "selectors"}


def imported_names(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_exposures_do_not_import_the_runner():
    assert not any(name.split(".")[-1] == "runner" for name in imported_names(exposure))


@pytest.mark.parametrize("module", [states, interpreter, commandline])
def test_the_modem_core_stays_sans_io(module):
    roots = {name.split(".")[0] for name in imported_names(module)}
    assert not roots & FORBIDDEN_IN_CORES


def test_every_command_letter_has_one_handler():
    for table in (COMMANDS, TCPSER_COMMANDS):
        assert all(len(letter) == 1 and letter == letter.upper() for letter in table)
        assert all(callable(handler) for handler in table.values())
    assert "+" in COMMANDS and "+" not in TCPSER_COMMANDS  # tcpser skips it
    assert not hasattr(interpreter.VirtualModem, "_execute_one")


def test_the_state_is_only_changed_through_the_table():
    source = Path(interpreter.__file__).read_text()
    assignments = [line.strip() for line in source.splitlines() if "self.state = " in line]
    assert assignments == [
        "self.state = State.COMMAND",  # the initial state
        "self.state = next_state(self.state, event)",
    ]
