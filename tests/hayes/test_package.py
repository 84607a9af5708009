"""The package's names load when first used, each from its own module."""

from __future__ import annotations

import subprocess
import sys

import modem_drivers.hayes as hayes


def test_every_exported_name_resolves_to_its_modules_object():
    assert sorted(hayes.__all__) == sorted(hayes._HOMES)
    for name in hayes.__all__:
        value = getattr(hayes, name)
        module = sys.modules.get(f"modem_drivers.hayes.{hayes._HOMES[name]}")
        assert module is not None and getattr(module, name) is value, name
    assert set(hayes.__all__) <= set(dir(hayes))


def test_the_exit_code_table_does_not_import_the_modem_shell():
    """`callhome-receiver calls` needs `Outcome`, not asyncio and the driver's shell."""
    code = (
        "import sys, callhome.exitcodes, receiver.cli; "
        "print(sorted(m for m in ('modem_drivers.hayes.modem', 'receiver.bank', "
        "'receiver.ip', 'psycopg', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
