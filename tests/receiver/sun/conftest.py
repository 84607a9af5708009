from __future__ import annotations

from pathlib import Path

import pytest

from receiver.sun.model import Routing, load_routing

EXAMPLE = Path(__file__).parents[3] / "docs" / "follow-the-sun.toml"


@pytest.fixture(scope="session")
def example() -> Routing:
    return load_routing(EXAMPLE)
