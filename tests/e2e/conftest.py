from __future__ import annotations

import pytest

from .system import System


@pytest.fixture
async def system(tmp_path):
    """A centre with a bank of two modems, its receiver running; no clients yet."""
    system = System(tmp_path)
    await system.start()
    await system.start_receiver()
    yield system
    await system.stop()
